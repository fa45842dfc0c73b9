#!/usr/bin/env bash
# join_test.sh - no traffic before ready (issue 16.2), real haproxy managed by regent: in a
# service with a `check` (one in mode http, one in mode tcp), an instance whose backend starts
# listening only ~3.5 s after it joins is never up in haproxy and never picked (lbtot 0) before
# it listens (>= 3 s after it joined) - across a reload in that window too (the new worker gets it pending from the
# server-state file) - while a client load through haproxy sees 0 failed requests (a healthy
# server exists); once it passed its checks it takes requests, and a second reload keeps every
# proven server up (0 failed requests).
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
command -v haproxy >/dev/null || { harness_skip "haproxy is not installed"; harness_summary; exit 77; }

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
HX=$T/hx
mkdir -p "$HX"
ADMIN=$HX/haproxy-admin.sock
MASTER=$HX/haproxy-master.sock

P_WEB=$(free_port); P_TCP=$(free_port); P_X1=$(free_port); P_X2=$(free_port)
P_A=$(free_port); P_AT=$(free_port); P_B=$(free_port); P_BT=$(free_port)

cat > "$T/regent.ini" <<END
[agent]
node = join
state_dir = $T/state
debounce = 5ms
log_level = debug

$(hx_local_sections "$INST")
reload_interval = 200ms
; 2 s: the first check of a server a new worker starts without its state comes late enough
; (haproxy spreads the first checks over the interval) for the samples to see it up
check_interval = 2s

[service web]
port = $P_WEB
mode = http
check = /
server_options = rise 1

[service webt]
port = $P_TCP
mode = tcp
check = /
server_options = rise 1

[service extra1]
port = $P_X1
mode = http

[service extra2]
port = $P_X2
mode = http
END

daemon_start a "${TOOL[@]}" backend "$P_A" a
daemon_start at "${TOOL[@]}" backend "$P_AT" at
for p in "$P_A" "$P_AT"; do
    wait_for --timeout 20 http_get "http://127.0.0.1:$p/" >/dev/null || { echo "backend $p did not start" >&2; exit 1; }
done
BASE="web-a web 127.0.0.1 $P_A
webt-a webt 127.0.0.1 $P_AT"
printf '%s\n' "$BASE" > "$INST"

daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
reloads() { haproxy_master_cmd --sock "$MASTER" "show proc" | awk '$2 == "master" { print $3 }'; }
wait_for --timeout 20 eval '[[ -n "$(reloads)" ]]' >/dev/null || { echo "haproxy did not start" >&2; exit 1; }
hx_track_master "$MASTER"
check "web is up through haproxy (server a up)" \
    wait_for --timeout 20 "${TOOL[@]}" wait-up "$ADMIN" web "127.0.0.1:$P_A" 100
check "webt is up through haproxy (server at up)" \
    wait_for --timeout 20 "${TOOL[@]}" wait-up "$ADMIN" webt "127.0.0.1:$P_AT" 100
check "web answers" http_get "http://127.0.0.1:$P_WEB/"
check "webt answers" http_get "http://127.0.0.1:$P_TCP/"

# The load and the 50 ms samples of haproxy's servers cover both phases (until samples.stop).
daemon_start watch "${TOOL[@]}" watch "$ADMIN" 120 "$T/samples" \
    "http://127.0.0.1:$P_WEB/" "http://127.0.0.1:$P_TCP/"
sleep 0.5

# Phase 1: b and bt join now but listen only once the test opens their gate, at least 3 s later
# and after a reload (extra1) made while their checks were pending.
daemon_start b "${TOOL[@]}" late-backend "$P_B" b "$T/gate" "$T/b.listen"
daemon_start bt "${TOOL[@]}" late-backend "$P_BT" bt "$T/gate" "$T/bt.listen"
W0=$("${TOOL[@]}" pid "$ADMIN")
T_JOIN=$(date +%s.%N)
printf '%s\nweb-b web 127.0.0.1 %s\nwebt-b webt 127.0.0.1 %s\n' "$BASE" "$P_B" "$P_BT" > "$INST.tmp"
mv "$INST.tmp" "$INST"
check "b joined haproxy (ready, check pending)" \
    wait_for --timeout 10 "${TOOL[@]}" wait-ready "$ADMIN" web "127.0.0.1:$P_B" 100
check "bt joined haproxy (ready, check pending)" \
    wait_for --timeout 10 "${TOOL[@]}" wait-ready "$ADMIN" webt "127.0.0.1:$P_BT" 100
sleep 0.5   # the old worker's checks fail for a while
printf '%s\nweb-b web 127.0.0.1 %s\nwebt-b webt 127.0.0.1 %s\nx1 extra1 127.0.0.1 %s\n' \
    "$BASE" "$P_B" "$P_BT" "$P_A" > "$INST.tmp"
mv "$INST.tmp" "$INST"
new_worker() { local w; w=$("${TOOL[@]}" pid "$ADMIN") && [[ -n "$w" && "$w" != "$W0" ]]; }
check "reload 1 (extra1 added): a new worker answers" wait_for --timeout 20 new_worker
T_R1=$(date +%s.%N)
check "extra1 answers" wait_for --timeout 10 http_get "http://127.0.0.1:$P_X1/"
sleep 1     # the new worker's checks fail for a while too
while awk -v j="$T_JOIN" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - j < 3) }'; do sleep 0.1; done
touch "$T/gate"
check "b listens" wait_for --timeout 20 test -s "$T/b.listen"
check "bt listens" wait_for --timeout 20 test -s "$T/bt.listen"
TB=$(cat "$T/b.listen" 2>/dev/null || echo 0); TBT=$(cat "$T/bt.listen" 2>/dev/null || echo 0)
echo "  | joined at $T_JOIN, reload 1 served at $T_R1, b listening at $TB, bt at $TBT"
check "b and bt listened >= 3 s after they joined" \
    awk -v j="$T_JOIN" -v b="$TB" -v t="$TBT" 'BEGIN { exit !(b - j >= 3 && t - j >= 3) }'
