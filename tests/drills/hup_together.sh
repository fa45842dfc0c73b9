#!/usr/bin/env bash
# tests/drills/hup_together.sh - issue 13: "all backends and the client SIGHUPed together with
# a store-section change, 10 times: 0 refused connections".  Config management rewrites every
# host's [store etcd] section (backoff_max 1s <-> 2s) and SIGHUPs them all at once: each agent
# starts a new store instance beside the old one (make-before-break) and retires the old one once
# the new one answered.  A steady load runs through the client's managed haproxy meanwhile.
#
# Backends: two loopback python http servers, registered by two backend agents (b1, b2) through
# the testsource plugin.  The client runs [store etcd] with debounce = 0 (the harshest case the
# issue names), [sink haproxy] (manage = true) and [sink stats].  ROUNDS (default 10;
# DRILL_SMOKE=1: 3).  Row: DRILL|hup_together|...|requests|failed|-|note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${REGENT_BUILD:-$src/build}
export REGENT_TEST_DIR=$src/tests REGENT_BIN=$build/core/regent REGENT_PLUGIN_DIR=$build/plugins
export REGENT_SOURCE_DIR=$src
# shellcheck source=../etcd/lib.sh
source "$src/tests/etcd/lib.sh"
harness_init
# shellcheck source=../haproxy/hxlib.sh
source "$src/tests/haproxy/hxlib.sh"
ROUNDS=${ROUNDS:-10}
[[ "${DRILL_SMOKE:-0}" == 1 ]] && ROUNDS=${ROUNDS_SMOKE:-3}
PY=${PYTHON3:-python3}

EP=$(etcd_start hup) || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"
printf 'b1/w1/80 web 127.0.0.2 %s\n' "$P1" > "$H_TMP/b1.inst"
printf 'b2/w2/80 web 127.0.0.3 %s\n' "$P2" > "$H_TMP/b2.inst"

HP=$(free_port); HS=$(free_port); RS=$(free_port)
mkdir -p "$H_TMP/haproxy"
chmod 0750 "$H_TMP/haproxy"
# configs BACKOFF: every host's config with [store etcd] backoff_max = BACKOFF
configs() {
    AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b1 "$EP"
    AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b2 "$EP"
    sed -i "s/^backoff_max = .*/backoff_max = $1/" "$H_TMP/b1.ini" "$H_TMP/b2.ini"
    cat > "$H_TMP/c.ini" <<EOF
[agent]
node = c
debounce = 0
state_dir = $H_TMP/c.state

[store etcd]
endpoints = $EP
ttl = 10
backoff_initial = 100ms
backoff_max = $1

[sink haproxy]
manage          = true
config_file     = $H_TMP/haproxy/regent.cfg
master_socket   = $H_TMP/haproxy/master.sock
bind_address    = 127.0.0.1
stats           = 127.0.0.1:$HS
reload_interval = 200ms

[sink stats]
listen = 127.0.0.1:$RS

[service web]
port           = $HP
mode           = http
check          = /
check_interval = 500ms
EOF
}
configs 1s
fail=0
for n in b1 b2 c; do
    "$REGENT_BIN" --check-config -c "$H_TMP/$n.ini" -p "$REGENT_PLUGIN_DIR" >/dev/null 2>&1 ||
        { echo "drill: $n.ini does not pass --check-config:" >&2; "$REGENT_BIN" --check-config -c "$H_TMP/$n.ini" -p "$REGENT_PLUGIN_DIR" >&2; exit 1; }
done
agent_start b1
agent_start b2
agent_start c
up() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 "http://127.0.0.1:$HP/")" == 200 ]]; }
if ! wait_for --timeout 60 up; then
    echo "drill: haproxy never routed to the backends" >&2
    exit 1
fi
hx_track_master "$H_TMP/haproxy/master.sock"
sleep 2 # both servers up in haproxy's checks
M0=$(hx_master_pid "$H_TMP/haproxy/master.sock")

daemon_start load "$PY" "$src/tests/e2e/loadgen.py" --url "http://127.0.0.1:$HP/" \
    --out "$H_TMP/load.jsonl" --duration 600 --stop-file "$H_TMP/load.stop" --threads 2 --interval 0.01
sleep 1
took_over() { grep -c 'store etcd: the new configuration took over' "$H_TMP/$1.log"; }
done_n=0
for ((i = 1; i <= ROUNDS; i++)); do
    b=$([[ $((i % 2)) == 1 ]] && echo 2s || echo 1s)
    t1=$(took_over b1); t2=$(took_over b2); tc=$(took_over c)
    configs "$b"
    kill -HUP "$(daemon_pid b1)" "$(daemon_pid b2)" "$(daemon_pid c)"
    if ! wait_for --timeout 20 eval "[[ \$(took_over b1) -gt $t1 && \$(took_over b2) -gt $t2 && \$(took_over c) -gt $tc ]]"; then
        echo "drill: round $i: not every agent's new store took over" >&2
        fail=1
        break
    fi
    done_n=$i
    sleep 0.5
done
sleep 2
touch "$H_TMP/load.stop"
wait_for --timeout 15 bash -c "! kill -0 $(daemon_pid load) 2>/dev/null" || true
daemon_stop load
read -r total failed refused < <("$PY" -c '
import json, sys
n = f = r = 0
for line in open(sys.argv[1]):
    d = json.loads(line); n += 1
    if d.get("status") != 200:
        f += 1; r += "refused" in (d.get("error") or "").lower()
print(n, f, r)' "$H_TMP/load.jsonl")
M1=$(hx_master_pid "$H_TMP/haproxy/master.sock")
same=$([[ -n "$M0" && "$M0" == "$M1" ]] && echo yes || echo no)
echo "drill: $done_n rounds, $total requests, $failed failed ($refused refused); haproxy master unchanged=$same" >&2
echo "DRILL|hup_together|backends + client SIGHUPed together, store-section change, ${done_n}x|$total|$failed|-|$refused refused; master unchanged=$same"
[[ $done_n -eq $ROUNDS && $failed -eq 0 && $total -gt 0 && $same == yes ]] || fail=1
daemon_stop c
daemon_stop b1
daemon_stop b2
exit $fail
