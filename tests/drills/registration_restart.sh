#!/usr/bin/env bash
# tests/drills/registration_restart.sh - a backend agent restarted (SIGTERM, start) again and
# again while a client routes a steady load to its instances through a managed haproxy.
# The store keeps its lease across the restart and re-attaches to it (docs/etcd.md), so the
# client must see nothing: 0 failed requests, its /v1/catalog unchanged, no catalog change
# applied to its sinks and no watch event received.
#
# DRILL_KILL=KILL: the crash case (drills registration_crash, registration_crash_consul): the
# backend agent SIGKILLed and started again RESTART_SEC later (default 1; the shipped unit's
# Restart=on-failure waits RestartSec=5s), as systemd's Restart= does.  Back within two thirds
# of ttl (10 s; the last keepalive or pass went out at most ttl/3 before the kill), the store
# re-attaches to the lease all the same (etcd: its id is in the lease file from the grant on) or
# adopts the services the Consul agent still holds, their checks still passing.
#
# DRILL_STORE=consul (drills registration_restart_consul, registration_crash_consul): backend
# and client on the Consul emulator (tests/drills/lib.sh).  The new regent adopts the services
# the agent holds and passes their checks at once; the same assertions with Consul's
# equivalents: no register and no deregister at the agent, no TTL missed (the emulator's log)
# and no check of the backend's ever seen critical (/v1/health/state/critical, every 0.25 s),
# nothing reaped, and no service read again by the client (its "watch events").
#
# Backends: two loopback python http servers, registered by the backend agent through the
# testsource plugin (no dockerd needed).  RESTARTS (default 10; DRILL_SMOKE=1: 3).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
RESTARTS=${RESTARTS:-10}
[[ "${DRILL_SMOKE:-0}" == 1 ]] && RESTARTS=${RESTARTS_SMOKE:-3}
KILL=${DRILL_KILL:-TERM}
case $KILL in TERM | KILL) ;; *) echo "DRILL_KILL must be TERM or KILL, got $KILL" >&2; exit 2 ;; esac
RESTART_SEC=${RESTART_SEC:-1}
PY=${PYTHON3:-python3}
drill=$([[ $KILL == KILL ]] && echo registration_crash || echo registration_restart)
[[ $DRILL_STORE == consul ]] && drill+=_consul

drill_store_start reg || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"

# The backend agent: testsource + the store (default stop behaviour: keep the registrations).
printf 'b/w1/80 web 127.0.0.2 %s\nb/w2/80 web 127.0.0.3 %s\n' "$P1" "$P2" > "$H_TMP/b.inst"
drill_agent_config b

# The client agent: the store + a managed haproxy + stats.
drill_client_ports
drill_client_config "keep_running = false"
agent_start b
agent_start c
fail=0
if ! wait_for --timeout 60 drill_up "$HP"; then
	echo "drill: haproxy never routed to the backends" >&2
	fail=1
fi
sleep 2 # both servers up in haproxy's checks
ev=$(drill_events_metric)
cat0=$(drill_catalog "$RS")
applies0=$(drill_metric "$RS" 'regent_sink_applies_total')
events0=$(drill_metric "$RS" "$ev")
[[ $DRILL_STORE == consul ]] && drill_consul_begin b

drill_load_start "$HP"
sleep 1
done_n=0
cur=b
for ((i = 1; i <= RESTARTS; i++)); do
	if [[ $KILL == KILL ]]; then
		daemon_kill "$cur" KILL
		sleep "$RESTART_SEC"
	else
		daemon_stop "$cur"
	fi
	wait_for --timeout 30 agent_gone "$cur" || { echo "drill: restart $i: the old agent did not exit" >&2; fail=1; break; }
	cur=b$i # each run under its own daemon name and log
	agent_start_as "$cur" b
	if ! wait_for --timeout 20 log_has "$cur" "store $DRILL_STORE: ready"; then
		echo "drill: restart $i: the backend's store did not become ready" >&2
		fail=1
		break
	fi
	done_n=$i
	sleep 0.5
done
sleep 2
drill_load_stop
cat1=$(drill_catalog "$RS")
applies1=$(drill_metric "$RS" 'regent_sink_applies_total')
events1=$(drill_metric "$RS" "$ev")
read -r total failed _ < <(drill_load_count)
changes=$((applies1 - applies0))
events=$((events1 - events0))
same=yes
[[ "$cat0" == "$cat1" && -n "$cat0" ]] || same=no
how=$([[ $KILL == KILL ]] && echo "SIGKILLed and started again ${RESTART_SEC} s later" || echo "restarted")
case_=$([[ $KILL == KILL ]] && echo "backend agent SIGKILL, start ${RESTART_SEC} s later, ${done_n}x" ||
	echo "backend agent restarted ${done_n}x (SIGTERM, start)")
note="client catalog unchanged=$same, sink applies +$changes, $(drill_events_name) +$events"
ok=yes
if [[ $DRILL_STORE == consul ]]; then
	agent=$(drill_consul_end) || ok=no
	adopted=$(cat "$H_TMP"/b*.log | grep -c 'store consul: ready: the agent at .* held 2 services this node registered before')
	echo "drill: backend $how $done_n times, $total requests, $failed failed; $note; backend adopted its 2 services $adopted times" >&2
	echo "drill: $agent" >&2
	note+="; $agent"
	[[ $adopted -eq $done_n ]] || ok=no
else
	reattached=$(cat "$H_TMP"/b*.log | grep -c 're-attached to lease')
	if [[ $KILL == KILL ]]; then
		echo "drill: backend $how $done_n times, $total requests, $failed failed; $note; backend re-attached $reattached times" >&2
		[[ $reattached -eq $done_n ]] || ok=no
		note+="; re-attached $reattached times"
	else
		echo "drill: $done_n restarts, $total requests, $failed failed; client: catalog unchanged=$same, sink applies +$changes, watch events +$events; backend re-attached $reattached times" >&2
	fi
fi
echo "DRILL|$drill|$case_|$total|$failed|-|$note"
[[ $ok == yes && $done_n -eq $RESTARTS && $failed -eq 0 && $total -gt 0 && $same == yes && $changes -eq 0 && $events -eq 0 ]] || fail=1
daemon_stop c
daemon_stop "$cur"
exit $fail
