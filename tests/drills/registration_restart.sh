#!/usr/bin/env bash
# tests/drills/registration_restart.sh - a backend agent restarted (SIGTERM, start) again and
# again while a client routes a steady load to its instances through a managed haproxy.
# The store keeps its lease across the restart and re-attaches to it (docs/etcd.md), so the
# client must see nothing: 0 failed requests, its /v1/catalog unchanged, no catalog change
# applied to its sinks and no watch event received.
#
# Backends: two loopback python http servers, registered by the backend agent through the
# testsource plugin (no dockerd needed).  RESTARTS (default 10; DRILL_SMOKE=1: 3).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${REGENT_BUILD:-$src/build}
export REGENT_TEST_DIR=$src/tests REGENT_BIN=$build/core/regent REGENT_PLUGIN_DIR=$build/plugins
export REGENT_SOURCE_DIR=$src
# shellcheck source=../etcd/lib.sh
source "$src/tests/etcd/lib.sh"
harness_init
RESTARTS=${RESTARTS:-10}
[[ "${DRILL_SMOKE:-0}" == 1 ]] && RESTARTS=${RESTARTS_SMOKE:-3}
PY=${PYTHON3:-python3}

EP=$(etcd_start reg) || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"

# The backend agent: testsource + etcd (default stop behaviour: keep the lease).
printf 'b/w1/80 web 127.0.0.2 %s\nb/w2/80 web 127.0.0.3 %s\n' "$P1" "$P2" > "$H_TMP/b.inst"
AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP"

# The client agent: etcd + a managed haproxy + stats.
HP=$(free_port)
HS=$(free_port)
RS=$(free_port)
mkdir -p "$H_TMP/haproxy"
cat > "$H_TMP/c.ini" <<EOF
[agent]
node = c
state_dir = $H_TMP/c.state

[store etcd]
endpoints = $EP
ttl = 10

[sink haproxy]
manage          = true
keep_running    = false
config_file     = $H_TMP/haproxy/regent.cfg
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
agent_start b
agent_start c
fail=0
up() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 "http://127.0.0.1:$HP/")" == 200 ]]; }
if ! wait_for --timeout 60 up; then
	echo "drill: haproxy never routed to the backends" >&2
	fail=1
fi
sleep 2 # both servers up in haproxy's checks
metric() { curl -s --noproxy '*' -m 5 "http://127.0.0.1:$RS/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
cat0=$(curl -s --noproxy '*' -m 5 "http://127.0.0.1:$RS/v1/catalog" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); d.pop("generated", None); print(json.dumps(d.get("services", d), sort_keys=True))')
applies0=$(metric 'regent_sink_applies_total')
events0=$(metric 'regent_store_watch_events_total')

daemon_start load "$PY" "$src/tests/e2e/loadgen.py" --url "http://127.0.0.1:$HP/" \
	--out "$H_TMP/load.jsonl" --duration 600 --stop-file "$H_TMP/load.stop" --threads 2 --interval 0.01
sleep 1
done_n=0
cur=b
for ((i = 1; i <= RESTARTS; i++)); do
	daemon_stop "$cur"
	wait_for --timeout 30 agent_gone "$cur" || { echo "drill: restart $i: the old agent did not exit" >&2; fail=1; break; }
	cur=b$i # each run under its own daemon name and log
	agent_start_as "$cur" b
	if ! wait_for --timeout 20 log_has "$cur" 'store etcd: ready'; then
		echo "drill: restart $i: the backend's store did not become ready" >&2
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
cat1=$(curl -s --noproxy '*' -m 5 "http://127.0.0.1:$RS/v1/catalog" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); d.pop("generated", None); print(json.dumps(d.get("services", d), sort_keys=True))')
applies1=$(metric 'regent_sink_applies_total')
events1=$(metric 'regent_store_watch_events_total')
read -r total failed < <("$PY" -c '
import json, sys
n = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line); n += 1; f += r.get("status") != 200
print(n, f)' "$H_TMP/load.jsonl")
changes=$((applies1 - applies0))
events=$((events1 - events0))
same=yes
[[ "$cat0" == "$cat1" && -n "$cat0" ]] || same=no
reattached=$(cat "$H_TMP"/b*.log | grep -c 're-attached to lease')
echo "drill: $done_n restarts, $total requests, $failed failed; client: catalog unchanged=$same, sink applies +$changes, watch events +$events; backend re-attached $reattached times" >&2
echo "DRILL|registration_restart|backend agent restarted ${done_n}x (SIGTERM, start)|$total|$failed|-|client catalog unchanged=$same, sink applies +$changes, watch events +$events"
[[ $done_n -eq $RESTARTS && $failed -eq 0 && $total -gt 0 && $same == yes && $changes -eq 0 && $events -eq 0 ]] || fail=1
daemon_stop c
daemon_stop "$cur"
exit $fail
