#!/usr/bin/env bash
# consul_restart_test.sh - a restarted backend regent is invisible to other
# hosts (issue #20 point 1, Consul): SIGTERM leaves the services registered
# (deregister_on_stop = false), the new regent lists the agent's services,
# keeps the ones its sources report again (refreshing their TTL at once, no
# register, no deregister), and a watching client sees no catalog change.
# Also: a service that no source reports any more is deregistered after
# reconcile_wait, and deregister_on_stop = true (decommission) deregisters.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=60s DEREG=1m RECONCILE_WAIT=2s   # a slow (ASan, loaded) restart still finds them
EMU_VERBOSE=1 agent_start || { echo "agent did not start"; harness_summary; exit 1; }

cat >"$T/a.txt" <<'EOT'
backend-1/web1/80 web 127.0.0.1 8001
backend-1/web2/80 web 127.0.0.1 8002
backend-1/api1/90 api 127.0.0.1 9001
EOT
{ printf '[agent]\nnode = backend-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-backend-1"
  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"; store_section; } >"$T/a.ini"
{ printf '[agent]\nnode = client-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-1"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
# Each start of the backend gets its own daemon name (a0, a1...): a fresh
# harness record per process; alogs reads them all.
regent_start a0 "$T/a.ini" -L debug
regent_start c "$T/c.ini"
for id in backend-1/web1/80 backend-1/web2/80 backend-1/api1/90; do
	check "client sees $id" wait_for --timeout 15 snapshot_has "$T/c.sink" "$id"
done
elog=$(daemon_log consul)
deregs() { grep -c "PUT /v1/agent/service/deregister/.* -> " "$elog"; }
regs() { grep -c "PUT /v1/agent/service/register -> " "$elog"; }
applies() { grep -c "^apply " "$T/c.sink"; }
alogs() { cat "$T"/regent-a[0-9].log; }
nready() { alogs | grep -c "store consul: ready: the agent at"; }
ready_ge() { [[ $(nready) -ge $1 ]]; }

d0=$(deregs) r0=$(regs) a0=$(applies) from=$(($(wc -l <"$T/c.sink") + 1))
for i in 1 2 3; do
	daemon_stop "regent-a$((i - 1))"
	check "restart $i: the services stay at the agent" agent_has backend-1/web1/80
	regent_start "a$i" "$T/a.ini" -L debug
	check "restart $i: the new regent took them over" wait_for --timeout 15 ready_ge $((i + 1))
done
check "restarts: the new regents adopted all 3 each time" \
	test "$(alogs | grep -c "held 3 services this node registered before")" -eq 3
check "restarts: each kept web1 as the agent held it" \
	test "$(alogs | grep -c "kept backend-1/web1/80 (web) as the agent holds it")" -eq 3
sleep 1
if [[ $CONSUL_MODE == emulator ]]; then   # counted in the emulator's request log
	check "restarts: the emulator logged requests" test "$r0" -ge 3
	check_eq "restarts: no deregistration reached the agent" "$d0" "$(deregs)"
	check_eq "restarts: no registration reached the agent" "$r0" "$(regs)"
fi
check "restarts: the client had a catalog" test "$a0" -ge 1
check_eq "restarts: the client saw no catalog change" "$a0" "$(applies)"
check "restarts: every snapshot still had web1" all_snapshots_have "$T/c.sink" "backend-1/web1/80" "$from"
echo "# 3 restarts: $(( $(deregs) - d0 )) deregistrations, $(( $(regs) - r0 )) registrations, $(( $(applies) - a0 )) catalog changes at the client"

# A service gone while regent was down: deregistered after reconcile_wait.
daemon_stop regent-a3
grep -v api1 "$T/a.txt" >"$T/a.txt.new" && mv "$T/a.txt.new" "$T/a.txt"
regent_start a4 "$T/a.ini" -L debug
check "gone while down: api1 deregistered after reconcile_wait" \
	wait_for --timeout 15 agent_lacks backend-1/api1/90
check "gone while down: logged" grep -q "deregistering 1 service this node registered before the start and no source reports any more" "$(regent_log a4)"
check "gone while down: web1 stays" agent_has backend-1/web1/80
check "gone while down: the client drops api" wait_for --timeout 15 snapshot_lacks "$T/c.sink" "backend-1/api1/90"

# Decommission: deregister_on_stop = true.
daemon_stop regent-a4
{ printf '[agent]\nnode = backend-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-backend-1"
  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"
  DEREG_ON_STOP=true store_section; } >"$T/a.ini"
# (another daemon name: a fresh harness record for the new process)
regent_start d "$T/a.ini" -L debug
d_ready() { grep -q "store consul: ready: the agent at" "$(regent_log d)"; }
check "decommission: started" wait_for --timeout 30 d_ready
daemon_stop regent-d
check "decommission: web1 deregistered on SIGTERM" agent_lacks backend-1/web1/80
check "decommission: the client drops web1" wait_for --timeout 15 snapshot_lacks "$T/c.sink" "backend-1/web1/80"
check_regent_logs_clean
harness_summary
