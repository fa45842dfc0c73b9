# shellcheck shell=bash
# tests/docker/dlib.sh: helpers shared by the docker plugin's script tests, on top of
# tests/harness/lib.sh.  One private dockerd per test script (host networking, loopback only),
# regent running [source docker] + [store teststore] (its log: register/deregister lines) +
# [sink testsink] (catalog snapshots), and python helpers (dtool.py) that read regent's log
# timestamps and dockerd's event times to measure latencies.

DL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../harness/lib.sh
source "${REGENT_TEST_DIR:-$DL_DIR/..}/harness/lib.sh"

: "${REGENT_BIN:?REGENT_BIN not set (run through ctest)}"
: "${REGENT_PLUGIN_DIR:?REGENT_PLUGIN_DIR not set}"
PY=${PYTHON3:-python3}
NODE=n1
IMG=regent/whoami:1    # busybox + whoami, no EXPOSE: ports come from --expose

dtool() { "$PY" "$DL_DIR/dtool.py" "$@"; }

# dl_init [dockerd args...]: harness, one dockerd "d1", the whoami image, an event recorder.
dl_init() {
    harness_init || exit 1
    DK_SOCK=$(dockerd_start d1 "$@") || { harness_summary; exit 1; }
    image_build_whoami d1 "$IMG" || { harness_summary; exit 1; }
    dl_events_start
}

# A `docker events` recorder: "TIMENANO ACTION ID" per line in $H_TMP/dockevents.log.
dl_events_start() {
    daemon_start dockevents env DOCKER_CONFIG="$H_TMP/.h/docker-cli" "$H_DOCKER" \
        -H "unix://$DK_SOCK" events --filter type=container \
        --format '{{.TimeNano}} {{.Action}} {{.ID}}'
}

dk() { docker_cmd d1 "$@"; }

# regent_ini NAME [extra [source docker] lines...]: writes $H_TMP/NAME.ini
regent_ini() {
    local name=$1; shift
    {
        # state_dir: the test's own (the default, /var/lib/regent, is the machine's: a
        # managed haproxy's pid file and fd socket, a drain, shared by tests run side by side)
        printf '[agent]\nnode = %s\nhost_ip = 127.0.0.1\ndebounce = 10ms\nstop_timeout = 2s\n' "$NODE"
        printf 'state_dir = %s\n\n' "$H_TMP/$name.state"
        printf '[source docker]\nsocket = %s\nallow_loopback = true\nping_interval = 1s\n' "$DK_SOCK"
        printf 'ping_timeout = 1s\nrequest_timeout = 3s\nretry_max = 1s\n'
        local l; for l in "$@"; do printf '%s\n' "$l"; done
        printf '\n[store teststore]\nlog = %s\n\n[sink testsink]\nfile = %s\n' \
            "$H_TMP/$name.store" "$H_TMP/$name.sink"
    } > "$H_TMP/$name.ini"
}

# DL_VALGRIND=1: run regent under valgrind (report in $H_TMP/NAME.vg, see vg_clean), unless
# this is a sanitizer build or valgrind is missing.
dl_valgrind_ok() {
    [[ "${DL_VALGRIND:-0}" == 1 && "${REGENT_SANITIZE:-0}" != 1 ]] && command -v valgrind >/dev/null
}

# regent_launch NAME: start regent on $H_TMP/NAME.ini (debug log in $H_TMP/NAME.log)
regent_launch() {
    local name=$1
    local -a wrap=()
    if dl_valgrind_ok; then
        wrap=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
              --log-file="$H_TMP/$name.vg")
    fi
    : >> "$H_TMP/$name.store"
    [[ " ${DL_REGENTS:-} " == *" $name "* ]] || DL_REGENTS="${DL_REGENTS:-} $name"
    daemon_start "$name" "${wrap[@]}" "$REGENT_BIN" -c "$H_TMP/$name.ini" \
        --plugin-dir "$REGENT_PLUGIN_DIR" --log-level debug
}

# vg_clean NAME: after regent NAME exited, its valgrind report shows no error and no leak.
vg_clean() {
    local f="$H_TMP/$1.vg"
    [[ -f "$f" ]] || { echo "no valgrind report $f" >&2; return 1; }
    grep -q 'ERROR SUMMARY: 0 errors' "$f" &&
        { grep -q 'All heap blocks were freed' "$f" || grep -q 'definitely lost: 0 bytes' "$f"; } ||
        { tail -n 40 "$f" >&2; return 1; }
}

