#!/usr/bin/env bash
# fdlimit_test.sh - more services than the agent's soft open-file limit (systemd starts services
# with LimitNOFILE=1024:524288; here 96:<hard> and 120 services, the same shape at a test's size):
# regent raises its soft limit to the hard one at start (logged), so the haproxy sink holds a copy
# of every listening socket (fdkeep.c) and a SIGKILLed haproxy master refuses no connection: a
# load through the last service's listener across the kill, 0 refused.  Before, the copies
# stopped at the soft limit ("got 1004 of the 1102 sockets announced" at 1,100 services under
# 1024) and that kill refused connections.  Real haproxy 2.6 on loopback.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"

command -v prlimit >/dev/null || { harness_skip "no prlimit (util-linux)"; harness_summary; exit; }
PY=${PYTHON3:-python3}
T=$H_TMP
HX=$T/hx
mkdir -p "$HX"
MASTER=$HX/haproxy-master.sock
N=120
SOFT=96
HARD=$(ulimit -Hn)
[[ "$HARD" == unlimited || "$HARD" -ge 4096 ]] ||
    { harness_skip "hard open-file limit $HARD: haproxy needs ~$((N * 2 + 600))"; harness_summary; exit; }

P_BE=$(free_port)
daemon_start be "$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py" backend "$P_BE" b1
wait_for --timeout 20 http_get "http://127.0.0.1:$P_BE/" >/dev/null || { echo "backend did not start" >&2; exit 1; }

INI=$T/regent.ini
{
    cat <<EOF
[agent]
node = fdlimit
debounce = 5ms
state_dir = $T/state
log_level = debug

$(hx_local_sections "$T/instances")
check_interval = 1s
slots = 1
EOF
    for ((i = 1; i <= N; i++)); do
        P[i]=$(free_port)
        printf '\n[service s%d]\nport = %d\nmode = http\n' "$i" "${P[i]}"
    done
} > "$INI"
for ((i = 1; i <= N; i++)); do echo "i-$i s$i 127.0.0.1 $P_BE"; done > "$T/instances"

daemon_start regent prlimit --nofile="$SOFT": "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
PID=$(daemon_pid regent)
check "haproxy runs" wait_for --timeout 30 hx_track_master "$MASTER"
check "regent says it raised its soft open-file limit from $SOFT" \
    grep -q "open files: soft limit raised from $SOFT to " "$LOG"
check_eq "... to the hard limit (/proc/PID/limits)" "$(awk '/^Max open files/ { print $5 }' "/proc/$PID/limits")" \
    "$(awk '/^Max open files/ { print $4 }' "/proc/$PID/limits")"
LAST=http://127.0.0.1:${P[N]}/
check "the last service routes" wait_for --timeout 30 http_get "$LAST"
# held: the count of the last "holding copies of haproxy's K listening sockets" (K: the N
# listeners and haproxy's own sockets, its admin socket among them), 0 if none
held() { sed -n "s/.*holding copies of haproxy's \([0-9]*\) listening sockets.*/\1/p" "$LOG" | tail -1 | grep . || echo 0; }
check "the sink holds copies of all $N listeners and haproxy's own sockets (more than the soft limit it started with)" \
    wait_for --timeout 15 eval '[[ $(held) -ge $N ]]'
echo "  | copies held: $(held)"
check "no 'cannot copy haproxy's listening sockets'" eval "! grep -q 'cannot copy haproxy' '$LOG'"

# The kill under a load (a new connection per request) through the last listener.
M0=$(hx_master_pid "$MASTER")
"$PY" "$REGENT_TEST_DIR/e2e/loadgen.py" --url "$LAST" --out "$T/load.jsonl" --duration 60 \
    --stop-file "$T/load.stop" --threads 2 --interval 0.01 &
LOADPID=$!
sleep 1
kill -KILL "$M0"
check "a new master answers" wait_for --timeout 15 eval '[[ -n "$(hx_master_pid "$MASTER")" && "$(hx_master_pid "$MASTER")" != '"$M0"' ]]'
hx_track_master "$MASTER"
handed=$(sed -n 's/.*handing copies of \([0-9]*\) listening sockets to the new haproxy master.*/\1/p' "$LOG" | tail -1)
check "the new master got copies of all $N listeners and haproxy's own sockets (${handed:-none})" \
    test "${handed:-0}" -ge "$N"
check "the last service routes again" wait_for --timeout 15 http_get "$LAST"
sleep 1
touch "$T/load.stop"
wait "$LOADPID"
read -r n refused < <("$PY" - "$T/load.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
print(len(recs), sum(1 for r in recs if r["status"] != 200 and "refused" in r["error"].lower()))
EOF
)
echo "  | master $M0 SIGKILLed with $N listeners under a soft limit of $SOFT at start: $refused of $n connections refused"
check "the load ran (over 50 requests: $n)" test "$n" -gt 50
check_eq "master SIGKILL: 0 refused connections" 0 "$refused"
daemon_stop regent
check "haproxy stopped with regent (keep_running = false)" wait_for --timeout 15 hx_masters_stopped
harness_summary
