#!/usr/bin/env bash
# consul_settle_test.sh - the Consul store's client after its agent was away longer than a
# TTL, against the emulator (or a real `consul agent -dev -data-dir` with
# REGENT_CONSUL_MODE=real): an agent that starts again with its data restores every check
# critical unless its TTL state had not run out (Consul agent.go loadChecks/loadCheckState),
# until the check's owner passes it again.  The client's recovery check sees the agent away and
# back; for a settle (3 s) after that, a read that would remove instances is held and read
# again at the settle's end (plugins/consul/consul_disc.c settle_holds):
#  1. held, then bounded: nobody passes: the client keeps both instances when it reads them
#     critical and says so, then takes the read at the settle's end (both leave);
#  2. an instance whose owner passes it within the settle never leaves; the other one leaves.
# The test passes the checks itself (no backend regent), so nothing races.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
# shellcheck disable=SC2034 # (consul_lib.sh agent_start: the agent keeps its data there)
AGENT_DATA_DIR=$T/consul.data
agent_start || { echo "agent did not start"; harness_summary; exit 1; }
CTTL=2 # the checks' TTL (s): each outage below is longer
reg() { # ID PORT
	agent_curl PUT /v1/agent/service/register "{\"ID\":\"$1\",\"Name\":\"web\",\"Address\":\"127.0.0.1\",\"Port\":$2,\"Check\":{\"CheckID\":\"c-$1\",\"TTL\":\"${CTTL}s\",\"Status\":\"passing\"}}" >/dev/null
}
pass() { agent_curl PUT "/v1/agent/check/pass/c-$1" >/dev/null; }
both() { snapshot_has "$T/c.sink" "127.0.0.1:9001" && snapshot_has "$T/c.sink" "127.0.0.1:9002"; }
holds() { [[ $(grep -cE 'answers again: a read that removes instances \(service web: [0-9]+ of 2\) waits [0-9]+ ms' "$LOG") -gt $1 ]]; }
# away: pass both, the agent SIGKILLed, away past the TTL, started again with its data
away() {
	pass w1
	pass w2
	agent_kill
	sleep $((CTTL + 2))
	FROM=$(($(wc -l <"$T/c.sink") + 1))
	agent_start || echo "agent did not start again"
	wait_for --timeout 30 agent_ready
}
reg w1 9001
reg w2 9002
{ printf '[agent]\nnode = client-1\nstate_dir = %s\ndebounce = 10ms\n' "$T/state-c"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
regent_start c "$T/c.ini"
LOG=$(regent_log c)
check "the client routes w1 and w2" wait_for --timeout 15 both

# ---- 1. nobody passes: held, then taken at the settle's end
away
check "held: the client says it holds the read that removes w1 and w2" wait_for --timeout 10 holds 0
check "held: right then both are still in its catalog" both
check "the settle's end: the held service is read again" \
	wait_for --timeout 10 grep -qE 'settle over: reading 1 held service again' "$LOG"
check "taken then: w1 leaves (its check stays critical)" wait_for --timeout 10 snapshot_lacks "$T/c.sink" "127.0.0.1:9001"
check "taken then: w2 too" snapshot_lacks "$T/c.sink" "127.0.0.1:9002"

# ---- 2. w1's owner passes it within the settle: it never leaves; w2 does
pass w1
pass w2
check "both back once passed" wait_for --timeout 15 both
n=$(grep -cE 'answers again: a read that removes instances' "$LOG")
away
# w1's owner passes it at once and then every ttl/4, as an owner does (its TTL is shorter
# than the settle)
(while :; do pass w1; sleep 0.5; done) &
passer=$!
check "held again" wait_for --timeout 10 holds "$n"
check "w2, never passed, leaves at the settle's end" \
	wait_for --timeout 15 snapshot_lacks "$T/c.sink" "127.0.0.1:9002"
kill "$passer" 2>/dev/null
wait "$passer" 2>/dev/null
check "w1, passed within the settle, was in every snapshot since the agent came back" \
	all_snapshots_have "$T/c.sink" "127.0.0.1:9001" "$FROM"
check "and is still routed" snapshot_has "$T/c.sink" "127.0.0.1:9001"

daemon_stop regent-c
agent_stop
check_regent_logs_clean
harness_summary
