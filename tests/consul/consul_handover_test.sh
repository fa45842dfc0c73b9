#!/usr/bin/env bash
# consul_handover_test.sh - a SIGHUP that replaces [store consul] while the agent is slow must
# not let any check go critical, and the new instance must be ready within start_timeout
# (the soak of 2026-12-02: 2,000 instances against a saturated agent, "not ready within 30 s"
# at every SIGHUP, TTLs expired, re-registration storms).
#
# The emulator answers the agent's writes at most RATE a second (--agent-rate: a saturated
# agent); N instances with a TTL of TTL pass N/(TTL/3) a second, 3/4 of RATE.  Two SIGHUPs
# toggle `timeout` (a key that leaves the registrations as they are).  Each time:
#  - the new instance is ready within start_timeout (10 s here): it adopts what the agent holds
#    and does not wait for a whole round of passes against the slow agent;
#  - no check ever turns critical (the emulator logs each TTL it sees missed, and a poller
#    reads /v1/health/state/critical every 0.25 s), no service is reaped or registered again;
#  - no line at level error, no "did not stop in time".
# Then one service is removed at the agent behind regent's back (as a reaped one is): only it
# is registered again (one listing of the agent tells which were lost), not all N.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
N=${HANDOVER_N:-150} RATE=${HANDOVER_RATE:-100}
TTL=6s DEREG=2s
EMU_EXTRA="--agent-rate $RATE" agent_start || { echo "agent did not start"; harness_summary; exit 1; }
elog=$(daemon_log consul)

for ((i = 0; i < N; i++)); do
	printf 'backend-1/i%04d/80 svc%02d 127.0.0.1 %d\n' "$i" "$((i % 20))" "$((20000 + i))"
done >"$T/a.txt"
a_ini() { # TIMEOUT
	{ printf '[agent]\nnode = backend-1\nstate_dir = %s\nstart_timeout = 10s\n' "$T/state-a"
	  printf '[source testsource]\nfile = %s\ninterval = 1s\n' "$T/a.txt"; store_section
	  printf 'timeout = %s\n' "$1"; } >"$T/a.ini.new"
	mv "$T/a.ini.new" "$T/a.ini"
}
a_ini 10s
regent_start a "$T/a.ini" -L debug
alog=$(regent_log a)
nready() { grep -cE "store consul( \(new\))?: ready: the agent at" "$alog"; }
ready_ge() { [[ $(nready) -ge $1 ]]; }
check "the first instance is ready" wait_for --timeout 30 ready_ge 1
npassing() { agent_curl GET /v1/health/state/passing | grep -c '"ServiceID": "backend-1:'; }
all_passing() { [[ $(npassing) -eq $N ]]; }
check "the agent holds the $N checks passing" wait_for --timeout 30 all_passing
sleep 4 # two rounds of passes: the steady state

# The poller: a line per read, "<critical checks> <passing checks>".
daemon_start poller bash -c "while :; do
	c=\$(curl -s -m 2 --noproxy '*' '$AGENT_URL/v1/health/state/critical' | grep -c '\"ServiceID\": \"backend-1:')
	p=\$(curl -s -m 2 --noproxy '*' '$AGENT_URL/v1/health/state/passing' | grep -c '\"ServiceID\": \"backend-1:')
	echo \"poll \$c \$p\"; sleep 0.25; done"
plog=$(daemon_log poller)
missed0=$(grep -c "missed its TTL" "$elog") reaped0=$(grep -c "critical for too long" "$elog")
nregs() { grep -c ": registered backend-1/" "$alog"; } # one debug line per acknowledged register
regs0=$(nregs)

for round in 1 2; do
	r0=$(nready) t0=$(date +%s.%N)
	a_ini "$([[ $round == 1 ]] && echo 11s || echo 10s)"
	daemon_kill regent-a HUP
	check "$round: the new instance is ready within start_timeout" wait_for --timeout 12 ready_ge $((r0 + 1))
	t1=$(date +%s.%N)
	echo "# $round: the new instance was ready $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s after the SIGHUP"
	check "$round: the old instance left the $N services to the new one" \
		wait_for --timeout 10 grep -q "leaving $N services registered at .*the new instance at the same agent holds them" "$alog"
	sleep 8 # more than a TTL: what the hand-over missed would have expired by now
done
daemon_stop poller
polls=$(grep -c '^poll ' "$plog")
crit=$(awk '/^poll /{if ($2 > m) m = $2} END{print m + 0}' "$plog")
minp=$(awk '/^poll /{if (!n++ || $3 < m) m = $3} END{print m + 0}' "$plog")
echo "# $polls polls of the agent's health: at most $crit critical, at least $minp of $N passing"
check "the poller read the agent's health" test "$polls" -ge 20
check_eq "no check was ever critical during the hand-overs" 0 "$crit"
check_eq "every check stayed passing" "$N" "$minp"
missed=$(grep -c "missed its TTL" "$elog")
check_eq "no TTL missed (the emulator's log)" "$missed0" "$missed"
if [[ $missed != "$missed0" ]]; then # when, against the store's own steps
	grep "missed its TTL" "$elog" | head -5 | sed 's/^/# /'
	grep -E "store consul.*(ready|starting|stopping|leaving)" "$alog" | sed 's/^/# /'
fi

check_eq "no service reaped" "$reaped0" "$(grep -c "critical for too long" "$elog")"
check "no re-registration" bash -c "! grep -q 'no longer knows' '$alog'"
check_eq "no instance registered again" "$regs0" "$(nregs)"
check "no start timed out, no stop timed out" \
	bash -c "! grep -qE 'not ready within|did not stop in time' '$alog'"
check "no line at level error" bash -c "! grep -q ' error: ' '$alog'"

# One service lost at the agent (as a reaped one is): only it is registered again, not all N.
agent_curl PUT /v1/agent/service/deregister/backend-1:i0007:80 >/dev/null
check "the lost service is registered again" wait_for --timeout 15 agent_has backend-1/i0007/80
check "only the lost one: 'registering 1 instance again'" \
	grep -q "no longer knows the check of backend-1/i0007/80 .*: registering 1 instance again" "$alog"
check_eq "one register sent" "$((regs0 + 1))" "$(nregs)"
check_regent_logs_clean
harness_summary
