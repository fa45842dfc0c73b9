#!/usr/bin/env bash
# tests/drills/client_restart.sh - the client agent itself restarted under load, alternately
# SIGTERM + start and SIGKILL + start (RESTARTS each, default 5; DRILL_SMOKE=1: 2), while a
# steady load goes through the haproxy it manages.  [sink haproxy] keeps haproxy running across
# the agent's exit (keep_running, the default) and the new agent adopts it; its store reads the
# catalog afresh and hands the sink a complete one (the store's catalog sync), so haproxy never
# loses a server: 0 failed requests, the same haproxy master throughout, the client's catalog
# the same after as before.  haproxy_lifecycle's cases a and b drill this with etcd and more
# checks; this drill exists for DRILL_STORE=consul (drill client_restart_consul), where the
# first catalog is read through blocking queries and one read per service.  With Consul also:
# no register, no deregister, no TTL missed at the agent, no check of the backend critical.
#
# Backends: two loopback python http servers, registered by a backend agent (testsource).
# Row: DRILL|client_restart[_consul]|...|requests|failed|-|note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
RESTARTS=${RESTARTS:-5}
[[ "${DRILL_SMOKE:-0}" == 1 ]] && RESTARTS=${RESTARTS_SMOKE:-2}
PY=${PYTHON3:-python3}
drill=client_restart
[[ $DRILL_STORE == consul ]] && drill+=_consul

drill_store_start cli || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"
printf 'b/w1/80 web 127.0.0.2 %s\nb/w2/80 web 127.0.0.3 %s\n' "$P1" "$P2" > "$H_TMP/b.inst"
drill_agent_config b

drill_client_ports
drill_client_config
agent_start b
agent_start c
fail=0
drill_client_ready
cat0=$(drill_catalog "$RS")
[[ $DRILL_STORE == consul ]] && drill_consul_begin b

drill_load_start "$HP"
sleep 1
done_n=0
cur=c
for ((i = 1; i <= RESTARTS; i++)); do
	for sig in TERM KILL; do
		if [[ $sig == KILL ]]; then daemon_kill "$cur" KILL; else daemon_stop "$cur"; fi
		wait_for --timeout 30 agent_gone "$cur" || { echo "drill: $i $sig: the old agent did not exit" >&2; fail=1; break 2; }
		cur=c$i$sig # each run under its own daemon name and log
		agent_start_as "$cur" c
		# the new agent adopted haproxy and its store read the whole catalog
		if ! wait_for --timeout 30 log_has "$cur" "store $DRILL_STORE: ready"; then
			echo "drill: $i $sig: the client's store did not become ready" >&2
			fail=1
			break 2
		fi
		sleep 1
	done
	done_n=$i
done
sleep 2
drill_load_stop
read -r total failed refused < <(drill_load_count)
M1=$(hx_master_pid "$H_TMP/haproxy/master.sock")
cat1=$(drill_catalog "$RS")
same=$([[ -n "$M0" && "$M0" == "$M1" ]] && echo yes || echo no)
samecat=$([[ -n "$cat0" && "$cat0" == "$cat1" ]] && echo yes || echo no)
echo "drill: client restarted $done_n x (SIGTERM, start) and $done_n x (SIGKILL, start), $total requests, $failed failed ($refused refused); haproxy master unchanged=$same, catalog unchanged=$samecat" >&2
note="$refused refused; master unchanged=$same, catalog unchanged=$samecat"
ok=yes
if [[ $DRILL_STORE == consul ]]; then
	agent=$(drill_consul_end) || ok=no
	note+="; $agent"
	echo "drill: $agent" >&2
fi
echo "DRILL|$drill|client agent SIGTERM + start and SIGKILL + start, ${done_n}x each|$total|$failed|-|$note"
[[ $ok == yes && $done_n -eq $RESTARTS && $failed -eq 0 && $total -gt 0 && $same == yes && $samecat == yes ]] || fail=1
daemon_stop "$cur"
daemon_stop b
exit $fail
