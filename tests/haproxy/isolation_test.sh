#!/usr/bin/env bash
# isolation_test.sh - the haproxy sink (manage = true) against the real haproxy 2.6:
#  - empty grace (#13.3): a service whose instances all leave keeps its listener (http: 503
#    at once) and gets its instances back over the runtime API, with no reload; a service
#    with a short empty_grace loses its listen section after it, through one reload, its
#    listener closed over the runtime API (disable frontend) before that reload, with 0
#    failed requests on the other services;
#  - per-service isolation (#14.1): a service whose port is already bound on this host is
#    left out (logged, /healthz names it, regent_haproxy_services_excluded = 1) while a new
#    good service added with it is routed; once the port is free it is added;
#  - haproxy's open-file limit (#14.1, #15.6): under a hard limit of 1200 a big service is
#    capped and reported; with strict_limits = false and maxconn it is routed whole.
# Every regent here has keep_running = false: each haproxy master is tracked as a harness daemon
# (hx_track_master, stopped by pid whatever regent does) and must be gone once its regent exited.
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

P_G=$(free_port); P_S=$(free_port); P_W=$(free_port); P_C=$(free_port); P_F=$(free_port)
P_STATS=$(free_port)
STATS_SINK=""
HAVE_STATS=0
if [[ -f "$REGENT_PLUGIN_DIR/stats.so" ]]; then
    HAVE_STATS=1; P_METRICS=$(free_port)
    STATS_SINK=$'[sink stats]\nlisten = 127.0.0.1:'"$P_METRICS"
fi
declare -A BP
for b in b1 b2 b3; do BP[$b]=$(free_port); done
for b in "${!BP[@]}"; do daemon_start "be-$b" "${TOOL[@]}" backend "${BP[$b]}" "$b"; done
for b in "${!BP[@]}"; do wait_for --timeout 20 http_get "http://127.0.0.1:${BP[$b]}/" >/dev/null ||
    { echo "backend $b did not start" >&2; exit 1; }; done

line() { echo "$1 $2 127.0.0.1 ${BP[$3]}"; } # ID SERVICE BACKEND
write_inst() { printf '%s\n' "$@" > "$INST.tmp" && mv "$INST.tmp" "$INST"; }
write_inst "$(line g-1 grace b1)" "$(line s-1 short b2)" "$(line w-1 web b3)"

INI=$T/regent.ini
cat > "$INI" <<EOF
[agent]
node = hx-iso
debounce = 5ms
state_dir = $H_TMP/state-hx-iso
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
stats = 127.0.0.1:$P_STATS
reload_interval = 200ms
check_interval = 1s
drain_timeout = 1s

$STATS_SINK

[service grace]
port = $P_G
mode = http

[service short]
port = $P_S
mode = tcp
empty_grace = 1500ms

[service web]
port = $P_W
mode = http

[service clash]
port = $P_C
mode = http

[service fresh]
port = $P_F
mode = http
EOF

check_config() { "$REGENT_BIN" --check-config -c "$1" -p "$REGENT_PLUGIN_DIR" 2>&1; }
check "--check-config accepts empty_grace" check_config "$INI"
sed "s/^stats = 127.0.0.1:$P_STATS\$/stats = 0.0.0.0:$P_STATS/" "$INI" > "$T/pub.ini"
check_contains "--check-config: stats beyond loopback refused without stats_public" \
    "$(check_config "$T/pub.ini")" "stats_public = true"
sed "s/^stats = 0.0.0.0:$P_STATS\$/stats = 0.0.0.0:$P_STATS\nstats_public = true/" "$T/pub.ini" \
    > "$T/pub2.ini"
check "--check-config: stats beyond loopback accepted with stats_public = true" \
    check_config "$T/pub2.ini"
sed "s/^stats = 127.0.0.1:$P_STATS\$/stats = 127.0.0.1:+$P_STATS/" "$INI" > "$T/sign.ini"
check_contains "--check-config: a signed stats port is refused" "$(check_config "$T/sign.ini")" \
    "must be ADDR:PORT"
printf 'server_options = weight \r0\n' > "$T/cr.txt"
sed "/^\[service web\]\$/r $T/cr.txt" "$INI" > "$T/cr.ini"
check_contains "--check-config: a CR inside server_options is refused" \
    "$(check_config "$T/cr.ini")" "control byte"