# regent_start NAME [extra [source docker] lines...]: start regent and wait for its first sync.
regent_start() {
    local name=$1; shift
    regent_ini "$name" "$@"
    regent_launch "$name"
    wait_for --timeout 30 grep -q 'synced with docker' "$H_TMP/$name.log"
}

regent_log() { echo "$H_TMP/$1.log"; }

# local_ids NAME: the ids the store holds now (register/deregister replayed), sorted.
local_ids() { dtool storeset "$H_TMP/$1.store"; }
# store_has NAME LINE-REGEX
store_has() { grep -qE "$2" "$H_TMP/$1.store"; }
store_count() { grep -cE "$2" "$H_TMP/$1.store"; }

# expected_ids: what `docker ps` says should be registered, for host-network whoami
# containers without mapping tricks (every exposed port, tcp and udp), sorted.
expected_ids() {
    local id p
    for id in $(dk ps -q --no-trunc); do
        for p in $(dk inspect -f '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$id"); do
            case $p in
                */udp) echo "$NODE/${id:0:12}/${p%/udp}/udp" ;;
                *) echo "$NODE/${id:0:12}/${p%/tcp}" ;;
            esac
        done
    done | LC_ALL=C sort
}

# run_whoami CNAME PORT [docker run args...]: host-network whoami on 127.0.0.1:PORT; prints the id
run_whoami() {
    local cname=$1 port=$2; shift 2
    whoami_run d1 "$IMG" "$cname" 127.0.0.1 "$port" "$@"
}

# now_ns
now_ns() { date +%s%N; }

# latency_ms NAME REGEX AFTER_NS [TIMEOUT]: wait for a regent log line matching REGEX stamped at
# or after AFTER_NS; print (its stamp - AFTER_NS) in ms. Fails on timeout.
latency_ms() {
    local name=$1 re=$2 after=$3 t=${4:-10} out
    if ! wait_for --timeout "$t" dtool logtime "$H_TMP/$name.log" "$re" "$after" >/dev/null; then
        echo "no log line matching /$re/ after $after" >&2
        return 1
    fi
    out=$(dtool logtime "$H_TMP/$name.log" "$re" "$after") || return 1
    echo $(( (out - after) / 1000000 ))
}

# event_ns ACTION-REGEX CONTAINER-ID AFTER_NS: TimeNano of the first such docker event
event_ns() {
    local i out
    for ((i = 0; i < 50; i++)); do
        out=$(dtool evtime "$H_TMP/dockevents.log" "$1" "$2" "$3") && { echo "$out"; return 0; }
        sleep 0.1
    done
    return 1
}

# check_latency DESC NAME REGEX CONTAINER-ID EVENT-REGEX T0_NS: the regent log line for a change
# must come within 1000 ms of the docker event that caused it.  Records the number in
# $H_TMP/latency.txt and prints it.
check_latency() {
    local desc=$1 name=$2 re=$3 id=$4 evre=$5 t0=$6 ev line ms cmd_ms
    ev=$(event_ns "$evre" "$id" "$t0") || { check "$desc (docker event $evre seen)" false; return; }
    if ! wait_for --timeout 10 dtool logtime "$H_TMP/$name.log" "$re" "$t0" >/dev/null; then
        check "$desc (line /$re/ appeared)" false; return
    fi
    line=$(dtool logtime "$H_TMP/$name.log" "$re" "$t0")
    ms=$(( (line - ev) / 1000000 ))
    cmd_ms=$(( (line - t0) / 1000000 ))
    [[ $ms -lt 0 ]] && ms=0   # log stamps have ms resolution
    printf '%-44s event->regent %5d ms   command->regent %5d ms\n' "$desc" "$ms" "$cmd_ms" |
        tee -a "$H_TMP/latency.txt" >&2
    echo "$desc $ms $cmd_ms" >> "${DL_LATENCY_FILE:-/dev/null}"
    if [[ $ms -le 1000 ]]; then check "$desc within 1 s of the docker event (${ms} ms)" true
    else check "$desc within 1 s of the docker event (${ms} ms)" false; fi
}

# dl_finish: stop every regent this script started, check their logs for sanitizer reports
# (ASan/UBSan/LSan print there; a sanitizer build aborts on the first error), print the summary.
dl_finish() {
    local n
    for n in ${DL_REGENTS:-}; do
        daemon_alive "$n" && daemon_stop "$n"
        check "regent $n: no sanitizer report in its log" \
            bash -c "! grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' '$H_TMP/$n.log'"
    done
    harness_summary
}
