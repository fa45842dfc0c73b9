#!/usr/bin/env bash
# drive_test.sh - the haproxy sink driving an existing haproxy (manage = false): the harness
# starts haproxy in master-worker mode with the user's own file (global with the admin socket,
# defaults, a listener of the user's) plus regent's file; regent reloads it through the master
# CLI, then through a reload_command; the user's listener is never touched; a restarted regent
# finds its file up to date (no reload, same server names); stopping regent leaves haproxy
# serving.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
ADMIN=$T/admin.sock
MASTER=$T/haproxy-master.sock
RCFG=$T/regent-haproxy.cfg

P_USER=$(free_port); P_WEB=$(free_port); P_API=$(free_port); P_STATS=$(free_port)
declare -A BP
for b in b1 b2 b3 b4 u; do BP[$b]=$(free_port); done
BE_ARGS=()   # all in one python process (one start instead of five)
for b in "${!BP[@]}"; do BE_ARGS+=("${BP[$b]}" "$b"); done
daemon_start backends "${TOOL[@]}" backend "${BE_ARGS[@]}"
for b in "${!BP[@]}"; do wait_for --timeout 20 http_get "http://127.0.0.1:${BP[$b]}/" >/dev/null || exit 1; done

cat > "$T/user.cfg" <<EOF
global
    stats socket $ADMIN mode 600 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen userfe
    bind 127.0.0.1:$P_USER
    server u 127.0.0.1:${BP[u]}

# the user's own big backend (never used: its servers disabled): regent does not count it
# when it guesses the size of `show servers state`, so with the answer limit made small for
# this test the whole answer passes it and the dump is asked again per chunk of services
backend userbig
EOF
for ((i = 0; i < 300; i++)); do echo "    server big$i 127.0.0.1:9 disabled"; done >> "$T/user.cfg"
echo "# regent writes this file" > "$RCFG"
haproxy_start_master "$T/user.cfg" "$RCFG" >/dev/null || exit 1
HPID=$HAPROXY_PID

line() { echo "$1 $2 127.0.0.1 ${BP[$3]}"; }
INSTANCES=("$(line web-1 web b1)" "$(line web-2 web b2)")
render_instances() { printf '%s\n' "${INSTANCES[@]}"; }
render_instances > "$INST"

mkcfg() { # FILE RELOAD-LINE
    cat > "$1" <<EOF
[agent]
node = drive
debounce = 5ms
state_dir = $H_TMP/state-drive
log_level = debug

[source testsource]
file = $INST
interval = 10ms

[store teststore]

[sink haproxy]
config_file = $RCFG
admin_socket = $ADMIN
$2
include = $T/user.cfg
bind_address = 127.0.0.1
stats = 127.0.0.1:$P_STATS
reload_interval = 200ms
# a service that leaves the catalog goes at once (the empty grace is tested in isolation_test.sh)
empty_grace = 0

[service web]
port = $P_WEB
mode = http
check = /

[service api]
port = $P_API
mode = http
EOF
}
mkcfg "$T/regent.ini" "master_socket = $MASTER"

reloads() { haproxy_master_cmd "show proc" | awk '$2 == "master" { print $3 }'; }
user_sum() { sha256sum < "$T/user.cfg"; }
U0=$(user_sum)
R0=$(reloads)

# regent's two services (8 slots each) are guessed at ~4 KB, under half this limit: the state dump
# asks every server at once, and the user's 300 servers (~25 KB) take the answer past the limit
export REGENT_HX_ANSWER_MAX=16384
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
web_ok() { http_get "http://127.0.0.1:$P_WEB/" >/dev/null; }
check "web answers through the existing haproxy" wait_for --timeout 20 web_ok
check "the file came through a reload on the master CLI" test "$(reloads)" -gt "$R0"
check_eq "the harness's master is still the master" "$HPID" \
    "$(haproxy_master_cmd "show proc" | awk '$2 == "master" { print $1 }')"
check_eq "round robin over web-1 and web-2" "b1 5|b2 5|errors 0" \
    "$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 10 | paste -sd'|')"
check_eq "the user's listener still serves" "u" "$(http_get "http://127.0.0.1:$P_USER/")"
check_eq "the user's file is untouched" "$U0" "$(user_sum)"
check "regent's file has no global section (the user's global stays theirs)" \
    eval "! grep -q '^global' '$RCFG'"

R0=$(reloads)
INSTANCES+=("$(line web-3 web b3)")
check_show() {
    local desc=$1 out rc; shift
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | sed 's/^/  | /'
    if [[ $rc -eq 0 ]]; then check "$desc" true; else check "$desc" false; fi
}
# web has a check: the joining server is ready at once, its health check pending.
check_show "add web-3: ready within 100 ms over the admin socket, check pending (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b3]}" ready 100
check_show "add web-3: up once its check passed (ms shown)" \
    "${TOOL[@]}" wait-up "$ADMIN" web "127.0.0.1:${BP[b3]}" 8000