daemon_start regent "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
get() { "${TOOL[@]}" get "http://127.0.0.1:$1/" 2>/dev/null; }
answers() { [[ "$(get "$1")" == "200 $2" ]]; }
check "web answers through haproxy" wait_for --timeout 20 answers "$P_W" b3
check "grace answers through haproxy" wait_for --timeout 10 answers "$P_G" b1
check "short answers through haproxy" wait_for --timeout 10 answers "$P_S" b2
hx_track_master "$MASTER" || true

master_cmd() { haproxy_master_cmd --sock "$MASTER" "$1"; }
reloads() { master_cmd "show proc" | awk '$2 == "master" { print $3 }'; }
settled() { ! grep -q . <(find "$HX" -name '*.new'); }
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check "the sink settled" wait_for --timeout 5 settled

# --- empty grace: all instances leave, then come back, within the grace ----------------------
R0=$(reloads)
write_inst "$(line s-1 short b2)" "$(line w-1 web b3)"
check "grace: g-1 leaves haproxy's rotation (drained to maintenance)" \
    "${TOOL[@]}" wait-down "$ADMIN" grace "127.0.0.1:${BP[b1]}" 5000
check "grace: the listen section stays in the file" grep -q '^listen grace$' "$CFG"
check "grace: its port keeps accepting connections" accepts "$P_G"
check_eq "grace: http answers 503 meanwhile (no server up)" "503" "$(get "$P_G" | head -n 1 | cut -d' ' -f1)"
check_show() { local desc=$1 out rc; shift; out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | sed 's/^/  | /'; if [[ $rc -eq 0 ]]; then check "$desc" true; else check "$desc" false; fi; }
check_show "grace: g-1 back, up over the runtime API (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(printf '%s\n' "$(line g-1 grace b1)" "$(line s-1 short b2)" "$(line w-1 web b3)")" \
    "$ADMIN" grace "127.0.0.1:${BP[b1]}" up 5000
check "grace: answers from b1 again" wait_for --timeout 5 answers "$P_G" b1
check_eq "grace: no reload happened (master reload count)" "$R0" "$(reloads)"

# --- a short empty_grace ends: the section goes through one reload ----------------------------
# When the grace ends, the listener closes over the runtime API (disable frontend) before the
# reload that drops the section; a load on the other services meanwhile loses nothing.
daemon_start drill "${TOOL[@]}" watch "$ADMIN" 60 "$T/drill" "http://127.0.0.1:$P_W/" \
    "http://127.0.0.1:$P_G/"
# A connection through short, opened before and used after its listener closed, is answered.
daemon_start held "$PY" -c "
import os, socket, sys, time
c = socket.create_connection(('127.0.0.1', $P_S), timeout=30)
open('$T/held.open', 'w').close()
while not os.path.exists('$T/held.go'):
    time.sleep(0.02)
c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
print('answer', c.recv(4096).split(b'\\r\\n')[0].decode()); sys.stdout.flush()"
check "short: a connection through it is open" wait_for --timeout 10 test -e "$T/held.open"
sleep 0.3
L0=$(wc -l < "$LOG")
write_inst "$(line g-1 grace b1)" "$(line w-1 web b3)"
check "short: still listening right after its instance left" accepts "$P_S"
closed_line() { tail -n +"$((L0 + 1))" "$LOG" | grep -n 'service short: listener closed over the runtime API' | head -n 1 | cut -d: -f1; }
reload_line() { tail -n +"$((L0 + 1))" "$LOG" | grep -n 'haproxy reloaded' | head -n 1 | cut -d: -f1; }
check "short: its listener is closed over the runtime API once the grace ends" \
    wait_for --timeout 15 eval '[[ -n "$(closed_line)" ]]'
touch "$T/held.go"
check "short: the connection opened before is answered after the listener closed" \
    wait_for --timeout 10 grep -q '^answer HTTP/1.[01] 200' "$(daemon_log held)"
check "short: its listen section leaves the file after empty_grace" \
    wait_for --timeout 15 eval "! grep -q '^listen short\$' '$CFG'"
check "short: the port is closed once haproxy reloaded" wait_for --timeout 10 eval "! accepts $P_S"
check "short: the reload is logged" wait_for --timeout 10 eval '[[ -n "$(reload_line)" ]]'
CL=$(closed_line); RL=$(reload_line)
check "short: the listener was closed before the reload (log lines $CL < $RL)" \
    test "${CL:-999999}" -lt "${RL:-0}"
