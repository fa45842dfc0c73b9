#!/usr/bin/env bash
# routing_test.sh - the haproxy sink (manage = true) against the real haproxy
# 2.6 and real HTTP backends on loopback, driven by [source testsource] (a file
# this test rewrites) + [store teststore]: round-robin; an instance added,
# removed or moved within a service takes effect within 100 ms with no reload
# (the master keeps its worker); draining before removal; a new service comes
# through a reload that keeps server names and server state; a configuration
# haproxy rejects is never installed and the old one keeps serving; injection
# attempts through a service name, tag or address never reach the file; the
# managed haproxy is restarted after a crash, adopted by the next regent and outlives regent.
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
LOG=$T/regent.log

P_WEB=$(free_port); P_API=$(free_port); P_TCP=$(free_port); P_SLOW=$(free_port)
P_B1=$(free_port); P_B2=$(free_port); P_B3=$(free_port)
P_STATS=$(free_port)
# With the stats sink built too, the metrics are checked as well.
STATS_SINK=""
HAVE_STATS=0
if [[ -f "$REGENT_PLUGIN_DIR/stats.so" ]]; then
    HAVE_STATS=1; P_METRICS=$(free_port)
    STATS_SINK=$'[sink stats]\nlisten = 127.0.0.1:'"$P_METRICS"
fi
declare -A BP
for b in b1 b2 b3 b4 b5 b6 b7 b8 b9; do BP[$b]=$(free_port); done

# all nine backends in one python process (one start instead of nine)
BE_ARGS=()
for b in "${!BP[@]}"; do BE_ARGS+=("${BP[$b]}" "$b"); done
daemon_start backends "${TOOL[@]}" backend "${BE_ARGS[@]}"
for b in "${!BP[@]}"; do wait_for --timeout 20 http_get "http://127.0.0.1:${BP[$b]}/" >/dev/null ||
    { echo "backend $b did not start" >&2; exit 1; }; done

# check_show DESC CMD...: like check, and shows CMD's output (the measured numbers).
check_show() {
    local desc=$1 out rc; shift
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | sed 's/^/  | /'
    if [[ $rc -eq 0 ]]; then check "$desc" true; else check "$desc" false; fi
}

line() { echo "$1 $2 127.0.0.1 ${BP[$3]}${4:+ $4}"; } # ID SERVICE BACKEND [tags]
INSTANCES=(
    "$(line web-1 web b1)" "$(line web-2 web b2)" "$(line web-3 web b3)"
    "$(line tcp-1 tcpsvc b4)"
    "$(line slow-1 slowsvc b6)" "$(line slow-2 slowsvc b7)"
)
render_instances() { printf '%s\n' "${INSTANCES[@]}"; }
render_instances > "$INST"

mkcfg() { # FILE [extra tcpsvc lines]
    cat > "$1" <<EOF
[agent]
node = hx-test
state_dir = $T/state
debounce = 5ms
log_level = debug

[source testsource]
file = $INST
interval = 10ms

[store teststore]

[sink haproxy]
manage = true
config_file = $CFG
bind_address = 127.0.0.1
stats = 127.0.0.1:$P_STATS
reload_interval = 3s
check_interval = 1s
drain_timeout = 45s
slots = 32

$STATS_SINK

[service web]
port = $P_WEB
mode = http
check = /

[service api]
port = $P_API
mode = http

[service slowsvc]
port = $P_SLOW
mode = http
balance = first

[service burst1]
port = $P_B1

[service burst2]
port = $P_B2

[service burst3]
port = $P_B3

[service tcpsvc]
port = $P_TCP
mode = tcp
${2:-}
EOF
}
INI=$T/regent.ini
mkcfg "$INI"

# ---------------------------------------------------------------------------------------------
# configuration checks (validate())

check_config() { "$REGENT_BIN" --check-config -c "$1" -p "$REGENT_PLUGIN_DIR" 2>&1; }
check "--check-config accepts the test config" check_config "$INI"
mkcfg "$T/bad1.ini" "server_options = weight 10, bogus-option 1"
check_contains "--check-config: server option outside the allow-list" \
    "$(check_config "$T/bad1.ini")" "not in the allow-list"
sed 's/^mode = tcp$/mode = udp/' "$INI" > "$T/bad2.ini"
check_contains "--check-config: bad mode" "$(check_config "$T/bad2.ini")" "must be tcp or http"
L=$(grep -n '^mode = udp$' "$T/bad2.ini" | cut -d: -f1)
check_contains "--check-config: the bad mode reported at its own line, not [sink haproxy]'s" \
    "$(check_config "$T/bad2.ini")" "$T/bad2.ini:$L: service tcpsvc.mode: must be tcp or http"
sed "s/^port = $P_API\$/port = $P_WEB/" "$INI" > "$T/bad3.ini"
check_contains "--check-config: two services on one port, both named" \
    "$(check_config "$T/bad3.ini")" "services web and api both claim port $P_WEB"