check "b is up once it listens (rise 1 x 2 s)" \
    wait_for --timeout 10 "${TOOL[@]}" wait-up "$ADMIN" web "127.0.0.1:$P_B" 100
check "bt is up once it listens" \
    wait_for --timeout 10 "${TOOL[@]}" wait-up "$ADMIN" webt "127.0.0.1:$P_BT" 100

# Phase 2: every server is proven; a reload (extra2) must keep them up.
T_UP=$(date +%s.%N)
W1=$("${TOOL[@]}" pid "$ADMIN")
printf '%s\nweb-b web 127.0.0.1 %s\nwebt-b webt 127.0.0.1 %s\nx1 extra1 127.0.0.1 %s\nx2 extra2 127.0.0.1 %s\n' \
    "$BASE" "$P_B" "$P_BT" "$P_A" "$P_A" > "$INST.tmp"
mv "$INST.tmp" "$INST"
W0=$W1
check "reload 2 (extra2 added): a new worker answers" wait_for --timeout 20 new_worker
T_R2=$(date +%s.%N)
check "extra2 answers" wait_for --timeout 10 http_get "http://127.0.0.1:$P_X2/"
sleep 1   # the new worker sampled for a while
touch "$T/samples.stop"
check "the load ended" wait_for --timeout 30 eval '! daemon_alive watch'
WOUT=$(daemon_log watch)
sed -n 's/^/  | /p' "$WOUT" | grep -E '(load|body) '

S=$T/samples
# sample lines: TIME PID PROXY SERVER ADDR:PORT LBTOT STATUS...
before() { # PROXY ADDR:PORT T: the samples of that server before T
    awk -v px="$1" -v a="$2" -v t="$3" '$3 == px && $5 == a && $1 < t' "$S"
}
for s in "web 127.0.0.1:$P_B $TB" "webt 127.0.0.1:$P_BT $TBT"; do
    read -r px addr tl <<<"$s"
    n=$(before "$px" "$addr" "$tl" | wc -l)
    pids=$(before "$px" "$addr" "$tl" | awk '{ print $2 }' | sort -u | wc -l)
    up=$(before "$px" "$addr" "$tl" | awk '$7 ~ /^UP/' | wc -l)
    picked=$(before "$px" "$addr" "$tl" | awk '$6 != 0' | wc -l)
    echo "  | $px $addr before it listened: $n samples from $pids workers, $up up, $picked with lbtot > 0"
    check "$px: the late server was sampled before it listened (>= 20 samples)" test "$n" -ge 20
    check "$px: ... in the old and the new worker (a reload while it was pending)" test "$pids" -ge 2
    check_eq "$px: the late server was never up before it listened" 0 "$up"
    check_eq "$px: the late server was never picked before it listened (lbtot)" 0 "$picked"
done
for s in "web 127.0.0.1:$P_A" "webt 127.0.0.1:$P_AT"; do
    read -r px addr <<<"$s"
    n=$(awk -v px="$px" -v a="$addr" '$3 == px && $5 == a' "$S" | wc -l)
    down=$(awk -v px="$px" -v a="$addr" '$3 == px && $5 == a && $7 !~ /^UP/' "$S" | wc -l)
    check "$px: the healthy server was sampled (>= 50)" test "$n" -ge 50
    check_eq "$px: the healthy server stayed up through both reloads" 0 "$down"
done
for s in "web 127.0.0.1:$P_B" "webt 127.0.0.1:$P_BT"; do
    read -r px addr <<<"$s"
    after=$(awk -v px="$px" -v a="$addr" -v t="$T_UP" '$3 == px && $5 == a && $1 > t' "$S")
    n=$(grep -c . <<<"$after")
    pids=$(awk '{ print $2 }' <<<"$after" | sort -u | wc -l)
    down=$(awk '$7 !~ /^UP/' <<<"$after" | wc -l)
    echo "  | $px $addr once proven: $n samples from $pids workers, $down not up"
    check "$px: the proven server was sampled across reload 2 (2 workers)" test "$pids" -ge 2
    check_eq "$px: the proven server stayed up through reload 2" 0 "$down"
done
for u in "http://127.0.0.1:$P_WEB/" "http://127.0.0.1:$P_TCP/"; do
    l=$(grep "^load $u " "$WOUT")
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$l"); fail=$(sed -n 's/.* fail=\([0-9]*\).*/\1/p' <<<"$l")
    check "load $u: many requests answered (>= 100)" test "${ok:-0}" -ge 100
    check_eq "load $u: 0 failed requests" 0 "${fail:-missing}"
done
check "web: b answered requests once up" grep -qE "^body http://127.0.0.1:$P_WEB/ b [1-9]" "$WOUT"
check "webt: bt answered requests once up" grep -qE "^body http://127.0.0.1:$P_TCP/ bt [1-9]" "$WOUT"
echo "  | reload 2 done at $T_R2"
check "regent logged no error" eval "! grep -E ' error: ' '$LOG'"

harness_summary
