#!/usr/bin/env bash
# ctl_test.sh - the control socket and `regent ctl`: every subcommand with
# its output asserted (status, catalog [SERVICE], local, --json), drain
# (the store sees every local instance deregistered while the agent runs;
# new instances stay unregistered; the drain survives a restart), undrain
# (everything registered again), reload (applied and refused); the socket's
# mode, a non-root user refused, a missing socket, a path that is not a
# socket, a second agent on a live socket, a stale socket, oversized and
# silent requests; then drain/undrain against a real etcd (keys gone while
# the agent still runs, still gone after a restart, back after undrain).
set -u
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init
PY=${PYTHON3:-python3}
R=$REGENT_BIN
T=$H_TMP
mkdir -p "$T/run" && chmod 755 "$T/run"
SOCK=$T/run/regent.sock

write_config() { # NAME SOCKET [store lines...]
	local name=$1 sock=$2; shift 2
	{
		printf '[agent]\nnode = n1\ndebounce = 20ms\nstate_dir = %s\ncontrol_socket = %s\n' \
			"$T/state-$name" "$sock"
		printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/$name.inst"
		if [ $# -gt 0 ]; then printf '%s\n' "$@"; else printf '[store teststore]\nlog = %s\n' "$T/$name.store"; fi
		printf '[sink testsink]\nfile = %s\n[service web]\nport = 8000\n' "$T/$name.sink"
	} >"$T/$name.ini"
}
start_agent() { daemon_start "$1" "$R" -c "$T/$1.ini" -p "$REGENT_PLUGIN_DIR" -L debug; }
# pid_gone PID: the process has exited (left /proc, or a zombie: this
# machine's init reaps late).  An ASan build's exit can take a while on a
# loaded machine.
pid_gone() {
	local st
	st=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | awk '{print $1}') || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}