mkcfg "$T/bad4.ini" "check = /x y#z"
check_contains "--check-config: bad check path" "$(check_config "$T/bad4.ini")" "is not a path"
sed 's/^manage = true$/manage = false/' "$INI" > "$T/bad5.ini"
check_contains "--check-config: drive mode needs admin_socket" \
    "$(check_config "$T/bad5.ini")" "admin_socket is required"

# ---------------------------------------------------------------------------------------------
# start

# The reload's state dump and the read of every server's state after an adoption ask `show servers
# state` per chunk of services: this run lowers cli.c's answer limit (8 MiB, past which an answer
# fails) to 4 KB, below the whole answer of the test's services of 32 slots (checked before the
# reload), as a fleet of ~110,000 slots or long service names exceeds 8 MiB; one request for every
# server would fail and the new worker lose every server's state (the weight and DOWN checks below).
export REGENT_HX_ANSWER_MAX=4096
daemon_start regent "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
web_ok() { http_get "http://127.0.0.1:$P_WEB/" >/dev/null; }
check "web answers through haproxy" wait_for --timeout 20 web_ok

master_cmd() { haproxy_master_cmd --sock "$MASTER" "$1"; }
reloads() { master_cmd "show proc" | awk '$2 == "master" { print $3 }'; }
worker() { master_cmd "show proc" | awk '/^# workers/ { w = 1; next } /^#/ { w = 0 } w && $2 == "worker" { print $1; exit }'; }
# slot NAME of the server at backend B's address in proxy PX
slot_of() { "${TOOL[@]}" servers "$ADMIN" "$1" | awk -v a="127.0.0.1:${BP[$2]}" '$2 == a && $4 == 0 { print $1 }'; }
# No pipeline running: no candidate file, and no skip-path pipeline (it writes config_file itself,
# no .new file) logged as started without its end line.
skip_running() {
    awk '/no separate haproxy -c/ { s = 1 } /pipeline (reloaded|ended) after/ { s = 0 } END { exit !s }' "$LOG"
}
settled() { ! grep -q . <(find "$HX" -name '*.new') && ! skip_running; }

check "haproxy has a worker" wait_for --timeout 10 eval '[[ -n "$(worker)" ]]'
hx_track_master "$MASTER"
# A cold start (#15): the first haproxy -c checks a file with no service, and haproxy starts
# once with every service (no start with an empty file and reload).
check "cold start: haproxy started once with every service" \
    grep -q 'cold start: haproxy starts once with the first configuration with services' "$LOG"
check_eq "cold start: one haproxy started, never reloaded" "1 0" \
    "$(grep -c 'started haproxy (master pid' "$LOG") $(reloads)"

# --- round robin ---------------------------------------------------------------------------------
rr=$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 30)
printf '%s\n' "$rr" | sed 's/^/  | rr: /'
check_eq "round robin: 10 requests each on b1, b2, b3" "b1 10|b2 10|b3 10|errors 0" \
    "$(printf '%s\n' "$rr" | paste -sd'|')"
check_contains "stats listener on 127.0.0.1:$P_STATS" \
    "$(http_get "http://127.0.0.1:$P_STATS/;csv" | cut -d, -f1,2 | sort -u | paste -sd' ')" "web,s1"

# --- fast path: add, remove, move without a reload -------------------------------------------------
R0=$(reloads); W0=$(worker)
INSTANCES+=("$(line web-4 web b5)")
# web has a check: a joining server is ready at once, its health check pending (not forced up).
check_show "add web-4: ready in haproxy within 100 ms, its check pending (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b5]}" ready 100
check_show "add web-4: up once its check passed (rise 2 x 1 s; ms shown)" \
    "${TOOL[@]}" wait-up "$ADMIN" web "127.0.0.1:${BP[b5]}" 5000
# The batch reads its server back for the status page in the same exchange (runtime.c), not in
# an exchange of the page's own 300 ms later.
check "add web-4: read back for the page in its batch's own exchange" \
    grep -q 'runtime: set server web/s[0-9]* addr .*;show stat web 4 [0-9]*$' "$LOG"
rr=$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 40)
check_contains "add web-4: requests reach it" "$(printf '%s\n' "$rr" | paste -sd' ')" "b5 10"

polls() { grep -c 'sink haproxy: drain poll: ' "$LOG"; }
p0=$(polls)
INSTANCES=("${INSTANCES[@]/$(line web-1 web b1)}")
check_show "remove web-1: out of rotation within 100 ms (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b1]}" down 100
rr=$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 30)
check "remove web-1: no request reaches b1" eval "! grep -q '^b1 ' <<<'$rr'"
check_contains "remove web-1: the others share the load" "$(printf '%s\n' "$rr" | paste -sd' ')" \
    "b2 10 b3 10 b5 10 errors 0"
check "remove web-1: drained, then in maintenance" \
    "${TOOL[@]}" wait-down "$ADMIN" web "127.0.0.1:${BP[b1]}" 3000
