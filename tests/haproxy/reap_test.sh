#!/usr/bin/env bash
# reap_test.sh - a haproxy sink removed by a configuration reload (SIGHUP without [sink haproxy])
# whose managed master outlives stop_timeout is SIGKILLed and reaped: no zombie left for the
# rest of regent's life.  The master is held with SIGSTOP so that it cannot act on regent's
# SIGTERM; stop_timeout = 1s (below the sink's own 3 s SIGKILL), so the core gives up waiting
# and the sink's free sends the SIGKILL.  Twice: the master the sink started (reaped on
# SIGCHLD), then one a sink instance adopted from the instance it replaced (a reload that
# changed a sink key; reaped through its pidfd).  Real haproxy 2.6 on loopback.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"

T=$H_TMP
HX=$T/hx
mkdir -p "$HX"
MASTER=$HX/haproxy-master.sock
P_WEB=$(free_port); P_BE=$(free_port)
echo "web-1 web 127.0.0.1 $P_BE" > "$T/instances"

# mkcfg WITH_SINK [CHECK_INTERVAL]: the configuration, with or without the haproxy sink
mkcfg() {
    {
        cat <<EOF
[agent]
node = reap-test
debounce = 5ms
state_dir = $T/state
stop_timeout = 1s
log_level = debug

[source testsource]
file = $T/instances
interval = 10ms

[store teststore]
EOF
        if [[ $1 == 1 ]]; then
            cat <<EOF

[sink haproxy]
manage = true
keep_running = false
config_file = $HX/haproxy.cfg
bind_address = 127.0.0.1
check_interval = ${2:-1s}

[service web]
port = $P_WEB
mode = http
EOF
        fi
    } > "$T/regent.ini.tmp" && mv "$T/regent.ini.tmp" "$T/regent.ini"
}
mkcfg 1
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
check "haproxy runs" wait_for --timeout 30 hx_track_master "$MASTER"
M=$(hx_master_pid "$MASTER"); W=$(hx_worker_pid "$MASTER")
check "its master is regent's child" \
    eval "[[ \$(awk '{ print \$4 }' /proc/$M/stat) == $(daemon_pid regent) ]]"

# proc_state PID: the state letter in /proc/PID/stat, or "gone"
proc_state() {
    local s
    s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $1 }')
    echo "${s:-gone}"
}
# removed WHAT: hold the master ($M), reload without the sink, and check that the master is
# SIGKILLed and reaped (n: how many times the core gave up a sink's stop so far)
removed() {
    local n
    n=$(grep -c "did not stop in time" "$LOG")
    kill -STOP "$M"
    mkcfg 0
    kill -HUP "$(daemon_pid regent)"
    check "$1: the reload removes the sink; the held master outlives stop_timeout and is SIGKILLed" \
        wait_for --timeout 15 grep -q "haproxy (pid $M) still runs as the sink stops: SIGKILL" "$LOG"
    check "$1: ... the core gave up waiting for the sink (stop_timeout)" \
        test "$(grep -c "did not stop in time" "$LOG")" -gt "$n"
    check "$1: the killed master is reaped: not a zombie (/proc/$M/stat: gone)" \
        wait_for --timeout 5 not_zombie
    sleep 0.5
    check_eq "$1: ... and stays so" "gone" "$(proc_state "$M")"
    check "$1: its worker is gone too" wait_for --timeout 10 eval "[[ \$(proc_state ${W:-0}) == gone ]]"
    check "$1: regent runs on" daemon_alive regent
}
not_zombie() { local s; s=$(proc_state "$M"); [[ $s != Z && $s != T ]]; }
removed "started"
check "started: ... with the reloaded configuration" grep -q "configuration reloaded" "$LOG"

# The same for a master the sink adopted: the sink back, then a reload that changes one of its
# keys (the new instance adopts the running master: regent's child, watched through a pidfd).
mkcfg 1
kill -HUP "$(daemon_pid regent)"
check "adopted: haproxy runs again" wait_for --timeout 30 hx_track_master "$MASTER"
M=$(hx_master_pid "$MASTER"); W=$(hx_worker_pid "$MASTER")
mkcfg 1 2s
kill -HUP "$(daemon_pid regent)"
check "adopted: the new instance adopted the master" \
    wait_for --timeout 15 grep -q "adopted the running haproxy (master pid $M," "$LOG"
check "adopted: ... the previous instance left it running" \
    wait_for --timeout 15 grep -q "leaving haproxy (master pid $M) running" "$LOG"
check_eq "adopted: ... the same master" "$M" "$(hx_master_pid "$MASTER")"
removed "adopted"
daemon_stop regent
check "regent stopped cleanly (no open handle at exit)" \
    eval "! grep -q 'the loop still had open handles' '$LOG'"
harness_summary
