#!/usr/bin/env bash
# master_busy_test.sh - a reload that finds haproxy's master CLI refusing connections (the master
# re-executing for another reload: the previous sink instance's during a configuration reload's
# hand-over, or an operator's) waits for it and reloads once it answers: no "reload failed"
# error, no unhealthy sink, no backoff.  The master socket is moved away for 0.8 s (connect:
# ENOENT, as in the re-exec's window) while a new service needs a reload; then the same with a
# socket that refuses (ECONNREFUSED).  Real haproxy 2.6 on loopback.
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
P_WEB=$(free_port); P_BE=$(free_port); P_API=$(free_port); P_API2=$(free_port)
echo "web-1 web 127.0.0.1 $P_BE" > "$T/instances"
cat > "$T/regent.ini" <<EOF
[agent]
node = busy-test
debounce = 5ms
state_dir = $T/state

$(hx_local_sections "$T/instances")
check_interval = 1s

[service web]
port = $P_WEB
mode = http

[service api]
port = $P_API
mode = http

[service api2]
port = $P_API2
mode = http
EOF
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
check "haproxy runs" wait_for --timeout 30 hx_track_master "$MASTER"
check "... and the sink is ready" wait_for --timeout 15 grep -q "sink haproxy: ready" "$LOG"

# busy HOW SERVICE PORT: the master socket unavailable (HOW: gone | refusing) for 0.8 s while
# SERVICE's first instance (a new listen section: a reload) arrives.
busy() {
    local how=$1 svc=$2 n
    n=$(grep -c "haproxy reloaded" "$LOG")
    mv "$MASTER" "$MASTER.away"
    if [[ $how == refusing ]]; then
        # A socket file nobody listens on: connect() says ECONNREFUSED.
        python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$MASTER"
    fi
    echo "$svc-1 $svc 127.0.0.1 $P_BE" >> "$T/instances"
    check "$how: regent waits for the master CLI" \
        wait_for --timeout 10 grep -q "master socket $MASTER: .* waiting for it before reloading" "$LOG"
    sleep 0.8
    rm -f "$MASTER"
    mv "$MASTER.away" "$MASTER"
    check "$how: ... and reloads once it answers" \
        wait_for --timeout 10 eval "[[ \$(grep -c 'haproxy reloaded' '$LOG') -gt $n ]]"
    check "$how: ... with the new service routed (its listener bound)" \
        wait_for --timeout 10 eval "ss -ltn | grep -q '127.0.0.1:$3 '"
}
busy gone api "$P_API"
busy refusing api2 "$P_API2"
check "no reload failed, the sink never unhealthy" \
    eval "! grep -Eq 'haproxy reload failed|unhealthy' '$LOG'"
daemon_stop regent
harness_summary