# With no session left, its drain check rode on its drain's exchange (`set server ... state
# drain;show stat web 4 N`): maintenance came with the next batch, no drain poll of its own.
check "remove web-1: its drain checked in its drain's own exchange" \
    grep -q 'runtime: set server web/s[0-9]* state drain;show stat web 4 [0-9]*$' "$LOG"
check_eq "remove web-1: no drain poll for it" "$p0" "$(polls)"

MOVE_SLOT=$(slot_of web b3)
INSTANCES=("${INSTANCES[@]/$(line web-3 web b3)/$(line web-3 web b8)}")
check_show "move web-3 to another port: applied within 100 ms (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b8]}" up 100
check_eq "move web-3: same server slot" "$MOVE_SLOT" "$(slot_of web b8)"
rr=$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 30)
check_contains "move web-3: requests follow it" "$(printf '%s\n' "$rr" | paste -sd' ')" "b8 10"
check_eq "fast path: no reload (master reload count)" "$R0" "$(reloads)"
check_eq "fast path: same worker" "$W0" "$(worker)"
check "fast path: mirrored into the file (web-4 on b5, web-3 on b8, no web-1)" eval \
    "grep -q '127.0.0.1:${BP[b5]} .*# web-4\$' '$CFG' && grep -q '127.0.0.1:${BP[b8]} .*# web-3\$' '$CFG' && ! grep -q 'web-1' '$CFG'"

# --- the fast path's persistent admin-socket connection (prompt mode) ------------------------------
# A burst of changes, one file write every 100 ms (debounce 5 ms: a runtime batch each), goes over
# at most one new connection (regent logs each one it opens; an open one lives 5 s idle).
opened() { grep -c 'admin socket .*: connection [0-9]* opened (prompt mode)' "$LOG"; }
batches() { grep -c 'sink haproxy: runtime: set server' "$LOG"; }
o0=$(opened); b0=$(batches)
tline() { echo "$1 tcpsvc 127.0.0.$2 ${BP[b4]}"; } # ID LAST-OCTET: never reachable, never picked twice
for i in 2 3 4; do
    INSTANCES+=("$(tline tcp-$i "$i")"); render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"; sleep 0.1
done
for i in 2 3 4; do
    INSTANCES=("${INSTANCES[@]/$(tline tcp-$i "$i")}"); render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"; sleep 0.1
done
check "persistent connection: the last leave of a burst is out of rotation" \
    "${TOOL[@]}" wait-down "$ADMIN" tcpsvc "127.0.0.4:${BP[b4]}" 5000
echo "  | persistent connection: $(( $(batches) - b0 )) runtime batches, $(( $(opened) - o0 )) connections opened ($(opened) in all)"
check "persistent connection: the burst made at least 3 runtime batches" test $(( $(batches) - b0 )) -ge 3
check "persistent connection: at most one opened for all of them" test $(( $(opened) - o0 )) -le 1
check "persistent connection: the fast path runs on one (one opened so far)" test "$(opened)" -ge 1

# --- drain: a request in flight on a leaving instance completes ------------------------------------
# The request is held by its backend until the test opens a gate file, so the drain window is the
# test's to close, not a 1.5 s sleep racing a loaded machine (drain_timeout is 45 s, the hold at
# most 50 s). Which instance got it is read from haproxy (balance first sends it to s1 unless a
# health check has just marked s1 down), and that instance is the one that leaves.
GATE=$T/drain.gate
"${TOOL[@]}" get "http://127.0.0.1:$P_SLOW/hold?$GATE" 60 > "$T/slow1.out" & g1=$!
held_slot() { haproxy_admin_cmd "$ADMIN" "show stat slowsvc 4 -1" | awk -F, '$2 ~ /^s[0-9]+$/ && $5 >= 1 { print $2; exit }'; }
check "drain: a held request is in flight on a slowsvc server" wait_for --timeout 30 eval '[[ -n "$(held_slot)" ]]'
HSLOT=$(held_slot)
HADDR=$("${TOOL[@]}" servers "$ADMIN" slowsvc | awk -v s="$HSLOT" '$1 == s { print $2 }')
if [[ $HADDR == "127.0.0.1:${BP[b7]}" ]]; then LEAVE=b7 LEAVE_ID=slow-2 STAY=b6; else LEAVE=b6 LEAVE_ID=slow-1 STAY=b7; fi
echo "  | the held request is on slowsvc/$HSLOT ($HADDR): $LEAVE_ID leaves"
check "drain: the held request is on slow-1 or slow-2" \
    eval '[[ $HADDR == "127.0.0.1:${BP[b6]}" || $HADDR == "127.0.0.1:${BP[b7]}" ]]'
INSTANCES=("${INSTANCES[@]/$(line "$LEAVE_ID" slowsvc "$LEAVE")}")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
leave_state() { "${TOOL[@]}" servers "$ADMIN" slowsvc | awk -v a="127.0.0.1:${BP[$LEAVE]}" '$2 == a { print $4 }'; }
# out of rotation (admin state no longer 0), then it must be drain (8), not maintenance (1)
check "drain: the leaving instance leaves rotation" \
    wait_for --timeout 30 eval '[[ -n "$(leave_state)" && "$(leave_state)" != 0 ]]'