check_eq "short: exactly one reload" "$((R0 + 1))" "$(reloads)"
check "short: the port can be bound again after the reload" "$PY" -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $P_S)); s.listen(1)"
sleep 0.3
touch "$T/drill.stop"
check "drill: the load ended" wait_for --timeout 30 eval '! daemon_alive drill'
DOUT=$(daemon_log drill)
sed -n 's/^/  | /p' "$DOUT" | grep -E 'load '
check "drill: web answered during the removal" grep -Eq "^load http://127.0.0.1:$P_W/ ok=[1-9]" "$DOUT"
check "drill: grace answered during the removal" grep -Eq "^load http://127.0.0.1:$P_G/ ok=[1-9]" "$DOUT"
check_eq "drill: failed requests on the other services" "0 0" \
    "$(sed -n 's/^load .* fail=\([0-9]*\)$/\1/p' "$DOUT" | paste -sd' ')"

# --- isolation: a clashing port next to a new good service ------------------------------------
daemon_start squatter "$PY" -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $P_C)); s.listen(8)
time.sleep(3600)"
check "squatter holds the clash port" wait_for --timeout 10 accepts "$P_C"
check "the sink settled" wait_for --timeout 5 settled
R1=$(reloads); F1=$(master_cmd "show proc" | awk '$2 == "master" { n = 0; if (match($0, /failed: [0-9]+/)) n = substr($0, RSTART + 8, RLENGTH - 8); print n + 0 }')
write_inst "$(line g-1 grace b1)" "$(line w-1 web b3)" "$(line c-1 clash b2)" "$(line f-1 fresh b1)"
check "isolation: the new good service is routed" wait_for --timeout 15 answers "$P_F" b1
check_contains "isolation: the clash is logged, naming the service and the cause" \
    "$(grep 'service clash is not routed' "$LOG" | head -n 1)" "cannot be bound"
