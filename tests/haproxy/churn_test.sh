#!/usr/bin/env bash
# churn_test.sh - no dropped request under churn: wrk drives HTTP load through the haproxy that
# regent manages for 30 s while an instance is added and another removed every 500 ms (each
# backend is killed only once haproxy has it in maintenance) and five new services make
# haproxy reload.  Prints wrk's totals; passes only with zero socket errors and zero non-2xx
# answers.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
HX=$T/hx
mkdir -p "$HX"
ADMIN=$HX/haproxy-admin.sock
MASTER=$HX/haproxy-master.sock
DURATION=${CHURN_SECONDS:-30}

P_WEB=$(free_port); P_STATS=$(free_port)
declare -a P_EXTRA
for i in 1 2 3 4 5; do P_EXTRA[$i]=$(free_port); done
P_STATIC=$(free_port)   # one backend serving the extra services

# CHURN_HTTPLOG=1: haproxy logs every request into regent's log (a user include), to diagnose.
INCLUDE=""
if [[ -n "${CHURN_HTTPLOG:-}" ]]; then
    printf 'global\n    log stdout format short local0 info\ndefaults\n    log global\n    option httplog\n' \
        > "$T/user.cfg"
    INCLUDE="include = $T/user.cfg"
fi
{
    cat <<END
[agent]
node = churn
state_dir = $T/state
debounce = 5ms

$(hx_local_sections "$INST")
stats = 127.0.0.1:$P_STATS
reload_interval = 200ms
check_interval = 1s
$INCLUDE

[service web]
port = $P_WEB
mode = http
check = /
; a joining server's check is pending (not forced up) until one check passes: checked every
; 100 ms, so each churn backend (swapped every 500 ms) is up within ~0.1-0.2 s of joining
check_interval = 100ms
server_options = rise 1
; a server that just came up through its check is one failed check from down (haproxy's health
; = rise); on a loaded machine a busy python backend answers a check in more than the default
; timeout (= inter, 100 ms): give it 1 s so that only a dead backend fails its check
timeout_check = 1s
END
    for i in 1 2 3 4 5; do printf '\n[service extra%d]\nport = %s\nmode = http\n' "$i" "${P_EXTRA[$i]}"; done
} > "$T/regent.ini"

daemon_start static "${TOOL[@]}" backend "$P_STATIC" static
wait_for --timeout 20 http_get "http://127.0.0.1:$P_STATIC/" >/dev/null || exit 1
: > "$INST"

daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)
reloads() { haproxy_master_cmd --sock "$MASTER" "show proc" | awk '$2 == "master" { print $3 }'; }
wait_for --timeout 20 eval '[[ -n "$(reloads)" ]]' >/dev/null || { echo "haproxy did not start" >&2; exit 1; }
hx_track_master "$MASTER"

# The churn driver (hxtool.py churn) forks the web backends itself: each listens before it joins
# the catalog and gets SIGKILL once haproxy has it in maintenance.  It keeps 3 running, swaps one
# every 500 ms (start first: the oldest leaves once the previous newcomer is up in haproxy, as a
# rolling update with health checks does; web's joins are pending until their check passed), and adds a new service (a reload) at 3, 9, 15, 21 and 27 s.  Its churn covers
# the whole wrk run; its last backends stay up until wrk is done.
EXTRA=()
for i in 1 2 3 4 5; do EXTRA+=("extra$i:$P_STATIC:$((3 + (i - 1) * 6))"); done
H_KIND=churn daemon_start churn "${TOOL[@]}" churn "$INST" "$ADMIN" web "$((DURATION + 1))" 500 3 "${EXTRA[@]}"
web_ok() { http_get "http://127.0.0.1:$P_WEB/" >/dev/null; }
wait_for --timeout 20 web_ok || { echo "haproxy does not route web" >&2; exit 1; }
R0=$(reloads)

wrk -t2 -c12 -d"${DURATION}s" --timeout 5s -s "$REGENT_TEST_DIR/haproxy/count.lua" \
    "http://127.0.0.1:$P_WEB/" > "$T/wrk.out" 2>&1
touch "$INST.stop"   # wrk is done: the driver may kill its last backends
check "churn: the driver ended once wrk was done" wait_for --timeout 20 eval '! daemon_alive churn'
R1=$(reloads)

sed 's/^/  | wrk: /' "$T/wrk.out"
res=$(grep '^RESULT' "$T/wrk.out")
drv=$(grep '^added=' "$(daemon_log churn)")
echo "  | churn: $drv"
val() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
echo "  | reloads during the run: $((R1 - R0))"
echo "  | socket errors: connect=$(val connect "$res") read=$(val read "$res")" \
     "write=$(val write "$res") timeout=$(val timeout "$res"); non-2xx: $(val non2xx "$res")"
check "wrk ran and printed its totals" test -n "$res"
check "wrk: many requests served (>= 2000)" test "$(val requests "$res")" -ge 2000
errs=-1
[[ -n "$res" ]] && errs=$(( $(val connect "$res") + $(val read "$res") + $(val write "$res") + $(val timeout "$res") ))
check_eq "wrk: zero socket errors (connect+read+write+timeout)" 0 "$errs"
check_eq "wrk: zero non-2xx answers" 0 "$(val non2xx "$res")"
check "churn: the driver finished" test -n "$drv"
check "churn: an instance added and one removed every 500 ms" \
    test "$(val added "$drv")" -ge $(( DURATION * 2 - 4 ))
check "churn: the removals kept up (removed >= added - 5: start first lets at most 4 wait)" \
    test "$(val removed "$drv")" -ge $(( $(val added "$drv") - 5 ))
# `late` counts the driver's own ticks that started behind schedule (its own timing on a loaded
# machine, not regent's): most of the churn must still run on time (measured 1-3 of ~60).
check "churn: the driver kept its schedule (late ticks <= 1 in 5: $(val late "$drv"))" \
    test "$(val late "$drv")" -le $(( $(val added "$drv") / 5 ))
check_eq "churn: every removed backend was in maintenance before it was killed" 0 "$(val stuck "$drv")"
check_eq "churn: every new backend was up within 3 s (its check passed)" 0 "$(val notup "$drv")"
check_eq "churn: haproxy reloaded 5 times (the new services)" 5 "$((R1 - R0))"
for i in 1 2 3 4 5; do
    check "churn: new service extra$i is served" http_get "http://127.0.0.1:${P_EXTRA[$i]}/"
done
check "regent logged no error" eval "! grep -E ' error: ' '$LOG'"
grep -E ' error: ' "$LOG" | head -5 | sed 's/^/  | /' >&2

harness_summary