check_eq "drain: the leaving instance is draining (admin state 8) while its request is held" \
    "8" "$(leave_state)"
check_eq "drain: new requests go to the remaining instance" "200 $STAY" \
    "$("${TOOL[@]}" get "http://127.0.0.1:$P_SLOW/")"
check_eq "drain: still draining, not in maintenance, while the request is held" "8" "$(leave_state)"
check "drain: the held request is still in flight" kill -0 "$g1"
touch "$GATE"
wait $g1
check_eq "drain: the request in flight on the leaving instance completed" "200 $LEAVE" "$(cat "$T/slow1.out")"
check "drain: then in maintenance" "${TOOL[@]}" wait-down "$ADMIN" slowsvc "127.0.0.1:${BP[$LEAVE]}" 10000

# --- slow path: a new service comes through a reload ------------------------------------------------
KEEP_SLOT=$(slot_of web b2)
haproxy_admin_cmd "$ADMIN" "set server web/$KEEP_SLOT weight 7" >/dev/null
# web-9's address has nothing listening: its checks fail, haproxy has it DOWN; the new worker must
# start it DOWN from the state file (else up, routed, until its checks fail again).
P_DEAD=$(free_port)
INSTANCES+=("web-9 web 127.0.0.1 $P_DEAD")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
dead_slot() { "${TOOL[@]}" servers "$ADMIN" web | awk -v a="127.0.0.1:$P_DEAD" '$2 == a && $4 == 0 { print $1 }'; }
check "reload: web-9 (nothing listening) joins web" wait_for --timeout 10 eval '[[ -n "$(dead_slot)" ]]'
DEAD_SLOT=$(dead_slot)
dead_op() { haproxy_admin_cmd "$ADMIN" "show servers state web" | awk -v s="$DEAD_SLOT" '$4 == s { print $6 }'; }
check "reload: web-9 is DOWN before the reload" wait_for --timeout 10 eval '[[ "$(dead_op)" == 0 ]]'
full=$(haproxy_admin_cmd "$ADMIN" "show servers state" | wc -c)
check "reload: the whole server-state answer ($full bytes) exceeds the answer limit ($REGENT_HX_ANSWER_MAX)" \
    test "$full" -gt "$REGENT_HX_ANSWER_MAX"
HLOG=$T/state/haproxy.cfg.log
HL0=$(wc -l < "$HLOG" 2>/dev/null || echo 0)
# The request is held by its backend until the test opens a gate after the reload (as in the
# drain case above): a fixed 1.5 s request raced the poll below on a loaded machine (python's
# start alone can take most of it), failing "in flight" now and then, and could end before the
# reload began, proving nothing about the reload.
GATE3=$T/reload.gate
"${TOOL[@]}" get "http://127.0.0.1:$P_SLOW/hold?$GATE3" 60 > "$T/slow3.out" & g3=$!
check "reload: a held request is in flight" \
    wait_for --timeout 30 eval "[[ \"\$(haproxy_admin_cmd '$ADMIN' 'show stat slowsvc 4 -1' | awk -F, '\$5 == 1')\" ]]"