check_eq "add web-3: no reload" "$R0" "$(reloads)"

INSTANCES+=("$(line api-1 api b4)")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
api_ok() { [[ "$(http_get "http://127.0.0.1:$P_API/")" == b4 ]]; }
check "new service api: served after a reload" wait_for --timeout 10 api_ok
check_eq "new service api: one reload" "$((R0 + 1))" "$(reloads)"
check "the state file was written beside the file" test -s "$T/haproxy.state"
check "the whole state answer passed the answer limit: asked again per chunk of services" \
    grep -q 'pass the answer limit: asked per chunk of services' "$LOG"
check "the state was dumped per chunk of services, in more than one request" \
    grep -qE 'server state dumped in ([2-9]|[1-9][0-9]+) request\(s\) of .* \(per chunk of services\)' "$LOG"
check "the state file carries web's servers" grep -qE '^[0-9]+ web [0-9]+ [^ ]+ 127[.]0[.]0[.]1 ' "$T/haproxy.state"

# --- restart regent: the file is up to date, nothing to reload, same server names -----------------
SLOT=$("${TOOL[@]}" servers "$ADMIN" web | awk -v a="127.0.0.1:${BP[b3]}" '$2 == a { print $1 }')
check "no candidate file pending before the restart" wait_for --timeout 5 eval "! ls '$T'/*.new >/dev/null 2>&1"
SUM=$(sha256sum < "$RCFG")
daemon_stop regent
check "regent stopped: haproxy (not managed) keeps running" daemon_alive haproxy
check "regent stopped: web still served" web_ok
R0=$(reloads)
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
check "restart: regent finds its file up to date" \
    wait_for --timeout 10 grep -q 'regent-haproxy.cfg is up to date' "$LOG"
check_eq "restart: the file is unchanged" "$SUM" "$(sha256sum < "$RCFG")"
check_eq "restart: no reload" "$R0" "$(reloads)"
check_eq "restart: web-3 keeps its server name" "$SLOT" \
    "$("${TOOL[@]}" servers "$ADMIN" web | awk -v a="127.0.0.1:${BP[b3]}" '$2 == a { print $1 }')"
INSTANCES=("${INSTANCES[@]/$(line web-1 web b1)}")
check_show "restart: remove web-1 over the admin socket (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b1]}" down 100
check_eq "restart: still no reload" "$R0" "$(reloads)"

# --- a reload regent did not make (the user's own SIGUSR2 to the master) ----------------------------
# regent's persistent admin-socket connection may still reach the old worker (it answers there
# after a reload); the next connection (at most 10 s later) sees another worker's pid, reads the
# new worker's server states and sets the differences, so a change made meanwhile is not lost.
W0=$("${TOOL[@]}" pid "$ADMIN")
kill -USR2 "$HPID"
check "outside reload: a new worker answers on the admin socket" \
    wait_for --timeout 15 eval '[[ "$("${TOOL[@]}" pid "$ADMIN")" =~ ^[0-9]+$ && "$("${TOOL[@]}" pid "$ADMIN")" != "$W0" ]]'
INSTANCES+=("$(line web-1 web b1)")
check_show "outside reload: web-1 joins and the new worker has it within 20 s (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b1]}" ready 20000
check "outside reload: regent noticed the other worker on its admin-socket connection" \
    wait_for --timeout 15 grep -q 'another haproxy worker answers (pid [0-9]*, was [0-9]*) without a reload by regent' "$LOG"

# --- reload_command instead of the master CLI ----------------------------------------------------
daemon_stop regent
mkcfg "$T/regent.ini" "reload_command = kill -USR2 $HPID"
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
check "reload_command: regent started" wait_for --timeout 10 grep -q 'reloads with the command' "$LOG"
R0=$(reloads)
INSTANCES=("${INSTANCES[@]/$(line api-1 api b4)}")   # api leaves the catalog: a reload
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
api_gone() { ! http_get "http://127.0.0.1:$P_API/" >/dev/null 2>&1; }
check "reload_command: api is removed" wait_for --timeout 10 api_gone
check "reload_command: regent saw the new worker" \
    wait_for --timeout 10 eval "sed -n '/reloads with the command/,\$p' '$LOG' | grep -q 'haproxy reloaded'"
check "reload_command: one reload (SIGUSR2 to the master)" \
    wait_for --timeout 10 eval '[[ "$(reloads 2>/dev/null)" == "$((R0 + 1))" ]]'
check "reload_command: web still served" web_ok
check_eq "reload_command: the user's listener still serves" "u" "$(http_get "http://127.0.0.1:$P_USER/")"
check "regent logged no error" eval "! grep -E ' error: ' '$LOG'"
grep -E ' error: ' "$LOG" | head -5 | sed 's/^/  | /' >&2

harness_summary
