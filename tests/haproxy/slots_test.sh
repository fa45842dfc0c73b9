#!/usr/bin/env bash
# slots_test.sh - the haproxy sink's server slots grow past the first shape (8 instances in a
# service) through one reload that keeps the existing servers' names and serves every
# instance; and the sink's timeout keys (timeout_connect/client/server/check, the [sink] defaults
# and a per-service override), check_timeout, command_timeout and startup_grace are accepted
# and rendered; check_timeout gives up a `haproxy -c` that hangs; startup_grace keeps the routes
# of the run before while the catalog is empty at start, then empties them; command_timeout gives
# up a request on an admin socket that never answers; a stop that races a reload still stops
# haproxy within stop_timeout with keep_running = false, and leaves it routing with
# keep_running = true.  Real haproxy 2.6, real HTTP backends on loopback.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
HX=$T/hx
mkdir -p "$HX"
CFG=$HX/haproxy.cfg
ADMIN=$HX/haproxy-admin.sock
MASTER=$HX/haproxy-master.sock
P_WEB=$(free_port); P_TCP=$(free_port)
N=12
declare -A BP
for ((i = 1; i <= N; i++)); do BP[b$i]=$(free_port); done
# all N backends in one python process (one start instead of N)
BE_ARGS=()
for ((i = 1; i <= N; i++)); do BE_ARGS+=("${BP[b$i]}" "b$i"); done
daemon_start backends "${TOOL[@]}" backend "${BE_ARGS[@]}"
# ready when it answers its own name (a foreign listener on the port would not)
backend_is() { [[ "$(http_get "http://127.0.0.1:$1/")" == "$2" ]]; }
for ((i = 1; i <= N; i++)); do
    check "backend b$i answers" wait_for --timeout 20 backend_is "${BP[b$i]}" "b$i"
done

line() { echo "web-$1 web 127.0.0.1 ${BP[b$1]}"; }
write_instances() { # N: web-1..web-N, and one tcp instance
    local i
    { for ((i = 1; i <= $1; i++)); do line "$i"; done
      echo "tcp-1 tcpsvc 127.0.0.1 ${BP[b1]}"; } > "$INST.tmp" && mv "$INST.tmp" "$INST"
}
write_instances 8

cat > "$T/regent.ini" <<EOF
[agent]
node = slots-test
debounce = 5ms
state_dir = $T/state
log_level = debug

[source testsource]
file = $INST
interval = 10ms

[store teststore]

[sink haproxy]
manage = true
keep_running = false
config_file = $CFG
bind_address = 127.0.0.1
reload_interval = 200ms
check_interval = 1s
startup_grace = 2s
check_timeout = 20s
command_timeout = 4s
timeout_connect = 3s
timeout_client = 45s
timeout_server = 50s
timeout_check = 1500ms

[service web]
port = $P_WEB
mode = http
check = /

[service tcpsvc]
port = $P_TCP
mode = tcp
timeout_connect = 2s
timeout_server = 7s
EOF
check "--check-config accepts the timeout keys" "$REGENT_BIN" --check-config -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"

# check_timeout bounds `haproxy -c`: a haproxy binary that hangs (sleeps 30 s) is given up after
# check_timeout = 500ms, and the configuration is refused naming the cause.
printf '#!/bin/sh\nexec sleep 30\n' > "$T/hang-haproxy"; chmod +x "$T/hang-haproxy"
sed -e "s|^manage = true|haproxy = $T/hang-haproxy\nadmin_socket = $T/none.sock\nreload_command = /bin/true|" \
    -e 's|^check_timeout = 20s|check_timeout = 500ms|' "$T/regent.ini" > "$T/hang.ini"
t0=$(date +%s%N)
"$REGENT_BIN" --check-config -c "$T/hang.ini" -p "$REGENT_PLUGIN_DIR" > "$T/hang.out" 2>&1; rc=$?
hang_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check_eq "check_timeout: a hanging haproxy -c fails the configuration" 1 "$rc"
check "check_timeout: ... naming the timeout ($(tail -n 2 "$T/hang.out" | head -n 1))" grep -q 'hang-haproxy -c .*refused the configuration: timed out' "$T/hang.out"
check "check_timeout: ... after check_timeout, not the 30 s haproxy would take ($hang_ms ms)" test "$hang_ms" -lt 15000

daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
reloads() { haproxy_master_cmd --sock "$MASTER" "show proc" | awk '$2 == "master" { print $3 }'; }
names_of() { "${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" "$1" | awk '$1 ~ /^b[0-9]+$/ { print $1 }' | sort -V | paste -sd' '; }
want_names() { local i; for ((i = 1; i <= $1; i++)); do printf 'b%d\n' "$i"; done | paste -sd' '; }
serves_all() { [[ "$(names_of $(( $1 * 3 )))" == "$(want_names "$1")" ]]; }
check "8 instances: every one serves through haproxy" wait_for --timeout 30 serves_all 8
check "haproxy reports its reload count" wait_for --timeout 10 eval '[[ -n "$(reloads)" ]]'
# keep_running = false stops it with regent; tracked so that the harness stops it by pid if not
hx_track_master "$MASTER" || true

# --- the keys are rendered ---------------------------------------------------------------------
section() { awk -v s="listen $1" '$0 == s { on = 1; print; next } /^[^ ]/ { on = 0 } on' "$CFG"; }
web=$(section web); tcp=$(section tcpsvc)
check_contains "timeout_connect from [sink haproxy]" "$web" "timeout connect 3s"
check_contains "timeout_client from [sink haproxy]" "$web" "timeout client 45s"
check_contains "timeout_server from [sink haproxy]" "$web" "timeout server 50s"
check_contains "timeout_check from [sink haproxy] (ms kept)" "$web" "timeout check 1500ms"
check_contains "per-service timeout_connect overrides the default" "$tcp" "timeout connect 2s"
check_contains "per-service timeout_server overrides the default" "$tcp" "timeout server 7s"
check_contains "a service without an override keeps the default client timeout" "$tcp" "timeout client 45s"

# --- growth past the first shape ----------------------------------------------------------------
slots0=$(section web | grep -c '^    server ')
echo "  | web has $slots0 server slots for 8 instances"
check "the first shape has room for the 8 instances, not for 12" test "$slots0" -ge 8 -a "$slots0" -lt "$N"
# server name -> address of the 8 first instances, before the growth
map0=$("${TOOL[@]}" servers "$ADMIN" web | awk '$2 != "" && $4 == 0 { print $1, $2 }' | sort)
R0=$(reloads)
check "no pipeline pending before the growth" wait_for --timeout 5 eval "! ls '$HX'/*.new >/dev/null 2>&1"
write_instances "$N"
check "12 instances: every one serves through haproxy" wait_for --timeout 20 serves_all "$N"
slots1=$(section web | grep -c '^    server ')
echo "  | web has $slots1 server slots for $N instances after $(( $(reloads) - R0 )) reload(s)"
check "the service grew to at least $N server slots" test "$slots1" -ge "$N"
check_eq "the growth took exactly one reload" "$((R0 + 1))" "$(reloads)"
map1=$("${TOOL[@]}" servers "$ADMIN" web | awk '$2 != "" && $4 == 0 { print $1, $2 }' | sort)
check "the first 8 instances kept their server names" \
    bash -c 'comm -23 <(printf "%s\n" "$1") <(printf "%s\n" "$2") | grep -q . && exit 1; exit 0' _ "$map0" "$map1"
check "the haproxy file passes haproxy -c" haproxy -c -q -f "$CFG"

# --- and back: shrinking needs no reload ---------------------------------------------------------
R1=$(reloads)
write_instances 8
check "back to 8: the 4 last are out of rotation" wait_for --timeout 20 serves_all 8
check_eq "shrinking took no reload" "$R1" "$(reloads)"

daemon_stop regent
check "regent stopped cleanly (logged)" grep -q 'info: core: stopped' "$LOG"
# (haproxy's own ALERT that its worker was terminated, relayed at the stop, is not regent's error)
check "regent logged no error" eval "! grep -E ' error: ' '$LOG' | grep -v 'ALERT'"

# --- startup_grace: at start, an empty catalog keeps the routes of the run before for that long --
# log_ms LOG REGEX: the time of day (ms) of LOG's first line matching REGEX
log_ms() { awk -v re="$2" '$0 ~ re { split(substr($1, 12), t, ":"); printf "%d\n", (t[1] * 3600 + t[2] * 60 + t[3]) * 1000; exit }' "$1"; }
# (the file the run above left lists web and tcpsvc; its haproxy stopped with it)
check "the file of the run before lists web" grep -qx 'listen web' "$CFG"
: > "$INST"
t0=$(date +%s%N)
daemon_start regent-grace "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
GLOG=$(daemon_log regent-grace)
check "startup_grace: the empty catalog keeps the file of the run before (logged)" \
    wait_for --timeout 10 grep -qE "the catalog has no service yet; keeping $CFG as it is for up to [0-9]+ ms" "$GLOG"
check "startup_grace: ... web is still in the file meanwhile" grep -qx 'listen web' "$CFG"
check "startup_grace: then the routes of the run before are emptied" \
    wait_for --timeout 30 eval "! grep -qx 'listen web' '$CFG'"
gone_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "startup_grace: ... not before startup_grace = 2s ($gone_ms ms after the start)" test "$gone_ms" -ge 2000
# on regent's own clock (the test's wait for the log line above can outlast the grace)
t_start=$(log_ms "$GLOG" 'info: sink haproxy: starting')
# (haproxy is started only once the hold is over, with the emptied file; with no service to
# route, its first start also waits for start_wait, 5 s after the sink started)
check "startup_grace: haproxy started with the emptied file (logged)" \
    wait_for --timeout 15 grep -q 'info: sink haproxy: started haproxy (master pid' "$GLOG"
t_run=$(log_ms "$GLOG" 'info: sink haproxy: started haproxy \(master pid')
wait_for --timeout 5 hx_track_master "$MASTER" || true
gap=-1
[[ -n "$t_run" && -n "$t_start" ]] && gap=$(( (t_run - t_start + 86400000) % 86400000 ))
check "startup_grace: ... no sooner than 2 s after the sink started ($gap ms on regent's clock)" \
    test "$gap" -ge 2000
daemon_stop regent-grace

# --- command_timeout: a request on an admin socket that never answers is given up after it -------
# An existing haproxy (manage = false) whose admin socket accepts and never answers: the first
# server-state poll (sent 300 ms after the sink starts) and the state dump before the reload time
# out after command_timeout = 1s (the default would be 5s).  Timed on regent's own log clock.
daemon_start silent "${TOOL[@]}" silent "$T/silent.sock"
check "the silent admin socket listens" wait_for --timeout 10 test -S "$T/silent.sock"
sed -e "s|^manage = true|admin_socket = $T/silent.sock\nreload_command = /bin/true|" \
    -e 's|^command_timeout = 4s|command_timeout = 1s|' \
    -e "s|^config_file = .*|config_file = $T/silent-haproxy.cfg|" "$T/regent.ini" > "$T/silent.ini"
write_instances 2
daemon_start regent-silent "$REGENT_BIN" -c "$T/silent.ini" -p "$REGENT_PLUGIN_DIR"
SLOG=$(daemon_log regent-silent)
check "command_timeout: the dump over the silent socket is given up, naming the socket and the cause" \
    wait_for --timeout 30 grep -qF "cannot dump the server state over $T/silent.sock (connection timed out)" "$SLOG"
check "command_timeout: the first server-state poll timed out too (logged)" \
    wait_for --timeout 30 grep -qE "debug: sink haproxy: server states: .*silent.sock: connection timed out" "$SLOG"
t_start=$(log_ms "$SLOG" 'info: sink haproxy: starting')
t_out=$(log_ms "$SLOG" "debug: sink haproxy: server states: .*silent.sock: connection timed out")
gap=-1
[[ -n "$t_out" && -n "$t_start" ]] && gap=$(( (t_out - t_start + 86400000) % 86400000 ))
check "command_timeout: ... 1-3 s after the sink started, not the default 5 s ($gap ms on regent's clock)" \
    test "$gap" -ge 1000 -a "$gap" -le 3000
daemon_stop regent-silent
daemon_stop silent

# --- a stop that races a reload (keep_running = false): a master that reads a `reload` after it
# acted on regent's SIGTERM (haproxy 2.6 handles pending signals before its CLI, and waits for its
# workers to exit) re-executes as a new master that never saw the signal, and serves on.  Made
# certain here: the worker is held (SIGSTOP), so the master that got SIGTERM waits for it; then a
# reload on its CLI; then the worker is let go.  With stop_timeout = 2s (below the 3 s SIGKILL),
# regent must still have stopped haproxy when it exits.
RHX=$T/hx-race; mkdir -p "$RHX"
RMASTER=$RHX/haproxy-master.sock
HLOG=$T/state-race/haproxy.cfg.log
{ line 1; line 2; } > "$T/race-instances"
race_ini() { # KEEP_RUNNING OUT
    sed -e "s|^config_file = .*|config_file = $RHX/haproxy.cfg|" -e "s|^file = .*|file = $T/race-instances|" \
        -e "s|^state_dir = .*|state_dir = $T/state-race|" -e "s|^keep_running = .*|keep_running = $1|" \
        -e 's|^\[agent\]$|[agent]\nstop_timeout = 2s|' "$T/regent.ini" > "$2"
}
# race_stop NAME TERMED: hold the worker, SIGTERM to regent, wait for its sink's stop (TERMED = 1:
# and for the master to act on regent's SIGTERM), a reload on the master CLI, let the worker go;
# prints the master's pid
race_stop() {
    local m w n0
    m=$(hx_master_pid "$RMASTER"); w=$(hx_worker_pid "$RMASTER")
    n0=$(grep -c 'Exiting Master process' "$HLOG")
    kill -STOP "$w"
    kill -TERM "$(daemon_pid "$1")"
    wait_for --timeout 10 grep -q 'sink haproxy: stopping$' "$(daemon_log "$1")" >/dev/null ||
        h_die "race: $1 did not log its sink's stop"
    if [[ $2 == 1 ]]; then
        wait_for --timeout 10 eval "[[ \$(grep -c 'Exiting Master process' '$HLOG') -gt $n0 ]]" >/dev/null ||
            h_die "race: the master did not act on regent's SIGTERM"
    fi
    "$PY" -c "
import socket, sys
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); c.sendall(b'reload\n'); c.close()" "$RMASTER"
    sleep 0.1
    kill -CONT "$w"
    echo "$m"
}
race_ini false "$T/race.ini"
daemon_start regent-race "$REGENT_BIN" -c "$T/race.ini" -p "$REGENT_PLUGIN_DIR"
RLOG=$(daemon_log regent-race)
check "race: haproxy runs" wait_for --timeout 30 hx_track_master "$RMASTER"
M=$(race_stop regent-race 1)
check "race: regent exited" daemon_wait_exit regent-race 15
check "race: haproxy took the reload after regent's SIGTERM (its log: exiting, then reloading)" \
    eval "grep -A3 'Exiting Master process' '$HLOG' | grep -q 'Reloading HAProxy'"
check "race: keep_running = false: no haproxy master left running once regent exited" hx_masters_stopped
check "race: ... stopped within stop_timeout (logged, not given up)" \
    eval "grep -q 'haproxy (pid $M) stopped' '$RLOG' && ! grep -q 'did not stop in time' '$RLOG'"
check "race: ... without SIGKILL" eval "! grep -q 'SIGKILL' '$RLOG'"
# keep_running = true: the same race leaves haproxy running and routing (it took the reload)
race_ini true "$T/race-keep.ini"
daemon_start regent-race-keep "$REGENT_BIN" -c "$T/race-keep.ini" -p "$REGENT_PLUGIN_DIR"
check "race, keep_running = true: haproxy runs" wait_for --timeout 30 hx_track_master "$RMASTER"
M=$(race_stop regent-race-keep 0)
check "race, keep_running = true: regent exited" daemon_wait_exit regent-race-keep 15
check "race, keep_running = true: a master answers after the reload" \
    wait_for --timeout 10 eval '[[ -n "$(hx_master_pid "$RMASTER")" ]]'
check_eq "race, keep_running = true: ... the same master, left running" "$M" "$(hx_master_pid "$RMASTER")"
race_serves() { [[ "$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 6 | awk '$1 ~ /^b[0-9]+$/ { print $1 }' | sort -V | uniq | paste -sd' ')" == "b1 b2" ]]; }
check "race, keep_running = true: ... and routes" wait_for --timeout 10 race_serves
daemon_stop "haproxy-master-$M"
harness_summary
