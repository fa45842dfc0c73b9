#!/usr/bin/env bash
# e2e_test.sh STORE - the seed's scenario end to end, with STORE = etcd or
# consul (the Consul emulator): two backend hosts (own dockerd + regent),
# a client host (regent + managed haproxy + stats), whoami containers.
# Asserts: every container answers through haproxy; a new container takes
# traffic within 1 s of `docker run`; after `docker kill` no client request
# fails and the killed ids stop answering within 1 s; `docker stop` drains
# the container before it exits.  Only the store section differs between
# the two runs (see scenario.sh).
set -u
STORE=${1:?usage: e2e_test.sh etcd|consul}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../harness/lib.sh"
harness_init
source "$HERE/scenario.sh"
PY=${PYTHON3:-python3}
an() { "$PY" "$HERE/analyze.py" "$@"; }
now() { date +%s.%N; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "never" && a != "" && a <= b) }'; }
# gap_since ID T: seconds from T to ID's last answer through haproxy ("never" if it never answered)
gap_since() { local l; l=$(an last-seen "$LOAD" "$1") || { echo never; return; }; awk -v a="$l" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

echo "# scenario with store $STORE"
check "scenario is up (registry, 2 dockerd, 3 regents, haproxy)" scenario_up "$STORE"

w1=$(whoami_start 1 w1); w2=$(whoami_start 1 w2); w3=$(whoami_start 2 w3)
want=$(printf '%s\n' "${w1:0:12}" "${w2:0:12}" "${w3:0:12}" | sort)
all_three() { [ "$(sc_ids 30)" = "$want" ]; }
check "every container answers through haproxy (round robin over 3)" wait_for --timeout 20 all_three

# A steady client for the rest of the test.
LOAD=$H_TMP/load.jsonl
"$PY" "$HERE/loadgen.py" --url "http://127.0.0.1:$SC_HAPROXY_PORT/" --out "$LOAD" \
	--stop-file "$H_TMP/load.stop" --duration 120 --threads 2 &
LOADPID=$!
sleep 1

# A new container takes traffic within 1 s of `docker run`.
port4=$(free_port 127.0.0.3)
w4=$(docker_cmd b2 run -d --network host --name w4 -e WHOAMI_ADDR=127.0.0.3 -e WHOAMI_PORT="$port4" \
	--expose "$port4/tcp" "$SC_IMAGE")
t_run=$(now)
check "the new container w4 answers through haproxy" wait_for --timeout 10 grep -q "I'm ${w4:0:12}" "$LOAD"
sleep 0.2
lat=$(an first-seen "$LOAD" "${w4:0:12}" "$t_run")
echo "# new container: first answer through haproxy ${lat}s after docker run returned"
check "a new container takes traffic within 1 s of docker run (${lat}s)" le "$lat" 1.0

# docker kill: no request fails; the killed ids stop answering within 1 s.
# Each container's gap counts from its own kill (the docker CLI itself takes
# a good part of a second under ASan: one shared start time would charge
# the second container with the first kill's duration).
declare -A t_kill
t_kill[${w1:0:12}]=$(now); docker_cmd b1 kill w1 >/dev/null
t_kill[${w3:0:12}]=$(now); docker_cmd b2 kill w3 >/dev/null
sleep 2.5
for id in "${w1:0:12}" "${w3:0:12}"; do
	gap=$(gap_since "$id" "${t_kill[$id]}")
	# it answered during the load (so the gap is measured), and not later than 1 s after the kill
	check "killed ${id} answered the client before the kill" test "$gap" != never
	check "killed ${id} stops answering within 1 s (${gap}s)" le "$gap" 1.0
done

# docker stop drains: the container leaves haproxy while it still runs.
w5=$(whoami_start 1 w5 -e WHOAMI_GRACE=4)
check "w5 answers through haproxy" wait_for --timeout 10 grep -q "I'm ${w5:0:12}" "$LOAD"
t_stop=$(now)
docker_cmd b1 stop -t 10 w5 >/dev/null &
STOPPER=$!
sleep 1.5
running=$(docker_cmd b1 inspect -f '{{.State.Running}}' w5)
gone=$(gap_since "${w5:0:12}" "$t_stop")
check "docker stop: the container still runs 1.5 s into its grace period" [ "$running" = true ]
check "docker stop: clients drained away within 1 s, before it exits (${gone}s)" le "$gone" 1.0
wait "$STOPPER"

touch "$H_TMP/load.stop"; wait "$LOADPID"
total=$(an count "$LOAD")
failed=$(an failures "$LOAD")
echo "# client: $total requests through haproxy, $failed failed"
check "the client made requests throughout ($total)" [ "$total" -gt 200 ]
check "no client request failed during joins, kills and stops" [ "$failed" -eq 0 ]
left=$(printf '%s\n' "${w2:0:12}" "${w4:0:12}" | sort)
ids=$(sc_ids 30)
check_eq "haproxy routes exactly to the survivors" "$left" "$ids"

harness_summary
