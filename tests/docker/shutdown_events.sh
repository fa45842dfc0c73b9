#!/usr/bin/env bash
# tests/docker/shutdown_events.sh: an experiment, not a ctest entry (docs/docker.md, "When the
# daemon stops"): does dockerd 20.10, SIGTERMed with running containers, write every container's
# `die` event to an open /events stream before it exits?  Each run: 3 host-network whoami
# containers (--restart always), `curl --unix-socket ... /events` following the stream, optional
# CPU load (niced busy loops started and stopped by pid), dockerd SIGTERMed; once curl has seen
# EOF, the die events it got are counted.  Prints one RESULT line per run and a summary.
#
#   RUNS=20 LOAD=3 REGENT_BIN=... REGENT_PLUGIN_DIR=... tests/docker/shutdown_events.sh
# (REGENT_BIN/REGENT_PLUGIN_DIR are only needed by dlib.sh's checks; any path will do.)
: "${REGENT_BIN:=/bin/true}" "${REGENT_PLUGIN_DIR:=/nonexistent}"
export REGENT_BIN REGENT_PLUGIN_DIR
source "$(dirname "$0")/dlib.sh"
RUNS=${RUNS:-20}
LOAD=${LOAD:-3}
dl_init
ID=()
for i in 1 2 3; do
    ID[i]=$(run_whoami "w$i" "$(free_port 127.0.0.1)" --restart always) ||
        { check "container w$i started" false; dl_finish; exit 1; }
done
filters='%7B%22type%22%3A%5B%22container%22%5D%7D'   # {"type":["container"]}
missing_runs=0 missing_total=0 done_runs=0
for ((r = 1; r <= RUNS; r++)); do
    out="$H_TMP/events.$r"
    t0=$(date +%s.%N)
    daemon_start "curl$r" curl -sS -N --unix-socket "$DK_SOCK" -o "$out" \
        "http://localhost/v1.41/events?since=$t0&filters=$filters"
    sleep 0.5
    for ((l = 1; l <= LOAD; l++)); do daemon_start "busy$r.$l" nice -n 5 sh -c 'while :; do :; done'; done
    sleep 0.5
    dockerd_stop d1
    if ! wait_for --timeout 30 bash -c "! kill -0 $(daemon_pid "curl$r") 2>/dev/null"; then
        echo "run $r: curl still running 30 s after dockerd's SIGTERM" >&2
    fi
    for ((l = 1; l <= LOAD; l++)); do daemon_stop "busy$r.$l"; done
    daemon_stop "curl$r"
    n=0
    for i in 1 2 3; do grep -q "\"status\":\"die\",\"id\":\"${ID[i]}\"" "$out" && n=$((n + 1)); done
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "RESULT run=$r die_events=$n/3 load1=$load"
    done_runs=$((done_runs + 1))
    if [[ $n -lt 3 ]]; then missing_runs=$((missing_runs + 1)); missing_total=$((missing_total + 3 - n)); fi
    dockerd_restart d1 || { check "dockerd restarted" false; break; }
    wait_for --timeout 60 bash -c "[[ \$(DOCKER_CONFIG=$H_TMP/.h/docker-cli $H_DOCKER -H unix://$DK_SOCK ps -q | wc -l) == 3 ]]" ||
        { check "run $r: the 3 containers restarted" false; break; }
done
echo "SUMMARY runs=$done_runs load_loops=$LOAD runs_with_missing_die=$missing_runs die_events_missing=$missing_total"
check "the experiment ran $RUNS runs" test "$done_runs" -eq "$RUNS"
dl_finish