not_running() { ! daemon_alive "$1"; }
# restart_agent NAME: SIGTERM, wait until the process has exited, start again.
restart_agent() {
	local pid
	pid=$(daemon_pid "$1")
	daemon_stop "$1"
	wait_for --timeout 60 pid_gone "$pid" || echo "warning: pid $pid of $1 has not exited"
	wait_for --timeout 60 not_running "$1" || echo "warning: the harness still sees $1 running"
	start_agent "$1"
}
ctl() { "$R" ctl -s "$SOCK" "$@"; }
answers() { "$R" ctl -s "${1:-$SOCK}" status >/dev/null 2>&1; }
# store_lines NAME FROM: the teststore log from line FROM on
store_since() { tail -n +"$2" "$T/$1.store"; }
store_len() { wc -l <"$T/$1.store"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

printf 'a1 web 127.0.0.2 8001 x,y\na2 web 127.0.0.3 8002\nb1 db 127.0.0.4 5432\n' >"$T/a.inst"
write_config a "$SOCK"
start_agent a
check "the agent answers on its control socket" wait_for --timeout 30 answers
check "... and has read its source" wait_for --timeout 20 eval '"$R" ctl -s "$SOCK" status | grep -qx "local instances: 3"'
check_eq "the socket is mode 0660" 660 "$(stat -c %a "$SOCK")"
if getent group regent >/dev/null; then
	check_eq "... group regent" regent "$(stat -c %G "$SOCK")"
else
	echo "# not applicable here: no group regent on this machine (the socket keeps the agent's group)"
fi

# ---- status ----
out=$(ctl status); rc=$?
check_eq "status exits 0" 0 "$rc"
check "status: version, pid, node" grep -qE "^regent [0-9.]+ \(pid $(daemon_pid a)\), node n1, up [0-9][0-9msdh]*$" <<<"$out"
check "status: config path" grep -qx "config:          $T/a.ini" <<<"$out"
check "status: not drained" grep -qx "drained:         no" <<<"$out"
check "status: local instance count" grep -qx "local instances: 3" <<<"$out"
check "status: catalog size and last change" grep -qE "^catalog:         2 services, 3 instances; last change [0-9-]{10}T[0-9:.]{12}Z \([0-9][0-9msdh]* ago\)$" <<<"$out"
check "status: plugin table header" grep -qE "^  SECTION +PLUGIN +STATE +HEALTH$" <<<"$out"
check "status: the store, started and healthy" grep -qE "^  store teststore +teststore test +started +healthy$" <<<"$out"
check "status: the source" grep -qE "^  source testsource +testsource test +started +healthy$" <<<"$out"
check "status: the sink" grep -qE "^  sink testsink +testsink test +started +healthy$" <<<"$out"
js=$(ctl status --json)
check_eq "status --json: ok, local_instances, drained" "True 3 False" "$(json 'd["ok"], d["local_instances"], d["drained"]' <<<"$js" | tr -d '(),')"
check_eq "status --json: catalog counts" "2 3" "$(json 'd["catalog"]["services"], d["catalog"]["instances"]' <<<"$js" | tr -d '(),')"
check_eq "status --json: plugins and health" "store teststore:started:True,sink testsink:started:True,source testsource:started:True" \
	"$(json '",".join("%s:%s:%s" % (p["section"], p["state"], p["healthy"]) for p in d["plugins"])' <<<"$js")"

# ---- catalog ----
out=$(ctl catalog); rc=$?
check_eq "catalog exits 0" 0 "$rc"
check_eq "catalog: the table" "SERVICE  ID  ADDRESS    PORT  PROTO  NODE  TAGS
db       b1  127.0.0.4  5432  tcp    n1    -
web      a1  127.0.0.2  8001  tcp    n1    x,y
web      a2  127.0.0.3  8002  tcp    n1    -" "$out"
out=$(ctl catalog web)
check_eq "catalog web: that service only" "SERVICE  ID  ADDRESS    PORT  PROTO  NODE  TAGS
web      a1  127.0.0.2  8001  tcp    n1    x,y
web      a2  127.0.0.3  8002  tcp    n1    -" "$out"
js=$(ctl catalog --json)
check_eq "catalog --json: services and instances" "db:b1@127.0.0.4:5432 web:a1@127.0.0.2:8001,a2@127.0.0.3:8002" \
	"$(json '" ".join(s + ":" + ",".join("%s@%s:%d" % (i["id"], i["address"], i["port"]) for i in d["services"][s]) for s in sorted(d["services"]))' <<<"$js")"
check_eq "catalog --json: tags and node" "True" "$(json 'd["services"]["web"][0]["tags"] == ["x", "y"] and d["services"]["web"][0]["node"] == "n1"' <<<"$js")"
ctl catalog nosuch >"$T/out" 2>"$T/err"; rc=$?
check_eq "catalog of an unknown service exits 1" 1 "$rc"
check_eq "... saying so" 'regent ctl catalog: no service "nosuch" in the catalog' "$(cat "$T/err")"

# ---- local ----
out=$(ctl local); rc=$?
check_eq "local exits 0" 0 "$rc"
check_eq "local: the table" "SERVICE  ID  ADDRESS    PORT  PROTO  TAGS
web      a1  127.0.0.2  8001  tcp    x,y
web      a2  127.0.0.3  8002  tcp    -
db       b1  127.0.0.4  5432  tcp    -" "$out"
check_eq "local --json" "a1 a2 b1 False" "$(ctl local --json | json '" ".join(i["id"] for i in d["instances"]) + " " + str(d["drained"])')"

# ---- drain ----
from=$(($(store_len a) + 1))
start=$(date +%s%N)
out=$(ctl drain --wait 1s); rc=$?
took=$((($(date +%s%N) - start) / 1000000))
check_eq "drain exits 0" 0 "$rc"
check_eq "drain: what it did, then the wait" "drained: 3 local instances deregistered from 1 store; they stay out, also across restarts, until \`regent ctl undrain\`
waiting 1s for clients to stop sending new requests...
done" "$out"
check "drain --wait 1s waited (took ${took} ms)" test "$took" -ge 1000
check_eq "the store saw every local instance deregistered" "deregister a1 web 127.0.0.2:8001
deregister a2 web 127.0.0.3:8002
deregister b1 db 127.0.0.4:5432" "$(store_since a "$from")"
check "the agent still runs" daemon_alive a
check "the catalog (fed by the store) is empty" wait_for --timeout 5 eval '[ "$("$R" ctl -s "$SOCK" catalog | wc -l)" = 1 ]'
check "the drain marker is in state_dir" test -f "$T/state-a/drained"
out=$(ctl status)
check "status: drained, since when" grep -qE "^drained:         yes, since [0-9-]{10}T[0-9:.]{12}Z \(local instances are not registered" <<<"$out"
check "status: local instances still counted" grep -qx "local instances: 3" <<<"$out"
ctl local >/dev/null 2>"$T/err"
check "local: says the instances are drained" grep -qx "regent ctl: drained: these instances are not registered" "$T/err"
# A new container while drained: known locally, not registered.
from=$(($(store_len a) + 1))
echo "c1 web 127.0.0.5 8003" >>"$T/a.inst"
check "a new local instance appears while drained" wait_for --timeout 20 eval '"$R" ctl -s "$SOCK" local | grep -q "^web *c1 "'
sleep 0.3
check_eq "... and is not registered" "" "$(store_since a "$from")"

# ---- the drain survives a restart ----
restart_agent a
check "the restarted agent answers" wait_for --timeout 30 answers
check "... has read its source (4 local instances)" wait_for --timeout 20 eval '"$R" ctl -s "$SOCK" status | grep -qx "local instances: 4"'
check "... starts drained (logged)" grep -q "ctl: drained (.*/drained exists)" "$T/a.log"
check "... status says drained" grep -q "^drained:         yes" <(ctl status)
from_restart=$(grep -n '^stop\( \|$\)' "$T/a.store" | tail -1 | cut -d: -f1)
sleep 0.3
check_eq "... and registers nothing" "" "$(store_since a $((from_restart + 1)) | grep '^register' || true)"

# ---- undrain ----
from=$(($(store_len a) + 1))
out=$(ctl undrain); rc=$?
check_eq "undrain exits 0" 0 "$rc"
check_eq "undrain: what it did" "undrained: 4 local instances registered with 1 store" "$out"
check_eq "the store saw every local instance registered again" "register a1 web 127.0.0.2:8001
register a2 web 127.0.0.3:8002
register b1 db 127.0.0.4:5432
register c1 web 127.0.0.5:8003" "$(store_since a "$from")"
check "the drain marker is gone" test ! -e "$T/state-a/drained"
check "the catalog holds the 4 instances again" wait_for --timeout 5 eval '[ "$("$R" ctl -s "$SOCK" catalog | wc -l)" = 5 ]'
check_eq "status: not drained" "False" "$(ctl status --json | json 'd["drained"]')"
from=$(($(store_len a) + 1))
echo "c2 web 127.0.0.6 8004" >>"$T/a.inst"
check "a new local instance is registered again" wait_for --timeout 20 eval 'grep -q "^register c2 " <(tail -n +$from "$T/a.store")'

# ---- reload ----
out=$(ctl reload); rc=$?
check_eq "reload exits 0" 0 "$rc"
check_eq "reload: the result" "configuration reloaded ($T/a.ini)" "$out"
check "reload: logged as applied" grep -q "configuration reloaded" "$T/a.log"
cp "$T/a.ini" "$T/a.ini.good"
printf '[agent]\ndebounce = soon\n' >"$T/a.ini"
ctl reload >"$T/out" 2>"$T/err"; rc=$?
check_eq "a refused reload exits 1" 1 "$rc"
check "... says it was refused" grep -qx "regent ctl reload: new configuration refused; the running one stays" "$T/err"
check "... with the FILE:LINE error" grep -qx "  $T/a.ini:2: agent.debounce: expected a duration (digits and ms, s, m or h, such as 50ms, 15s, 1m or 2h), got \"soon\"" "$T/err"
check_eq "reload --json: ok false and the errors" "False True" "$(ctl reload --json | json 'd["ok"], any("agent.debounce: expected a duration" in e for e in d["errors"])' | tr -d '(),')"
check "the agent still runs the old configuration" grep -qx "local instances: 5" <(ctl status)
cp "$T/a.ini.good" "$T/a.ini"

# ---- usage and connection errors ----
check "regent --help mentions regent ctl" grep -q "^       regent ctl \[-s SOCKET\] COMMAND" <("$R" --help)
out=$("$R" ctl --help); rc=$?
check_eq "regent ctl --help exits 0" 0 "$rc"
check "... and lists every command" bash -c 'for c in status "catalog \[SERVICE\]" local "drain \[--wait D\]" undrain reload; do grep -qE "^  $c " <<<"$1" || exit 1; done' _ "$out"
"$R" ctl -s "$SOCK" frobnicate >/dev/null 2>"$T/err"; rc=$?
check_eq "an unknown command exits 2" 2 "$rc"
check "... naming it" grep -qx 'regent ctl: unknown command "frobnicate"' "$T/err"
"$R" ctl -s "$SOCK" status extra >/dev/null 2>&1; rc=$?
check_eq "an extra argument exits 2" 2 "$rc"
"$R" ctl -s "$SOCK" status --wait 1s >/dev/null 2>&1; rc=$?
check_eq "--wait without drain exits 2" 2 "$rc"
"$R" ctl -s "$SOCK" drain --wait soon >/dev/null 2>"$T/err"; rc=$?
check_eq "a bad --wait exits 2 (and drains nothing)" 2 "$rc"
check "... status still not drained" grep -qx "drained:         no" <(ctl status)
"$R" ctl -s "$T/run/none.sock" status >/dev/null 2>"$T/err"; rc=$?
check_eq "a missing socket exits 1" 1 "$rc"
check_eq "... with a clear error" "regent ctl: cannot connect to $T/run/none.sock: No such file or directory (is regent running? its socket is [agent] control_socket; -s PATH chooses another)" "$(cat "$T/err")"
: >"$T/run/plain"
"$R" ctl -s "$T/run/plain" status >/dev/null 2>"$T/err"; rc=$?
check_eq "a path that is not a socket exits 1" 1 "$rc"
check "... with a clear error" grep -q "^regent ctl: cannot connect to $T/run/plain: Connection refused" "$T/err"
printf '[agent]\ncontrol_socket = %s\n' "$SOCK" >"$T/only-socket.ini"
check "-c FILE reads control_socket from FILE" grep -qx "local instances: 5" <("$R" ctl -c "$T/only-socket.ini" status)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	setpriv --reuid=65534 --regid=65534 --clear-groups "$R" ctl -s "$SOCK" status >/dev/null 2>"$T/err"; rc=$?
	check_eq "a non-root user (nobody) cannot connect" 1 "$rc"
	check_eq "... told why" "regent ctl: cannot connect to $SOCK: Permission denied (run as root or as a member of the group regent)" "$(cat "$T/err")"
else
	harness_skip "not root (or no setpriv, apt-get install util-linux): cannot run the CLI as another user"
fi

# ---- requests are bounded in size and time ----
raw() { "$PY" - "$SOCK" "$@" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
if sys.argv[2] == "big":
    s.sendall(b"x" * 10000)
t = time.time(); data = b""
while True:
    c = s.recv(65536)
    if not c: break
    data += c
print("%.1f %s" % (time.time() - t, data.decode().strip()))
EOF
}
out=$(raw big)
check "a request over 4096 bytes is answered with an error" grep -q '{"ok":false,"error":"request longer than 4096 bytes"}$' <<<"$out"
out=$(raw silent)
check "a silent client is answered and closed after 5 s" grep -qE '^([5-9]|[1-5][0-9])\.[0-9] \{"ok":false,"error":"no complete request within 5000 ms"\}$' <<<"$out"
check "the agent still answers after both" grep -qx "local instances: 5" <(ctl status)

# ---- the daemon's side: the socket path ----
write_config b "$SOCK"
: >"$T/b.inst"
timeout 20 "$R" -c "$T/b.ini" -p "$REGENT_PLUGIN_DIR" >"$T/b.out" 2>&1; rc=$?
check_eq "a second agent on a socket someone answers on refuses to start" 1 "$rc"
check "... saying why" grep -q "ctl: control_socket $SOCK: another process (a running regent?) answers on it" "$T/b.out"
check "the first agent still answers" answers
write_config c "$T/run/plain"
: >"$T/c.inst"
timeout 20 "$R" -c "$T/c.ini" -p "$REGENT_PLUGIN_DIR" >"$T/c.out" 2>&1; rc=$?
check_eq "an agent whose control_socket is not a socket refuses to start" 1 "$rc"
check "... saying why" grep -q "ctl: control_socket $T/run/plain exists and is not a socket; refusing to replace it" "$T/c.out"
check "... and leaves the file alone" test -f "$T/run/plain" -a ! -S "$T/run/plain"
write_config d "$T/nodir/regent.sock"
: >"$T/d.inst"
timeout 20 "$R" -c "$T/d.ini" -p "$REGENT_PLUGIN_DIR" >"$T/d.out" 2>&1; rc=$?
check_eq "an explicit control_socket in a missing directory refuses to start" 1 "$rc"
check "... saying why" grep -q "ctl: control_socket $T/nodir/regent.sock: its directory $T/nodir: No such file or directory" "$T/d.out"

write_config f ""
: >"$T/f.inst"
start_agent f
check "an empty control_socket: the agent runs without a socket" wait_for --timeout 30 grep -q "ctl: no control socket (control_socket is empty)" "$T/f.log"
check "... and keeps running" daemon_alive f
daemon_stop f
if [ ! -e /run/regent ]; then
	sed -i '/^control_socket/d' "$T/f.ini"
	start_agent f
	check "the default control_socket without /run/regent: said at info level" wait_for --timeout 30 grep -q "info: ctl: no control socket: /run/regent does not exist" "$T/f.log"
	check "... and the agent runs" wait_for --timeout 20 grep -q "source testsource: started" "$T/f.log"
	check "... still running" daemon_alive f
	daemon_stop f
else
	echo "# not applicable here: /run/regent exists (the default path's warning cannot be seen)"
fi

pid=$(daemon_pid a)
daemon_kill a KILL
check "the killed agent is gone" wait_for --timeout 60 pid_gone "$pid"
check "... and the harness knows it" wait_for --timeout 60 not_running a
check "a killed agent leaves its socket behind" test -S "$SOCK"
start_agent a
check "a new agent replaces the stale socket" wait_for --timeout 30 answers
check "... logging it" grep -q "control_socket $SOCK: removed a stale socket nobody answers on" "$T/a.log"
daemon_stop a
check "a stopped agent removes its socket" test ! -e "$SOCK"
check "no sanitizer report or crash in the agent's log" bash -c "! grep -qE 'Sanitizer|runtime error:|Segmentation|Aborted' '$T/a.log'"

# ---- with a real etcd: drain takes the keys away while the agent runs ----
if [ ! -f "$REGENT_PLUGIN_DIR/etcd.so" ]; then
	harness_skip "the etcd plugin is not built: no drain test against etcd"
	harness_summary; exit
fi
EP=$(etcd_start ctl1) || { harness_summary; exit 1; }
printf 'e1 web 127.0.0.2 8001\ne2 web 127.0.0.3 8002\ne3 db 127.0.0.4 5432\n' >"$T/e.inst"
write_config e "$SOCK" "[store etcd]" "endpoints = $EP" "ttl = 5" "backoff_initial = 100ms" "backoff_max = 1s"
start_agent e
nkeys() { [ "$(h_etcdctl "$EP" get --prefix /backends/ --keys-only | sed '/^$/d' | wc -l)" = "$1" ]; }
check "etcd: the agent registers its 3 instances" wait_for --timeout 30 nkeys 3
check "etcd: the agent answers" wait_for --timeout 20 answers
out=$(ctl drain); rc=$?
check_eq "etcd: drain exits 0" 0 "$rc"
check "etcd: drain reports 3 instances and 1 store" grep -q "^drained: 3 local instances deregistered from 1 store" <<<"$out"
check "etcd: every key is gone" wait_for --timeout 20 nkeys 0
check "etcd: ... while the agent still runs" daemon_alive e
restart_agent e
check "etcd: the restarted agent answers" wait_for --timeout 30 answers
check "etcd: ... has its 3 local instances" wait_for --timeout 20 eval '"$R" ctl -s "$SOCK" status | grep -qx "local instances: 3"'
check "etcd: ... and its store's catalog read" wait_for --timeout 20 eval '"$R" ctl -s "$SOCK" status --json | grep -q "\"complete\": true"'
sleep 1
check "etcd: still no key after the restart (drained)" nkeys 0
out=$(ctl undrain); rc=$?
check_eq "etcd: undrain exits 0" 0 "$rc"
check "etcd: the 3 keys are back" wait_for --timeout 20 nkeys 3
check "etcd: and the agent's catalog has them" wait_for --timeout 20 eval '[ "$("$R" ctl -s "$SOCK" catalog | wc -l)" = 4 ]'
daemon_stop e
check "etcd: no sanitizer report or crash in the agent's log" bash -c "! grep -qE 'Sanitizer|runtime error:|Segmentation|Aborted' '$T/e.log'"

harness_summary
