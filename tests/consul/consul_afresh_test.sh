#!/usr/bin/env bash
# consul_afresh_test.sh - a store whose first start missed start_timeout keeps its
# registrations when the operator's next SIGHUP changes its section.
#
# The core starts such a section afresh (its failed instance has no trial to fall back on).
# Until session 18 it stopped the failed instance with REGENT_STOP_REMOVED, and the Consul
# store then deregistered every service it had registered: a host whose agent was slow at the
# start (more instances than the agent takes in start_timeout) lost all its instances at the
# SIGHUP meant to fix it.  Now the instance is stopped as at a restart (REGENT_STOP_EXIT): the
# services stay, the new instance takes them over.
#
# The emulator answers at most RATE writes a second; N registers then need more than the 1 s
# start_timeout of the first configuration.  While they go on (the instance unhealthy: "not
# ready within"), a SIGHUP gives start_timeout 30 s and another `timeout`.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
N=${AFRESH_N:-400} RATE=${AFRESH_RATE:-40}
TTL=30s DEREG=30s
EMU_EXTRA="--agent-rate $RATE" agent_start || { echo "agent did not start"; harness_summary; exit 1; }

for ((i = 0; i < N; i++)); do
	printf 'backend-1/i%04d/80 svc%02d 127.0.0.1 %d\n' "$i" "$((i % 10))" "$((21000 + i))"
done >"$T/a.txt"
a_ini() { # START_TIMEOUT TIMEOUT
	{ printf '[agent]\nnode = backend-1\nstate_dir = %s\nstart_timeout = %s\n' "$T/state-a" "$1"
	  printf '[source testsource]\nfile = %s\ninterval = 1s\n' "$T/a.txt"; store_section
	  printf 'timeout = %s\n' "$2"; } >"$T/a.ini.new"
	mv "$T/a.ini.new" "$T/a.ini"
}
a_ini 1s 10s
regent_start a "$T/a.ini"
alog=$(regent_log a)
check "the first start misses its 1 s start_timeout (the agent takes $RATE writes a second)" \
	wait_for --timeout 10 grep -q "store consul: not ready within" "$alog"
nreg() { agent_service_ids | grep -c '^backend-1/'; }
some_reg() { [[ $(nreg) -ge 40 ]]; }
check "the failed instance goes on registering" wait_for --timeout 20 some_reg
check "it is not ready yet (a store that became ready is replaced the usual way)" \
	bash -c "! grep -q 'store consul: ready' '$alog'"

a_ini 30s 11s
daemon_kill regent-a HUP
check "the section is started afresh" \
	wait_for --timeout 10 grep -q "store consul: stopping (configuration changed; its start had failed" "$alog"
check "the failed instance deregistered nothing" bash -c "sleep 1; ! grep -q 'deregistering' '$alog'"
check "it left its services for the new instance (as at a restart)" \
	grep -qE "leaving [0-9]+ services registered at .*\(the agent exits" "$alog"
left=$(grep -oE "leaving [0-9]+ services registered at .*\(the agent exits" "$alog" | head -1 | awk '{print $2}')
held=$(nreg)
echo "# the failed instance left ${left:-?} services; the agent holds $held a second later"
check "the agent still holds them" test "$held" -ge "${left:-1}"
all_reg() { [[ $(nreg) -eq $N ]]; }
check "the new instance registers the rest" wait_for --timeout 30 all_reg
check "the new instance is ready" wait_for --timeout 30 grep -q "store consul: ready" "$alog"
check_regent_logs_clean
harness_summary