# The persistent connection follows the new worker: a change just before the reload opens it (or
# uses the open one), the reload leaves it to the old worker, and a change after the reload reaches
# the new one.
check_show "reload: tcp-9 joins just before the reload (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances; tline tcp-9 9)" "$ADMIN" tcpsvc "127.0.0.9:${BP[b4]}" ready 2000
INSTANCES+=("$(tline tcp-9 9)")
R0=$(reloads); W0=$(worker); L0=$(wc -l < "$LOG")
INSTANCES+=("$(line api-1 api b9)")
t0=$(date +%s%N)
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
api_ok() { [[ "$(http_get "http://127.0.0.1:$P_API/")" == b9 ]]; }
check "new service api: answers through haproxy" wait_for --timeout 10 api_ok
echo "  | new service serving after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
check_eq "new service: exactly one reload" "$((R0 + 1))" "$(reloads)"
check "new service: a new worker" test "$W0" != "$(worker)"
check_eq "reload: web-2 keeps its server name" "$KEEP_SLOT" "$(slot_of web b2)"
check_eq "reload: server state survives (weight 7 from the state file)" "7" \
    "$(haproxy_admin_cmd "$ADMIN" "show servers state web" | awk -v s="$KEEP_SLOT" '$4 == s { print $8 }')"
haproxy_admin_cmd "$ADMIN" "set server web/$KEEP_SLOT weight 1" >/dev/null
check "reload: the state was dumped in chunks of services" \
    eval "tail -n +$((L0 + 1)) '$LOG' | grep -Eq 'server state dumped in ([2-9]|[1-9][0-9]+) request' && ! tail -n +$((L0 + 1)) '$LOG' | grep -q 'cannot dump the server state'"
check "reload: web-9 starts DOWN in the new worker, from the state file" \
    eval "tail -n +$((HL0 + 1)) '$HLOG' | grep -q 'web/$DEAD_SLOT is DOWN, changed from server-state'"
INSTANCES=("${INSTANCES[@]/web-9 web 127.0.0.1 $P_DEAD}")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
check "reload: the admin-socket connection was left to the old worker" \
    grep -q 'connection [0-9]* left to the worker it reached' <(tail -n "+$((L0 + 1))" "$LOG")
INSTANCES=("${INSTANCES[@]/$(tline tcp-9 9)}")
check_show "reload: tcp-9 leaves after the reload, seen by the new worker (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" tcpsvc "127.0.0.9:${BP[b4]}" down 3000
check "reload: that change went over a new connection" \
    grep -q 'connection [0-9]* opened (prompt mode)' <(tail -n "+$((L0 + 1))" "$LOG" | sed -n '/haproxy reloaded (worker/,$p')
check_eq "reload: web keeps serving all instances" "b2 10|b5 10|b8 10|errors 0" \
    "$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 30 | paste -sd'|')"
check "the state file was written" test -s "$HX/haproxy.state"
check "reload: the held request is still in flight after the reload" kill -0 "$g3"
touch "$GATE3"
wait $g3
check_eq "reload: the request held across the reload completed" "200 $STAY" "$(cat "$T/slow3.out")"

# --- reloads are rate-limited: a burst of new services coalesces ----------------------------------
# reload_interval is 3 s: a pipeline starts at most once per 3 s of regent's own clock. burst1 comes
# through a reload; once that is done, burst2 and burst3 are written at once. Rate-limited, their
# reload starts 3 s after burst1's; without the limit it would start as soon as regent sees them
# (burst1's reload time + the test's reaction, shown). Each reload's start is read from regent's
# log (the line's time less its "N ms after the change"), so a slow writer cannot excuse a short
# gap; 500 ms of the 3 s is left for the log line's own delay on a loaded machine.
check "burst: no pipeline running before it" wait_for --timeout 5 settled
R0=$(reloads); nl0=$(wc -l < "$LOG")
haproxy_admin_cmd "$ADMIN" "set server web/$KEEP_SLOT weight 5" >/dev/null
INSTANCES+=("$(line burst-1 burst1 b9)")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
check "burst: burst1 comes through a reload" wait_for --timeout 20 eval '[[ $(reloads) -gt $R0 ]]'
for i in 2 3; do
    INSTANCES+=("$(line burst-$i burst$i b9)")
    render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
done
burst_ok() { for p in $P_B1 $P_B2 $P_B3; do [[ "$(http_get "http://127.0.0.1:$p/")" == b9 ]] || return 1; done; }
check "burst: the three new services are served" wait_for --timeout 30 burst_ok
n=$(( $(reloads) - R0 ))
reload_lines() { tail -n "+$((nl0 + 1))" "$LOG" | grep 'sink haproxy: haproxy reloaded (worker'; }
check "burst: every reload logged" wait_for --timeout 10 eval '[[ $(reload_lines | wc -l) -ge $n ]]'
# "START TOOK" per reload (ms of the day on regent's clock), then the smallest gap between starts
starts=$(reload_lines | awk '{ split(substr($1, 12), t, ":"); ms = (t[1] * 3600 + t[2] * 60 + t[3]) * 1000
    for (i = 2; i < NF; i++) if ($(i + 1) == "ms" && $(i + 2) == "after") took = $i
    printf "%d %d\n", ms - took, took }')
printf '%s\n' "$starts" | sed 's/^/  | reload started at ms, took ms: /'
gap=$(printf '%s\n' "$starts" | awk 'NR > 1 { g = $1 - prev; if (min == "" || g < min) min = g } { prev = $1 } END { print min }')
echo "  | 3 new services: $n reloads, smallest gap between their starts ${gap:-none} ms (reload_interval 3000 ms)"
check "burst: burst2 and burst3 took another reload (at least 2)" test "$n" -ge 2
check "burst: reloads started at least 2500 ms apart on regent's clock (reload_interval 3 s)" \
    test "${gap:-0}" -ge 2500
# The burst's sections are like api's (accepted): no separate haproxy -c, the file written straight
# over config_file while the old worker's state is dumped and written beside it; the state set at
# runtime before burst1 still reaches each new worker.
check "burst: the reloads skipped haproxy -c" \
    eval "tail -n +$((nl0 + 1)) '$LOG' | grep -q 'every service section is one haproxy accepted'"
check "burst: no pipeline running after it" wait_for --timeout 10 settled
check_eq "burst: server state survives the skip path's reloads (weight 5 from the state file)" "5" \
    "$(haproxy_admin_cmd "$ADMIN" "show servers state web" | awk -v s="$KEEP_SLOT" '$4 == s { print $8 }')"
haproxy_admin_cmd "$ADMIN" "set server web/$KEEP_SLOT weight 1" >/dev/null

# --- a configuration haproxy rejects is never installed -------------------------------------------
check "bad setting: no pipeline running before it" wait_for --timeout 5 settled
sum0=$(sha256sum < "$CFG"); R0=$(reloads); W0=$(worker)
nrej=$(grep -c 'haproxy rejected the new configuration' "$LOG")
mkcfg "$INI" "server_options = ssl"   # passes regent's allow-list; haproxy wants a CA file
check "bad setting: regent's own check accepts it" check_config "$INI"
daemon_kill regent HUP
check "bad setting: haproxy -c rejected it (logged)" \
    wait_for --timeout 10 eval "[[ \$(grep -c 'haproxy rejected the new configuration' '$LOG') -gt $nrej ]]"
check_contains "bad setting: haproxy's own message is logged" "$(tail -n 30 "$LOG")" "CA file"
check_eq "bad setting: the file is unchanged" "$sum0" "$(sha256sum < "$CFG")"
check "bad setting: no candidate left behind" settled
check_eq "bad setting: no reload" "$R0" "$(reloads)"
tcp_ok() { [[ "$("${TOOL[@]}" get "http://127.0.0.1:$P_TCP/")" == "200 b4" ]]; }
check "bad setting: the running tcpsvc keeps serving" tcp_ok
INSTANCES+=("$(line web-5 web b1)")
check_show "bad setting: the fast path still works (web-5 added, ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" web "127.0.0.1:${BP[b1]}" ready 1000
check "bad setting: web-5 mirrored into the file" wait_for --timeout 5 grep -q '# web-5$' "$CFG"
check_eq "bad setting: still no reload" "$R0" "$(reloads)"
mkcfg "$INI"
daemon_kill regent HUP
sleep 3.5   # longer than reload_interval: a reload, if one were made, would be done by then
check_eq "bad setting reverted: nothing to reload" "$R0" "$(reloads)"

# --- injection attempts never reach the file ----------------------------------------------------
INSTANCES+=(
    "evil-1 web;listen 127.0.0.1 ${BP[b1]}"
    "evil-2 web 127.0.0.1#server ${BP[b1]}"
    "evil-3 web evil-host.example ${BP[b1]}"
    "evil-4 web 127.0.0.1 ${BP[b7]} tag#x,bind,{server},\${HOME}"
    "evil-5 w\$eb 127.0.0.1 ${BP[b1]}"
    "evil-6 web 0.0.0.0 ${BP[b1]}"
    "ev#il-7 web 127.0.0.1 ${BP[b1]}"
)
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
check "injection: evil-4 (valid address, hostile tags) is routed" \
    wait_for --timeout 5 grep -q '# evil-4$' "$CFG"
# the haproxy sink's own warning (the core's "local up" line names the address too)
check "injection: skipped with a warning naming the value" \
    grep -qE 'warn: sink haproxy: service web: instance [^ ]*evil-3 skipped: address "evil-host\.example"' "$LOG"
for bad in 'web;listen' '127.0.0.1#server' 'evil-host' 'tag#x' '{server}' 'HOME' 'w$eb' '0.0.0.0:'"${BP[b1]}" 'ev#il'; do
    check "injection: \"$bad\" is not in the file" eval "! grep -qF -- '$bad' '$CFG'"
done
check "injection: the file is still valid for haproxy" haproxy -c -q -f "$CFG"
check "injection: evil-4's line is a plain server line" \
    grep -qE "^    server s([0-9]+) 127\.0\.0\.1:${BP[b7]} id \\1 +# evil-4\$" "$CFG"
# The options web's servers share, once (its default-server line, before its servers); no server
# line repeats them.
web_defaults_once() {
    awk '/^listen web$/ { w = 1; next } /^listen / { w = 0 }
         w && /^    default-server/ { n++; l = $0 }
         w && /^    server / && (/ check/ || !n) { bad++ }
         END { exit !(n == 1 && !bad && l == "    default-server check inter 1s") }' "$CFG"
}
check "web's shared server options: once, its default-server line" web_defaults_once
grep -E 'evil|tag' "$CFG" | sed 's/^/  | file: /'

# --- an error answer on the persistent connection is reported as before ---------------------------
# haproxy loses tcpsvc's free slots behind regent's back (`del server`): the join that follows is
# refused ("No such server."), logged with haproxy's words, counted, and a reload repairs it.
free_slots=$("${TOOL[@]}" servers "$ADMIN" tcpsvc | awk '$4 != 0 { print $1 }')
dels=""; for sv in $free_slots; do dels+="${dels:+;}set server tcpsvc/$sv state maint;del server tcpsvc/$sv"; done
haproxy_admin_cmd "$ADMIN" "$dels" >/dev/null
check "error: tcpsvc's free slots are gone from haproxy" \
    test "$("${TOOL[@]}" servers "$ADMIN" tcpsvc | awk '$4 != 0' | wc -l)" -eq 0
nerr=$(grep -c 'haproxy refused a runtime change: No such server' "$LOG")
INSTANCES+=("$(tline tcp-8 8)")
render_instances > "$INST.tmp" && mv "$INST.tmp" "$INST"
check "error: the refused change is logged with haproxy's answer" wait_for --timeout 10 \
    eval "[[ \$(grep -c 'haproxy refused a runtime change: No such server' '$LOG') -gt $nerr ]]"
check "error: a reload brings tcp-8 in" "${TOOL[@]}" wait-ready "$ADMIN" tcpsvc "127.0.0.8:${BP[b4]}" 20000
INSTANCES=("${INSTANCES[@]/$(tline tcp-8 8)}")
check_show "error: the fast path works again (tcp-8 leaves, ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" tcpsvc "127.0.0.8:${BP[b4]}" down 3000

# --- metrics (with the stats sink) --------------------------------------------------------------
metric() { http_get "http://127.0.0.1:$P_METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 { print $2 }'; }
if [[ $HAVE_STATS == 1 ]]; then
    check "metrics: runtime updates counted" test "$(metric 'regent_haproxy_runtime_updates_total{plugin="haproxy"}' | cut -d. -f1)" -ge 4
    check "metrics: reloads counted" test "$(metric 'regent_haproxy_reloads_total{plugin="haproxy"}' | cut -d. -f1)" -ge 1
    check "metrics: the refused runtime batch counted" test "$(metric 'regent_haproxy_runtime_errors_total{plugin="haproxy"}' | cut -d. -f1)" -ge 1
    check_eq "metrics: admin-socket connections counted as logged" "$(opened)" \
        "$(metric 'regent_haproxy_admin_connections_total{plugin="haproxy"}' | cut -d. -f1)"
    check "metrics: the rejected configuration counted" test "$(metric 'regent_haproxy_config_rejected_total{plugin="haproxy"}' | cut -d. -f1)" -ge 1
    check "metrics: propagation latency recorded for the sink" \
        test "$(metric 'regent_propagation_seconds_count{plugin="haproxy"}' | cut -d. -f1)" -ge 5
    # the background state poll's CPU (every server_state_interval, 5 s here) is counted: it grows
    POLLM='regent_haproxy_state_poll_cpu_seconds_total{plugin="haproxy"}'
    poll_cpu_grew() { awk -v a="$1" -v b="$(metric "$POLLM")" 'BEGIN { exit !(b != "" && b + 0 > a + 0) }'; }
    PC0=$(metric "$POLLM")
    check "metrics: the state poll's CPU is counted (${PC0:-none} s so far)" test -n "$PC0"
    check "metrics: ... and grows while the poll runs" wait_for --timeout 15 poll_cpu_grew "${PC0:-0}"
    http_get "http://127.0.0.1:$P_METRICS/metrics" | grep -E '^regent_haproxy|^regent_propagation_seconds_(sum|count)\{plugin="haproxy"' | sed 's/^/  | /'
else
    harness_skip "metrics checks: the stats sink is not built here"
fi

# --- the managed haproxy is restarted after a crash ---------------------------------------------
MPID=$(master_cmd "show proc" | awk '$2 == "master" { print $1 }')
kill -KILL "$MPID" "$(worker)" 2>/dev/null
check "crash: regent notices and restarts haproxy" \
    wait_for --timeout 15 eval "grep -q 'haproxy (pid $MPID) was killed by signal 9' '$LOG'"
check "crash: web answers again" wait_for --timeout 15 web_ok
hx_track_master "$MASTER"
check "crash: a new master" test "$(master_cmd "show proc" | awk '$2 == "master" { print $1 }')" != "$MPID"
check_eq "crash: all instances back" "b1 8|b2 8|b5 8|b7 8|b8 8|errors 0" \
    "$("${TOOL[@]}" rr "http://127.0.0.1:$P_WEB/" 40 | paste -sd'|')"
L0=$(grep -n "haproxy (pid $MPID) was killed by signal 9" "$LOG" | tail -n 1 | cut -d: -f1)
INSTANCES+=("$(tline tcp-7 7)")
check_show "crash: a change after the restart reaches the new haproxy (tcp-7 joins, ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" tcpsvc "127.0.0.7:${BP[b4]}" ready 3000
check "crash: over a connection opened after it" \
    grep -q 'connection [0-9]* opened (prompt mode)' <(tail -n "+$((L0 + 1))" "$LOG")
INSTANCES=("${INSTANCES[@]/$(tline tcp-7 7)}")
check_show "crash: tcp-7 leaves (ms shown)" \
    "${TOOL[@]}" write-wait "$INST" "$(render_instances)" "$ADMIN" tcpsvc "127.0.0.7:${BP[b4]}" down 3000

# --- regent killed with SIGKILL: the next start adopts the haproxy it left ----------------------
OLD_M=$(master_cmd "show proc" | awk '$2 == "master" { print $1 }')
OLD_M_START=$(h__starttime "$OLD_M")
# SIGKILL to regent alone (daemon_kill KILL would take its process group, haproxy included)
daemon_alive regent && kill -KILL "$(daemon_pid regent)"
check "regent SIGKILLed: it is gone" wait_for --timeout 10 eval '! daemon_alive regent'
check "regent SIGKILLed: its haproxy is left running and serving" web_ok
L0=$(wc -l < "$LOG")
# restarted with a state poll of once an hour: its counter does not grow after the first poll;
# and with a binary (the same, through a link) and an include the running haproxy was not
# started with: its own reloads re-execute its own command line and would never apply them, so
# regent names the difference and replaces the master, make before break (a new master on the
# copies of the listening sockets, then SIGUSR1 to the old one; drills/haproxy_lifecycle.sh f
# counts the requests across it).
printf '# an include added while haproxy runs\n' > "$T/extra.cfg"
ln -s "$(command -v haproxy)" "$T/hxbin"
sed 's/^\[sink haproxy\]$/[sink haproxy]\nserver_state_interval = 1h\ninclude = '"${T//\//\\/}"'\/extra.cfg\nhaproxy = '"${T//\//\\/}"'\/hxbin/' \
    "$INI" > "$T/slowpoll.ini"
daemon_start regent "$REGENT_BIN" -c "$T/slowpoll.ini" -p "$REGENT_PLUGIN_DIR"
check "restart: the haproxy left by the killed regent is adopted" \
    wait_for --timeout 15 grep -q "adopted the running haproxy (master pid $OLD_M" "$LOG"
check "restart: the include the running haproxy lacks is named" \
    grep -qF "the running haproxy (master pid $OLD_M) was started with another command line (binary haproxy, not $T/hxbin; includes none, not $T/extra.cfg)" "$LOG"
check "restart: the stale master is replaced (make before break)" \
    wait_for --timeout 20 grep -q "replaced haproxy (master pid $OLD_M) with master" "$LOG"
NEW_M=$(grep -o "replaced haproxy (master pid $OLD_M) with master [0-9]*" "$LOG" | awk '{ print $NF }' | tail -n 1)
hx_track_master "$MASTER"
new_master_answers() { [[ -n "$NEW_M" && "$(master_cmd "show proc" | awk '$2 == "master" { print $1 }')" == "$NEW_M" ]]; }
check "restart: the master socket answers from the new master (${NEW_M:-none})" wait_for --timeout 10 new_master_answers
check "restart: the new master runs the link and the include" \
    eval "tr '\\0' ' ' < /proc/$NEW_M/cmdline | grep -q '^$T/hxbin .*-f $T/extra.cfg '"
check "restart: the old master exits" wait_for --timeout 15 eval "! kill -0 $OLD_M 2>/dev/null"
if [[ $HAVE_STATS == 1 ]]; then
    check "restart: /healthz notes no other command line any more" \
        eval "! http_get 'http://127.0.0.1:$P_METRICS/healthz' | grep -q 'another command line'"
fi
check "restart: web answers" wait_for --timeout 20 web_ok
check "restart: the sink proved itself (ready)" wait_for --timeout 15 grep -q "haproxy: ready" "$LOG"
# the adopted haproxy's server states are read once; nothing changed, so nothing is sent
check "restart: the adopted haproxy's server states are read" \
    wait_for --timeout 10 eval "tail -n +$((L0 + 1)) '$LOG' | grep -Eq 'server states from haproxy in ([2-9]|[1-9][0-9]+) request.s.: only differences are set'"
check_eq "restart: no runtime command re-sends what haproxy has" 0 \
    "$(tail -n +$((L0 + 1)) "$LOG" | grep -c 'runtime: set server')"
if [[ $HAVE_STATS == 1 ]]; then
    check "restart: the first state poll is counted" wait_for --timeout 10 poll_cpu_grew 0
    # The adoption's reload (the include and the interval changed the file) may come after that
    # first poll, and a new worker is read again: the counter is taken once it held for 2 s.
    poll_cpu_settled() { local a; a=$(metric "$POLLM"); sleep 2; [[ -n "$a" && "$a" == "$(metric "$POLLM")" ]]; }
    check "restart: the state poll's counter settles after the adoption" wait_for --timeout 15 poll_cpu_settled
    PC1=$(metric "$POLLM")
    sleep 6   # longer than the default 5 s interval
    check_eq "restart: server_state_interval = 1h: the state poll's CPU stays at ${PC1:-?} s" \
        "$PC1" "$(metric "$POLLM")"
fi

# --- stop: haproxy outlives regent (keep_running defaults to true) --------------------------------
MPID=$(master_cmd "show proc" | awk '$2 == "master" { print $1 }')
daemon_stop regent
check "stop: regent exited" eval '! daemon_alive regent'
check "stop: the managed haproxy keeps running" kill -0 "$MPID"
check "stop: web still served" web_ok
check "stop: regent said it left haproxy running" grep -q "leaving haproxy (master pid $MPID) running" "$LOG"
check "stop: regent logged no error" eval "! grep -E ' error: ' '$LOG' | grep -v -e 'rejected' -e 'CA file' -e 'ALERT' -e 'killed by signal' -e 'Fatal errors'"
grep -E ' error: ' "$LOG" | grep -v -e 'rejected' -e 'CA file' -e 'ALERT' -e 'killed by signal' -e 'Fatal errors' | head -5 | sed 's/^/  | /' >&2

harness_summary
