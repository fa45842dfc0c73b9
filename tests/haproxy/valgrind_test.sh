#!/usr/bin/env bash
# valgrind_test.sh - regent with the haproxy sink (manage = true) under valgrind: start haproxy,
# fast-path add and remove, a new service (reload) and its removal (listener closed over the
# runtime API, then a reload), a configuration haproxy rejects, a crash of
# haproxy (restart), then SIGTERM.  No memory error, nothing definitely or indirectly lost.
# Skipped (exit 77) when valgrind is missing; not registered in a sanitizer build (valgrind and
# ASan do not mix), and skipped there too if run by hand.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
if [[ "${REGENT_SANITIZE:-0}" == 1 ]] || ! command -v valgrind >/dev/null; then
    harness_skip "sanitizer build or no valgrind (apt-get install valgrind)"
    harness_summary
    exit 77
fi

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
HX=$T/hx
mkdir -p "$HX"
ADMIN=$HX/haproxy-admin.sock
MASTER=$HX/haproxy-master.sock
P_WEB=$(free_port); P_API=$(free_port); P_STATS=$(free_port)
B1=$(free_port); B2=$(free_port)
daemon_start be-1 "${TOOL[@]}" backend "$B1" b1
daemon_start be-2 "${TOOL[@]}" backend "$B2" b2
wait_for --timeout 20 http_get "http://127.0.0.1:$B1/" >/dev/null || exit 1
wait_for --timeout 20 http_get "http://127.0.0.1:$B2/" >/dev/null || exit 1
echo "web-1 web 127.0.0.1 $B1" > "$INST"

mkcfg() {
    cat > "$T/regent.ini" <<EOF
[agent]
node = vg
state_dir = $T/state
debounce = 5ms
stop_timeout = 10s
log_level = debug

$(hx_local_sections "$INST")
stats = 127.0.0.1:$P_STATS
reload_interval = 100ms

[service web]
port = $P_WEB
mode = http
$1

[service api]
port = $P_API
empty_grace = 0
EOF
}
mkcfg ""
export REGENT_NO_DLCLOSE=1   # keep the plugin's symbols for valgrind's stacks
daemon_start regent valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --log-file="$T/vg.out" "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
web_ok() { http_get "http://127.0.0.1:$P_WEB/" >/dev/null; }
check "web answers (regent under valgrind)" wait_for --timeout 60 web_ok
hx_track_master "$MASTER"
printf 'web-1 web 127.0.0.1 %s\nweb-2 web 127.0.0.1 %s\n' "$B1" "$B2" > "$INST"
check "fast path: web-2 added" \
    wait_for --timeout 20 eval "'${TOOL[0]}' '${TOOL[1]}' servers '$ADMIN' web | grep -qE ':$B2 2 [04]$'"
printf 'web-2 web 127.0.0.1 %s\napi-1 api 127.0.0.1 %s\n' "$B2" "$B1" > "$INST"
check "slow path: api added" wait_for --timeout 30 http_get "http://127.0.0.1:$P_API/"
printf 'web-2 web 127.0.0.1 %s\n' "$B2" > "$INST"
check "api removed: its listener closed over the runtime API" \
    wait_for --timeout 30 grep -q 'service api: listener closed over the runtime API' "$LOG"
check "api removed: its section leaves the file" \
    wait_for --timeout 30 eval "! grep -q '^listen api\$' '$HX/haproxy.cfg'"
mkcfg "server_options = ssl"
daemon_kill regent HUP
check "rejected configuration logged" \
    wait_for --timeout 30 grep -q 'haproxy rejected the new configuration' "$LOG"
MPID=$(haproxy_master_cmd --sock "$MASTER" "show proc" | awk '$2 == "master" { print $1 }')
kill -KILL "$MPID"
check "haproxy restarted after a crash" wait_for --timeout 30 eval \
    "[[ \"\$(haproxy_master_cmd --sock '$MASTER' 'show proc' 2>/dev/null | awk '\$2 == \"master\" { print \$1 }')\" =~ ^[0-9]+\$ && \"\$(haproxy_master_cmd --sock '$MASTER' 'show proc' | awk '\$2 == \"master\" { print \$1 }')\" != $MPID ]]"
check "web answers again" wait_for --timeout 30 web_ok
hx_track_master "$MASTER"
# The fast path after the restart: a new persistent admin-socket connection, still open (5 s
# idle) when regent stops.
printf 'web-1 web 127.0.0.1 %s\nweb-2 web 127.0.0.1 %s\n' "$B1" "$B2" > "$INST"
check "fast path after the crash: web-1 added" \
    wait_for --timeout 20 eval "'${TOOL[0]}' '${TOOL[1]}' servers '$ADMIN' web | grep -qE ':$B1 2 [04]$'"
check "persistent admin-socket connections: one before the crash, one after" \
    test "$(grep -c 'admin socket .*: connection [0-9]* opened (prompt mode)' "$LOG")" -ge 2
daemon_kill regent TERM
check "regent under valgrind exits after SIGTERM" wait_for --timeout 60 eval '! daemon_alive regent'
check "valgrind: the run finished" grep -q 'ERROR SUMMARY' "$T/vg.out"
check_contains "valgrind: no memory error" "$(grep 'ERROR SUMMARY' "$T/vg.out")" "ERROR SUMMARY: 0 errors"
check "valgrind: nothing definitely or indirectly lost" \
    eval "! grep -E '(definitely|indirectly) lost: [1-9]' '$T/vg.out'"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$T/vg.out" | sed 's/^/  | /'
check "the managed haproxy stopped with regent (keep_running = false)" eval "! haproxy_master_cmd --sock '$MASTER' 'show proc' >/dev/null 2>&1"
[[ $H_FAIL -eq 0 ]] || sed -n '/ERROR SUMMARY/,$p;/Invalid\|uninitialised\|definitely/,+20p' "$T/vg.out" | head -60 >&2

harness_summary
