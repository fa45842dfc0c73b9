#!/usr/bin/env bash
# consul_inflight_test.sh - an instance that changes (or goes) while its TTL pass is in flight
# must still be registered again (or deregistered), and passed afterwards.
#
# Found by a 1-in-20 failure of consul_basic (session 19): web2's port changed while its pass
# was in flight; the register waited for the pass's answer, which did not put the entry back
# on the store's work list, so web2 was neither registered again nor passed: its TTL ran out,
# the agent reaped it, and nothing noticed (no pass, so no 404) until the next SIGHUP.
#
# To make passes in flight the rule, not the exception, the emulator answers the agent's
# writes at most RATE a second (--agent-rate) with N instances at a TTL of TTL: N/(TTL/3)
# passes a second, 3/4 of RATE, so some 16 passes wait at the agent at any moment.  Then every
# instance moves at once (a new port), four times, and half of them go:
#  - each time the agent holds exactly what the source reports, within a few seconds;
#  - no check misses its TTL (the emulator logs each), none is reaped;
#  - the entries are passed afterwards (every check passing a TTL later).
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
N=${INFLIGHT_N:-150} RATE=${INFLIGHT_RATE:-100}
TTL=6s DEREG=2s
EMU_EXTRA="--agent-rate $RATE" agent_start || { echo "agent did not start"; harness_summary; exit 1; }
elog=$(daemon_log consul)

# put_instances COUNT BASE: COUNT instances on ports BASE+i (written aside, renamed: the
# source never reads half a file).
put_instances() {
	local i
	for ((i = 0; i < $1; i++)); do
		printf 'backend-1/i%04d/80 svc%02d 127.0.0.1 %d\n' "$i" "$((i % 20))" "$(($2 + i))"
	done >"$T/a.txt.new"
	mv "$T/a.txt.new" "$T/a.txt"
}
put_instances "$N" 20000
{ printf '[agent]\nnode = backend-1\nstate_dir = %s\n' "$T/state-a"
  printf '[source testsource]\nfile = %s\ninterval = 100ms\n' "$T/a.txt"; store_section; } >"$T/a.ini"
regent_start a "$T/a.ini" -L debug
alog=$(regent_log a)

# "<regent id> <port>" of every service the agent holds for backend-1, sorted.
agent_ports() {
	agent_curl GET /v1/agent/services | "$PYTHON3" -c '
import json, sys
d = json.load(sys.stdin)
print("\n".join(sorted("%s %d" % ((v.get("Meta") or {}).get("regent-id", k), v["Port"])
                       for k, v in d.items() if k.startswith("backend-1:"))))'
}
want_ports() { awk '{print $1, $4}' "$T/a.txt" | sort; }
agent_matches() { [[ "$(agent_ports)" == "$(want_ports)" ]]; }
npassing() { agent_curl GET /v1/health/state/passing | grep -c '"ServiceID": "backend-1:'; }
all_passing() { [[ $(npassing) -eq $(wc -l <"$T/a.txt") ]]; }

check "the agent holds the $N instances" wait_for --timeout 30 agent_matches
check "all $N checks passing" wait_for --timeout 30 all_passing
sleep 3 # the steady state: a queue of passes at the agent
missed0=$(grep -c "missed its TTL" "$elog") reaped0=$(grep -c "critical for too long" "$elog")

for round in 1 2 3 4; do
	put_instances "$N" $((20000 + 1000 * round))
	check "$round: every instance moved at the agent (its new port)" wait_for --timeout 20 agent_matches
	sleep 7 # more than a TTL: a moved entry nobody passes would have expired by now
	check "$round: every check still passing a TTL later" all_passing
done
put_instances $((N / 2)) 25000
check "the $((N / 2)) instances gone are deregistered" wait_for --timeout 20 agent_matches
sleep 7
check "the $((N / 2)) left still passing a TTL later" all_passing

missed=$(grep -c "missed its TTL" "$elog") reaped=$(grep -c "critical for too long" "$elog")
check_eq "no TTL missed (the emulator's log)" "$missed0" "$missed"
check_eq "nothing reaped" "$reaped0" "$reaped"
if [[ $missed != "$missed0" ]]; then
	grep "missed its TTL" "$elog" | head -5 | sed 's/^/# /'
fi
check "no 'no longer knows' (nothing lost at the agent)" bash -c "! grep -q 'no longer knows' '$alog'"
check "no line at level error" bash -c "! grep -q ' error: ' '$alog'"
check_regent_logs_clean
harness_summary
