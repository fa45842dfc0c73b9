#!/usr/bin/env bash
# consul_checkless_test.sh - discovery of registrations without a check
# (foreign ones, e.g. PUT /v1/agent/service/register with no "Check") while
# other services' checks keep changing, against the emulator (or a real
# `consul agent -dev` with REGENT_CONSUL_MODE=real):
#  - a new check-less instance of a service that exists already (only the
#    service list's index moves: no new name, no new tag, no check);
#  - a check-less instance whose Address changes in place;
#  - a check-less instance deregistered.
# The churn: a second regent (testsource) whose instance moves every 50 ms,
# each move a re-registration with a changed check (its hash in Notes), so
# the checks' index is always at or past the service list's.  That kept the
# client from ever reading the check-less service again (it took the list's
# move as explained by the checks).  The churn also makes the client's list
# watch back off to its slowest gap, GAP_MAX_MS 15 s (consul_disc.c), so
# each change must show within that gap plus one sweep delay (1 s) and a
# read: 20 s.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=2s DEREG=10s
BOUND_S=20
agent_start || { echo "agent did not start"; harness_summary; exit 1; }

common() { printf '[agent]\nnode = %s\ndebounce = 10ms\nstate_dir = %s\n' "$1" "$H_TMP/state-$1"; }
echo "backend-2/churn1/80 churn 127.0.0.21 7001" >"$T/b.txt"
{ common backend-2; printf '[source testsource]\nfile = %s\ninterval = 20ms\n' "$T/b.txt"
  store_section; } >"$T/b.ini"
{ common client-1; store_section; printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"

reg() { # ID ADDRESS PORT: a check-less instance of service x
	agent_curl PUT /v1/agent/service/register \
		"{\"ID\":\"$1\",\"Name\":\"x\",\"Address\":\"$2\",\"Port\":$3,\"Meta\":{\"service_port\":\"13243\"}}"
}
# seen_within NAME NEEDLE: the client's catalog holds NEEDLE within BOUND_S;
# prints how long it took.
seen_within() {
	local t0 t1
	t0=$(now_ms)
	check "$1 (within $BOUND_S s)" wait_for --timeout "$BOUND_S" snapshot_has "$T/c.sink" "$2"
	t1=$(now_ms)
	echo "# $1: $((t1 - t0)) ms"
}

reg x-i1 127.3.0.1 30001
regent_start b "$T/b.ini"
regent_start c "$T/c.ini" -L debug
check "client sees the churning service" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-2/churn1/80"
check "client sees x-i1" wait_for --timeout 10 snapshot_has "$T/c.sink" "/x-i1 127.3.0.1:30001/"

# The churn: churn1's port flips every 50 ms (a re-registration each time:
# the service list's index and churn1's check move together).
daemon_start churn bash -c '
	f=$1; p=7001
	while :; do
		p=$((p == 7001 ? 7002 : 7001))
		echo "backend-2/churn1/80 churn 127.0.0.21 $p" >"$f.tmp" && mv "$f.tmp" "$f"
		sleep 0.05
	done' churn "$T/b.txt"
checks_index() {
	curl -s -m 5 --noproxy '*' -D - -o /dev/null ${AGENT_TOKEN:+-H "X-Consul-Token: $AGENT_TOKEN"} \
		"$AGENT_URL/v1/health/state/any" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]onsul-[Ii]ndex: //p'
}
i0=$(checks_index)
# Long enough for the client's list watch to back off (CHURN_FREE fast
# answers, then a doubling gap).
sleep 4
i1=$(checks_index)
echo "# the checks' index moved from $i0 to $i1 in 4 s"
check "the churn moves the checks (more than 20 check changes in 4 s)" test $((i1 - i0)) -gt 20

# ---- new check-less instances of an existing check-less service
reg x-i2 127.3.0.2 30002
seen_within "a new check-less instance of x shows under churn" "/x-i2 127.3.0.2:30002/"
reg x-i3 127.3.0.3 30003
seen_within "another one shows under churn" "/x-i3 127.3.0.3:30003/"

# ---- a check-less instance's Address changed in place
reg x-i1 127.3.0.9 30001
seen_within "x-i1's new address shows under churn" "/x-i1 127.3.0.9:30001/"
check "x-i1's old address is gone" snapshot_lacks "$T/c.sink" "/x-i1 127.3.0.1:30001/"
check "x still has its three instances" \
	eval '[[ $(last_snapshot "$T/c.sink" | grep -c "/x-i[0-9] ") == 3 ]]'

# ---- a check-less instance deregistered
agent_curl PUT /v1/agent/service/deregister/x-i3 >/dev/null
t0=$(now_ms)
check "x-i3's deregistration shows under churn (within $BOUND_S s)" \
	wait_for --timeout "$BOUND_S" snapshot_lacks "$T/c.sink" "/x-i3 "
echo "# x-i3's deregistration shows under churn: $(($(now_ms) - t0)) ms"
check "the churn went on throughout" daemon_alive churn
check "the churning service is still in the catalog" snapshot_has "$T/c.sink" "backend-2/churn1/80"

daemon_stop churn
daemon_stop regent-b
daemon_stop regent-c
check_regent_logs_clean
agent_stop
harness_summary
