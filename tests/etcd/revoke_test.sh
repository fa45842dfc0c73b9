#!/usr/bin/env bash
# tests/etcd/revoke_test.sh: the revoke at stop (deregister_on_stop = true) fails over across
# the endpoints within revoke_timeout, and gives up at revoke_timeout:
#   A. the current endpoint refuses connections: "cannot revoke" there, revoked through the
#      next endpoint (the failure branch);
#   B. the current endpoint accepts but never answers: the request times out (timeout = 1s),
#      revoked through the next endpoint before revoke_timeout (4s);
#   C. the only endpoint never answers, revoke_timeout (1s) is shorter than the request
#      timeout (5s): the agent says so and exits at revoke_timeout, the keys left to the TTL.
# The lease TTL is 30 s: nothing here can be satisfied by a lease expiring on its own.
# NOTE: needs the etcd plugin's deregister_on_stop key (SIGTERM revokes only with it).
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start r1) || exit 1
ETCD_PORT=${EP##*:}

# hole PORT: a listener that accepts connections and never answers
hole_start() { # NAME PORT
    daemon_start "$1" "$PY" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
print("hole ready", flush=True)
held = []
while True:
    c, _ = s.accept(); held.append(c)' "$2"
    wait_for --timeout 10 grep -qx 'hole ready' "$H_TMP/$1.log"   # -x: not the harness's "starting:" line
}
proxy_start() { # NAME PORT
    daemon_start "$1" "$PY" "$E_DIR/ehelp.py" proxy "$2" "$ETCD_PORT"
    wait_for --timeout 10 grep -q '^proxy .* ready$' "$H_TMP/$1.log"
}
# agent NAME ENDPOINTS [lines...]: one instance NAME/c1/80, no sink (no watch: only the lease
# and the revoke use the endpoints)
agent() {
    local n=$1 eps=$2; shift 2
    echo "$n/c1/80 web 127.0.0.2 8080" > "$H_TMP/$n.inst"
    AGENT_TTL=30 AGENT_NO_SINK=1 agent_config "$n" "$eps" "$@" # lib.sh sets deregister_on_stop = true
    sed -i 's/^stop_timeout = .*/stop_timeout = 10s/' "$H_TMP/$n.ini"
    agent_start "$n"
}
# stop_timed NAME REGEX: SIGTERM, wait for the exit; prints the seconds from the agent's
# "received SIGTERM" to its first line matching REGEX after it, on the agent's own log clock
# (the machine's load does not stretch it the way it stretches the test's own timing).
stop_timed() {
    daemon_kill "$1" TERM
    daemon_wait_exit "$1" 30 >/dev/null
    "$PY" - "$H_TMP/$1.log" "$2" <<'PYEOF'
import re, sys, datetime
t0 = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) ", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
    if t0 is None and "received SIGTERM" in line:
        t0 = t
    elif t0 is not None and re.search(sys.argv[2], line):
        print("%.2f" % (t - t0))
        sys.exit(0)
print("never")
sys.exit(1)
PYEOF
}

# --- A: connection refused -> next endpoint -----------------------------------------------------
PA=$(free_port)
check "A: proxy up" proxy_start pa "$PA"
agent a "http://127.0.0.1:$PA, $EP"
check "A: registered through the proxy (first endpoint)" \
    wait_for --timeout 15 log_has a "lease [0-9a-f]+ granted by http://127\.0\.0\.1:$PA "
check "A: the key is there" wait_for --timeout 5 key_exists "$EP" /backends/web/a/c1/80
daemon_kill pa KILL   # the first endpoint now refuses connections
took=$(stop_timed a "revoked at")
check "A: the revoke at the dead endpoint failed (logged)" \
    log_has a "cannot revoke lease [0-9a-f]+ at http://127\.0\.0\.1:$PA"
check "A: revoked through the next endpoint (logged)" \
    log_has a "lease [0-9a-f]+ revoked at $EP: 1 keys removed"
check "A: the key is gone (ttl 30 s: the revoke, not an expiry)" key_absent "$EP" /backends/web/a/c1/80
check "A: the agent exited 0" test "$(daemon_status a)" == "exit 0"
check "A: revoked within revoke_timeout (2 s) of SIGTERM (${took} s, the agent's clock)" \
    eval "[[ $took != never ]] && lt $took 2.1"

# --- B: no answer -> request timeout -> next endpoint ------------------------------------------
PB=$(free_port)
check "B: proxy up" proxy_start pb "$PB"
agent b "http://127.0.0.1:$PB, $EP" "timeout = 1s" "revoke_timeout = 4s"
check "B: registered through the proxy (first endpoint)" \
    wait_for --timeout 15 log_has b "lease [0-9a-f]+ granted by http://127\.0\.0\.1:$PB "
check "B: the key is there" wait_for --timeout 5 key_exists "$EP" /backends/web/b/c1/80
daemon_kill pb KILL
check "B: a listener that never answers holds the first endpoint" hole_start hb "$PB"
took=$(stop_timed b "revoked at")
check "B: the revoke at the silent endpoint timed out (logged)" \
    log_has b "cannot revoke lease [0-9a-f]+ at http://127\.0\.0\.1:$PB"
check "B: revoked through the next endpoint (logged)" \
    log_has b "lease [0-9a-f]+ revoked at $EP: 1 keys removed"
check "B: the key is gone" key_absent "$EP" /backends/web/b/c1/80
check "B: the agent exited 0" test "$(daemon_status b)" == "exit 0"
check "B: revoked after the 1 s request timeout, within revoke_timeout (4 s) (${took} s, the agent's clock)" \
    eval "[[ $took != never ]] && lt 0.9 $took && lt $took 4.1"

# --- C: revoke_timeout shorter than the request timeout: give up in time --------------------------
PC=$(free_port)
check "C: proxy up" proxy_start pc "$PC"
agent c "http://127.0.0.1:$PC" "timeout = 5s" "revoke_timeout = 1s"
check "C: registered" wait_for --timeout 15 key_exists "$EP" /backends/web/c/c1/80
daemon_kill pc KILL
check "C: a listener that never answers holds the only endpoint" hole_start hc "$PC"
took=$(stop_timed c "core: stopped")
check "C: the agent says it could not revoke in time, and that the keys expire with the TTL" \
    log_has c "could not revoke lease [0-9a-f]+ in time; its 1 keys expire within 30 s"
check "C: it gave up at revoke_timeout (1 s), not at the 5 s request timeout (stopped ${took} s after SIGTERM, the agent's clock)" \
    eval "[[ $took != never ]] && lt 0.9 $took && lt $took 3"
check "C: the agent exited 0" test "$(daemon_status c)" == "exit 0"
check "C: the key is left to its TTL" key_exists "$EP" /backends/web/c/c1/80

finish_agents a b c
harness_summary