check "isolation: clash is not in the file" eval "! grep -q '^listen clash\$' '$CFG'"
check "isolation: the other services keep serving" answers "$P_W" b3
failed() { master_cmd "show proc" | awk '$2 == "master" { n = 0; if (match($0, /failed: [0-9]+/)) n = substr($0, RSTART + 8, RLENGTH - 8); print n + 0 }'; }
check_eq "isolation: no failed reload (show proc)" "$F1" "$(failed)"
check "isolation: no bind error from haproxy" eval "! grep -q 'cannot bind socket' '$LOG'"
if [[ $HAVE_STATS == 1 ]]; then
    hz=$(curl -s --noproxy '*' -m 5 "http://127.0.0.1:$P_METRICS/healthz")
    printf '%s\n' "$hz" | head -c 400 | sed 's/^/  | healthz: /'; echo
    check_contains "isolation: /healthz names the excluded service and the cause" "$hz" \
        "service clash is not routed"
    metric() { http_get "http://127.0.0.1:$P_METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 { print $2 }'; }
    check_eq "isolation: regent_haproxy_services_excluded is 1" "1" \
        "$(metric 'regent_haproxy_services_excluded{plugin="haproxy"}')"
fi
# a change of another service while clash is out: still applied
write_inst "$(line g-1 grace b1)" "$(line w-1 web b3)" "$(line c-1 clash b2)" "$(line f-1 fresh b1)" \
    "$(line w-2 web b2)"
check "isolation: another service's change is applied meanwhile" \
    wait_for --timeout 10 eval "grep -q '# w-2\$' '$CFG'"
daemon_stop squatter
check "isolation: once the port is free, clash is added" wait_for --timeout 30 answers "$P_C" b2
check "isolation: clash is in the file" grep -q '^listen clash$' "$CFG"
if [[ $HAVE_STATS == 1 ]]; then
    check_eq "isolation: regent_haproxy_services_excluded back to 0" "0" \
        "$(metric 'regent_haproxy_services_excluded{plugin="haproxy"}')"
    check_eq "isolation: /healthz is 200 again" "200" \
        "$(http_code "http://127.0.0.1:$P_METRICS/healthz")"
fi
echo "  | reloads during the isolation part: $(( $(reloads) - R1 ))"

daemon_stop regent
check "keep_running = false: its haproxy stopped with regent" hx_masters_stopped

# --- a bad service at a cold start (#15): the services arrive after the first haproxy runs (a
# store still reading past start_wait, here 300 ms), so the first configuration with services
# goes without a separate haproxy -c; the section haproxy refuses (server_options = ssl wants a CA file) fails that
# reload, the next candidate is checked, the refusal is pinned on the service and the good one
# is routed.
HX3=$T/hx3; mkdir -p "$HX3"
INST3=$T/instances3; : > "$INST3"
P_OK=$(free_port); P_BAD=$(free_port)
sed -e "s#^file = .*#file = $INST3#" -e "s#^config_file = .*#config_file = $HX3/haproxy.cfg#" \
    -e "s#^state_dir = .*#state_dir = $H_TMP/state-hx-cold#" -e "s#^stats = .*#stats = 127.0.0.1:$(free_port)#" \
    -e "/^\[sink stats\]/,/^listen/d" -e "/^\[service /,\$d" \
    -e "s#^\[sink haproxy\]\$#[sink haproxy]\nstart_wait = 300ms#" "$INI" > "$T/cold.ini"
printf '[service okay]\nport = %s\nmode = http\n\n[service bad]\nport = %s\nmode = http\nserver_options = ssl\n' \
    "$P_OK" "$P_BAD" >> "$T/cold.ini"
daemon_start regent-cold "$REGENT_BIN" -c "$T/cold.ini" -p "$REGENT_PLUGIN_DIR"
LOG3=$(daemon_log regent-cold)
check "cold: the first haproxy runs (no service yet)" wait_for --timeout 20 grep -q 'sink haproxy: ready' "$LOG3"
hx_track_master "$HX3/haproxy-master.sock" || true
printf '%s\n' "$(line o-1 okay b1)" "$(line x-1 bad b2)" > "$INST3.tmp"; mv "$INST3.tmp" "$INST3"
check "cold: the good service is routed next to the bad one" wait_for --timeout 30 answers "$P_OK" b1
check "cold: the first configuration with services went without a separate haproxy -c" \
    grep -q 'cold start: the first configuration with services goes without a separate haproxy -c' "$LOG3"
check "cold: haproxy refused it at the reload (logged)" grep -q 'haproxy refused the new configuration' "$LOG3"
check_contains "cold: the next check pinned the refusal on the bad service" \
    "$(grep 'service bad is not routed' "$LOG3" | head -n 1)" "refused its section"
check "cold: bad is not in the file" eval "! grep -q '^listen bad\$' '$HX3/haproxy.cfg'"
check "cold: haproxy's first start waited for services, then started without them (start_wait)" \
    grep -q 'no service to route within start_wait' "$LOG3"
daemon_stop regent-cold
check "cold: its haproxy stopped with regent" hx_masters_stopped

# --- a bad service in the registry's first read (#15): haproxy's first start waits for the
# catalog (start_wait) and starts once with every service, that file not checked separately;
# haproxy refuses it (its master exits before a worker answers): no restart with that file,
# the next candidate is checked, the refusal pinned on the bad service, and haproxy started
# with the good one.
HX5=$T/hx5; mkdir -p "$HX5"
INST5=$T/instances5
printf '%s\n' "$(line o-1 okay b1)" "$(line x-1 bad b2)" > "$INST5"
sed -e "s#^file = .*#file = $INST5#" -e "s#^config_file = .*#config_file = $HX5/haproxy.cfg#" \
    -e "s#^state_dir = .*#state_dir = $H_TMP/state-hx-direct#" \
    -e "s#^start_wait = .*#start_wait = 10s#" "$T/cold.ini" > "$T/direct.ini"
daemon_start regent-direct "$REGENT_BIN" -c "$T/direct.ini" -p "$REGENT_PLUGIN_DIR"
LOG5=$(daemon_log regent-direct)
check "direct: the good service is routed next to the bad one" wait_for --timeout 30 answers "$P_OK" b1
hx_track_master "$HX5/haproxy-master.sock" || true
check "direct: haproxy's first start took the first configuration with services, unchecked" \
    grep -q 'cold start: haproxy starts once with the first configuration with services' "$LOG5"
check "direct: haproxy refused it at its start (logged, not restarted with it)" \
    grep -q 'haproxy exited before its first worker answered' "$LOG5"
check_contains "direct: the next check pinned the refusal on the bad service" \
    "$(grep 'service bad is not routed' "$LOG5" | head -n 1)" "refused its section"
check "direct: bad is not in the file" eval "! grep -q '^listen bad\$' '$HX5/haproxy.cfg'"
check_eq "direct: haproxy started twice (the refused file, then the checked one), never restarted with the refused file" \
    "2" "$(grep -c 'started haproxy (master pid' "$LOG5")"
check_eq "direct: the running haproxy never reloaded" "0" \
    "$(haproxy_master_cmd --sock "$HX5/haproxy-master.sock" "show proc" | awk '$2 == "master" { print $3 }')"
daemon_stop regent-direct
check "direct: its haproxy stopped with regent" hx_masters_stopped

# --- an include haproxy rejects: refused by --check-config; the daemon's start (validate_purpose
# START, ABI 1.6) leaves that check to the sink's first haproxy -c, whose refusal fails the sink's
# start, named, while regent keeps running.
printf 'global\n    no-such-directive-for-regent\n' > "$T/bad-include.cfg"
sed -e "s#^\[sink haproxy\]\$#[sink haproxy]\ninclude = $T/bad-include.cfg#" \
    -e "s#^config_file = .*#config_file = $HX3/inc.cfg#" -e "s#^state_dir = .*#state_dir = $H_TMP/state-hx-inc#" \
    "$T/cold.ini" > "$T/inc.ini"
check_contains "include: --check-config refuses an include haproxy rejects" "$(check_config "$T/inc.ini")" \
    "refused the configuration"
daemon_start regent-inc "$REGENT_BIN" -c "$T/inc.ini" -p "$REGENT_PLUGIN_DIR"
LOG4=$(daemon_log regent-inc)
check "include: the daemon's start fails the sink's start, naming haproxy -c" \
    wait_for --timeout 20 grep -q 'sink haproxy: failed to start: haproxy -c rejected the configuration' "$LOG4"
check "include: the configuration passed the start's validation (regent started)" \
    grep -q 'core: regent .* starting with' "$LOG4"
check "include: regent keeps running" daemon_alive regent-inc
hx_track_master "$HX3/haproxy-master.sock" || true
daemon_stop regent-inc
check "include: no haproxy left running" hx_masters_stopped

# --- haproxy's open-file limit (#14.1): an agent whose hard RLIMIT_NOFILE is 1200 (haproxy
# inherits it); a service of 900 instances would need ~1350 slots, more descriptors than
# haproxy may open: it is capped and reported, no reload fails, a new service is still routed.
HX2=$T/hx2; mkdir -p "$HX2"
P_H=$(free_port); P_T=$(free_port)
INST2=$T/instances2
for i in $(seq 1 900); do echo "h-$i huge 127.0.0.1 $((20000 + i))"; done > "$INST2.tmp"
mv "$INST2.tmp" "$INST2"
sed -e "s#^file = .*#file = $INST2#" -e "s#^config_file = .*#config_file = $HX2/haproxy.cfg#" \
    -e "s#^state_dir = .*#state_dir = $H_TMP/state-hx-fd#" -e "s#^stats = .*#stats = 127.0.0.1:$(free_port)#" \
    -e "/^\[sink stats\]/,/^listen/d" -e "/^\[service /,\$d" "$INI" > "$T/fd.ini"
printf '[service huge]\nport = %s\nmode = tcp\n\n[service tiny]\nport = %s\nmode = http\n' \
    "$P_H" "$P_T" >> "$T/fd.ini"
daemon_start regent-fd prlimit --nofile=1024:1200 "$REGENT_BIN" -c "$T/fd.ini" -p "$REGENT_PLUGIN_DIR"
LOG2=$(daemon_log regent-fd)
check "fd limit: the big service is capped, logged with the limit" \
    wait_for --timeout 20 grep -q "service huge: server slots capped at .* open-file limit is 1200" "$LOG2"
check "fd limit: the big service is routed (its listener accepts)" wait_for --timeout 20 accepts "$P_H"
hx_track_master "$HX2/haproxy-master.sock" || true
{ cat "$INST2"; line t-1 tiny b1; } > "$INST2.tmp"; mv "$INST2.tmp" "$INST2"
check "fd limit: a new service is routed next to it" wait_for --timeout 20 answers "$P_T" b1
check "fd limit: haproxy never refused its open-file limit" eval "! grep -rqs 'Cannot raise FD limit' '$LOG2' '$HX2' '$H_TMP/state-hx-fd'"
n=$(grep -c '^    server ' "$HX2/haproxy.cfg")
echo "  | server lines in the file: $n"
check "fd limit: the file's servers stay within the budget (1200 - 518 - 60)" test "$n" -le 622
daemon_stop regent-fd
check "fd limit: its haproxy stopped with regent" hx_masters_stopped

# --- strict_limits = false with a global maxconn (#15.6): the same 900 instances under the same
# hard limit of 1200 are all routed: haproxy counts ~1,600 descriptors (a slot each, 2 per
# connection), says it cannot raise its limit and runs; the sink budgets listeners + 2 x maxconn
# (the first wait is long for ASan, which reads the 900 instances at ~20 ms each).
# --check-config refuses the key without maxconn, without manage, and a maxconn the limit cannot
# hold, each at its line.
HX5=$T/hx5; mkdir -p "$HX5"
sed -e "s#^config_file = .*#config_file = $HX5/haproxy.cfg#" -e "s#^state_dir = .*#state_dir = $H_TMP/state-hx-loose#" \
    -e "s#^stats = .*#stats = 127.0.0.1:$(free_port)#" "$T/fd.ini" > "$T/loose-base.ini"
sed -e 's#^\[sink haproxy\]$#[sink haproxy]\nstrict_limits = false#' "$T/loose-base.ini" > "$T/loose-nomc.ini"
ln=$(grep -n '^strict_limits = false$' "$T/loose-nomc.ini" | cut -d: -f1)
out=$(check_config "$T/loose-nomc.ini")
check_contains "strict_limits = false without maxconn: refused at its line" "$out" \
    "$T/loose-nomc.ini:$ln: sink haproxy.strict_limits: false needs maxconn"
sed -e 's#^strict_limits = false$#strict_limits = false\nmaxconn = 100#' "$T/loose-nomc.ini" > "$T/loose.ini"
check "strict_limits = false with maxconn: --check-config accepts it" check_config "$T/loose.ini"
sed -e 's#^maxconn = 100$#maxconn = 400#' "$T/loose.ini" > "$T/loose-big.ini"
ln=$(grep -n '^maxconn = 400$' "$T/loose-big.ini" | cut -d: -f1)
out=$(prlimit --nofile=1024:1200 "$REGENT_BIN" --check-config -c "$T/loose-big.ini" -p "$REGENT_PLUGIN_DIR" 2>&1)
check_contains "maxconn beyond what the hard limit holds: refused at its line" "$out" \
    "$T/loose-big.ini:$ln: sink haproxy.maxconn: 400 connections take 800 descriptors"
sed -e 's#^manage = true$#manage = false\nadmin_socket = /run/none.sock\nreload_command = /bin/true\nmax_spread_checks = 30s#' \
    "$T/loose.ini" > "$T/loose-drive.ini"
out=$(check_config "$T/loose-drive.ini")
check_contains "strict_limits without manage: refused" "$out" "sink haproxy.strict_limits: needs manage = true"
check_contains "maxconn without manage: refused" "$out" "sink haproxy.maxconn: needs manage = true"
check_contains "max_spread_checks without manage: refused" "$out" \
    "sink haproxy.max_spread_checks: needs manage = true"
daemon_start regent-loose prlimit --nofile=1024:1200 "$REGENT_BIN" -c "$T/loose.ini" -p "$REGENT_PLUGIN_DIR"
LOG5=$(daemon_log regent-loose)
routed() { "${TOOL[@]}" servers "$HX5/haproxy-admin.sock" huge | awk '$4 == 0 && $2 !~ /^0\.0\.0\.0:/' | wc -l; }
check "no strict-limits: all 900 instances of the big service are routed" \
    wait_for --timeout 120 eval '[[ "$(routed)" -eq 900 ]]'
hx_track_master "$HX5/haproxy-master.sock" || true
check "no strict-limits: the global section says so" grep -qx '    no strict-limits' "$HX5/haproxy.cfg"
check "no strict-limits: ... with the maxconn" grep -qx '    maxconn 100' "$HX5/haproxy.cfg"
check "max_spread_checks: its default (20s) in the global section" grep -qx '    max-spread-checks 20s' "$HX5/haproxy.cfg"
check_contains "no strict-limits: haproxy runs with that maxconn" \
    "$(haproxy_admin_cmd "$HX5/haproxy-admin.sock" 'show info')" "Maxconn: 100"
check "no strict-limits: haproxy counted more than the limit and ran (its warning)" \
    eval "grep -rqs 'Cannot raise FD limit to [0-9]*, limit is 1200' '$LOG5' '$HX5' '$H_TMP/state-hx-loose'"
check "no strict-limits: no service capped" eval "! grep -q 'capped at' '$LOG5'"
n=$(grep -c '^    server ' "$HX5/haproxy.cfg")
echo "  | server lines in the file: $n (1200 - 518 - 60 - 2 x 100 = 422 listeners allowed)"
check "no strict-limits: the file holds more slots than the hard limit" test "$n" -gt 1200
check "no strict-limits: the big service's port accepts" wait_for --timeout 20 accepts "$P_H"
daemon_stop regent-loose
check "no strict-limits: its haproxy stopped with regent" hx_masters_stopped
harness_summary
