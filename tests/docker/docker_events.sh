#!/bin/bash
# docker_events.sh: the docker source follows /events on a real dockerd: start, stop, kill,
# pause/unpause and HEALTHCHECK transitions arrive as up/down within 1 s of the docker event
# (latencies measured from dockerd's own event time to regent's log line, printed); a stopped
# container goes down at its kill(15), before it dies; a non-stopping signal changes nothing.
set -u
source "$(dirname "$0")/dlib.sh"
dl_init
# The test's ports come from the harness's allocator (never fixed numbers): P<n> keeps the
# number the test was written with as a name; allocated in ascending order so that the
# ports of one container keep their relative order.
mapfile -t _ports < <(for _ in 18300 18301 18302 18303 18304 18305 18306; do free_port; done | sort -n)
_i=0; for _n in 18300 18301 18302 18303 18304 18305 18306; do printf -v "P$_n" '%s' "${_ports[_i]}"; _i=$((_i + 1)); done
[[ ${#_ports[@]} -eq 7 ]] || { check "free ports allocated" false; harness_summary; exit 1; }
regent_start r1 || { check "regent synced with dockerd" false; harness_summary; exit 1; }
LOG=$(regent_log r1)
s12() { echo "${1:0:12}"; }
up_re()   { echo "info: core: local up $NODE/$(s12 "$1")/$2 "; }
down_re() { echo "info: core: local down $NODE/$(s12 "$1")/$2\$"; }

# ---- start and stop ------------------------------------------------------------------------
t0=$(now_ns)
id1=$(run_whoami s1 ${P18300})
check_latency "start -> up" r1 "$(up_re "$id1" ${P18300})" "$id1" '^start$' "$t0"
check "registered in the store" store_has r1 "^register $NODE/$(s12 "$id1")/${P18300} whoami 127\.0\.0\.1:${P18300}$"

t0=$(now_ns)
dk stop -t 5 s1 >/dev/null
check_latency "docker stop (kill 15) -> down" r1 "$(down_re "$id1" ${P18300})" "$id1" '^kill$' "$t0"
check "deregistered in the store" store_has r1 "^deregister $NODE/$(s12 "$id1")/${P18300} "

# A container that ignores SIGTERM: `docker stop -t 3` waits 3 s before SIGKILL.  It must be
# down at the kill(15), seconds before it dies.
id2=$(dk run -d --network host --name slow --expose ${P18301} --entrypoint /bin/sh "$IMG" \
      -c 'trap "" TERM HUP; mkdir -p /w; echo ok > /w/index.html; exec httpd -f -p 127.0.0.1:'"$P18301"' -h /w')
check "TERM-ignoring container registered" wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id2")/${P18301} "
# a signal that does not stop it changes nothing
t0=$(now_ns)
dk kill -s HUP slow >/dev/null
event_ns '^kill$' "$id2" "$t0" >/dev/null
sleep 1
check "kill -s HUP (not a stop signal): still registered" bash -c "! grep -q '^deregister $NODE/$(s12 "$id2")/' '$H_TMP/r1.store'"
t0=$(now_ns)
dk stop -t 3 slow >/dev/null &
stop_pid=$!
check_latency "stop of a TERM-ignoring container -> down" r1 "$(down_re "$id2" ${P18301})" "$id2" '^kill$' "$t0"
wait "$stop_pid"
down_ns=$(dtool logtime "$LOG" "$(down_re "$id2" ${P18301})" "$t0")
die_ns=$(event_ns '^die$' "$id2" "$t0")
if [[ -n "$down_ns" && -n "$die_ns" && $down_ns -lt $((die_ns - 2000000000)) ]]; then
    check "down at kill(15), $(( (die_ns - down_ns) / 1000000 )) ms before die" true
else
    check "down at kill(15), before die (down=$down_ns die=$die_ns)" false
fi

# A container with its own StopSignal (HUP) that it ignores: `docker stop` sends HUP, then
# SIGKILL 3 s later.  The kill(HUP) is its stop: down at once, seconds before it dies (while a
# kill -s HUP of a container without that StopSignal changed nothing, above).
id7=$(dk run -d --network host --name hupstop --stop-signal SIGHUP --expose ${P18306} \
      --entrypoint /bin/sh "$IMG" \
      -c 'trap "" TERM HUP; mkdir -p /w; echo ok > /w/index.html; exec httpd -f -p 127.0.0.1:'"$P18306"' -h /w')
check "StopSignal=HUP container registered" wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id7")/${P18306} "
t0=$(now_ns)
dk stop -t 3 hupstop >/dev/null &
stop_pid=$!
check_latency "stop of a container with StopSignal HUP -> down" r1 "$(down_re "$id7" ${P18306})" "$id7" '^kill$' "$t0"
wait "$stop_pid"
down_ns=$(dtool logtime "$LOG" "$(down_re "$id7" ${P18306})" "$t0")
die_ns=$(event_ns '^die$' "$id7" "$t0")
check "StopSignal HUP: down at kill(1), before die (down=$down_ns die=$die_ns)" \
    test -n "$down_ns" -a -n "$die_ns" -a "${down_ns:-0}" -lt "$(( ${die_ns:-0} - 2000000000 ))"

# ---- kill ----------------------------------------------------------------------------------
id3=$(run_whoami k1 ${P18302})
check "id3 registered" wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id3")/${P18302} "
t0=$(now_ns)
dk kill k1 >/dev/null
check_latency "docker kill (9) -> down" r1 "$(down_re "$id3" ${P18302})" "$id3" '^kill$' "$t0"

# ---- pause / unpause -----------------------------------------------------------------------
id4=$(run_whoami p1 ${P18303})
check "id4 registered" wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id4")/${P18303} "
t0=$(now_ns)
dk pause p1 >/dev/null
check_latency "pause -> down" r1 "$(down_re "$id4" ${P18303})" "$id4" '^pause$' "$t0"
t0=$(now_ns)
dk unpause p1 >/dev/null
check_latency "unpause -> up" r1 "$(up_re "$id4" ${P18303})" "$id4" '^unpause$' "$t0"

# ---- HEALTHCHECK: up only while healthy ----------------------------------------------------
t0=$(now_ns)
id5=$(run_whoami h1 ${P18304} "${WHOAMI_HEALTH_ARGS[@]}")
check_latency "health: healthy -> up" r1 "$(up_re "$id5" ${P18304})" "$id5" 'health_status: healthy' "$t0"
start_ns=$(event_ns '^start$' "$id5" "$t0")
healthy_ns=$(event_ns 'health_status: healthy' "$id5" "$t0")
up_ns=$(dtool logtime "$LOG" "$(up_re "$id5" ${P18304})" "$t0")
if [[ -n "$up_ns" && -n "$healthy_ns" && $up_ns -ge $((healthy_ns / 1000000 * 1000000)) ]]; then
    check "not up while the health check was starting ($(( (healthy_ns - start_ns) / 1000000 )) ms)" true
else
    check "not up before healthy (up=$up_ns healthy=$healthy_ns)" false
fi
t0=$(now_ns)
dk exec h1 whoami sick
check_latency "health: unhealthy -> down" r1 "$(down_re "$id5" ${P18304})" "$id5" 'health_status: unhealthy' "$t0"
t0=$(now_ns)
dk exec h1 whoami heal
check_latency "health: healthy again -> up" r1 "$(up_re "$id5" ${P18304})" "$id5" 'health_status: healthy' "$t0"

# ---- restart, remove -----------------------------------------------------------------------
id6=$(run_whoami r1c ${P18305})
check "id6 registered" wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id6")/${P18305} "
n_before=$(store_count r1 "^register $NODE/$(s12 "$id6")/${P18305} ")
t0=$(now_ns)
dk restart -t 2 r1c >/dev/null
check_latency "restart: down at its kill" r1 "$(down_re "$id6" ${P18305})" "$id6" '^kill$' "$t0"
check_latency "restart: up again at its start" r1 "$(up_re "$id6" ${P18305})" "$id6" '^start$' "$t0"
check "restart: registered again" wait_for --timeout 5 \
    bash -c "[[ \$(grep -c '^register $NODE/$(s12 "$id6")/${P18305} ' '$H_TMP/r1.store') -gt $n_before ]]"

t0=$(now_ns)
dk rm -f p1 >/dev/null
check_latency "rm -f -> down" r1 "$(down_re "$id4" ${P18303})" "$id4" '^kill$' "$t0"

# ---- at the end: exactly what docker ps says -----------------------------------------------
sleep 0.5
check_eq "local set matches docker ps" "$(expected_ids)" "$(local_ids r1)"
check_eq "catalog (sink) matches docker ps" "$(expected_ids)" "$(dtool sinkset "$H_TMP/r1.sink")"
check "no errors or warnings in the agent's log" bash -c "! grep -E ' (error|warn): ' '$LOG'"
check "regent still running" daemon_alive r1
daemon_stop r1
echo "latencies (event -> regent, command -> regent):" >&2
cat "$H_TMP/latency.txt" >&2
dl_finish
