#!/usr/bin/env bash
# reload_test.sh - make-before-break reloads, end to end with a real regent
# and the test plugins (whose confirm_after / confirm_error keys make
# start() pending and confirm or fail later through host->started()):
#  - a store, a sink and a source whose new section proves itself: the old
#    instance is stopped (REPLACED) only after that, the catalog never
#    blinks, the old sink gets no applies during the trial, and a source
#    swap takes down only the ids the new source does not report;
#  - the new instance fails (started() < 0, start() < 0, or no started()
#    within [agent] start_timeout): it is stopped (FAILED), the old one keeps
#    working, the log and /healthz (the stats sink) say the new
#    configuration was refused;
#  - a second SIGHUP during a trial abandons it (or lets it go on when its
#    section is unchanged);
#  - a first start that fails through started() is unhealthy with why;
#  - SIGTERM stops everything with the reason "exit".
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
PY=/usr/bin/python3
[[ -x $PY ]] || PY=${PYTHON3:-python3}

T=$H_TMP
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
CFG=$T/regent.ini
mkdir -p "$T/state"

# Everything the config says, as variables (reset per step).
SRC=$T/src-a STORELOG=$T/s0.log SINKOUT=$T/k0.out START_TIMEOUT=10s
SRC_X="" STORE_X="" SINK_X=""
mkcfg() {
    cat > "$CFG" <<EOF
[agent]
node = rl
debounce = 20ms
start_timeout = $START_TIMEOUT
state_dir = $T/state

[source testsource]
file = $SRC
interval = 50ms
$SRC_X

[store teststore]
log = $STORELOG
$STORE_X

[sink testsink]
file = $SINKOUT
$SINK_X

[sink stats]
listen = 127.0.0.1:$PORT
EOF
}
reload() { mkcfg; kill -HUP "$(daemon_pid regent)"; }
LOG=$(daemon_log regent)

# hz PLUGIN FIELD: that field of the plugin's /healthz entry ("ok": the
# top-level verdict), as JSON text.
hz() {
    curl -s --noproxy '*' -m 5 "$BASE/healthz" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps(d["ok"] if sys.argv[2] == "ok" else d["plugins"][sys.argv[1]].get(sys.argv[2])))' "$1" "$2"
}
hz_is() { [[ "$(hz "$1" "$2")" == "$3" ]]; }
applies() { grep -c '^apply' "$1" 2>/dev/null || echo 0; }
# last_snapshot FILE: the instance lines of the last testsink snapshot
last_snapshot() { awk '/^apply /{buf=""; inblk=1; next} /^end$/{if(inblk){last=buf; inblk=0}; next} inblk{buf=buf $0 "\n"} END{printf "%s", last}' "$1"; }
# since FILE MARK: the file's lines after line MARK
since() { tail -n "+$(($2 + 1))" "$1"; }
lines() { wc -l < "$1"; }

printf 'n/a1 web 127.0.0.1 18001\nn/a2 web 127.0.0.1 18002\nn/a3 api 127.0.0.1 18003\n' > "$T/src-a"
mkcfg
daemon_start regent "$REGENT_BIN" -c "$CFG" -p "$REGENT_PLUGIN_DIR"
if ! wait_for --timeout 20 hz_is "store teststore" healthy true; then
    check "regent starts with the stats sink" false
    harness_summary; exit 1
fi
check "the sink gets the three instances" wait_for --timeout 10 bash -c "last_snapshot() { $(declare -f last_snapshot | tail -n +2); }; [ \$(last_snapshot '$SINKOUT' | grep -c n/a) -eq 3 ]"
check "/healthz is ok" hz_is "store teststore" ok true

# ---- 1. a store whose new section proves itself after 6 s --------------------------------
# (a trial long enough for the checks below to see it on a loaded machine)
a0=$(applies "$SINKOUT")
STORELOG=$T/s1.log STORE_X="confirm_after = 6s"; reload
check "store: the new instance starts" wait_for --timeout 10 grep -q '^start$' "$T/s1.log"
check "store: the new one registers every local instance while on trial" \
    wait_for --timeout 5 bash -c "[ \$(grep -c '^register' '$T/s1.log') -eq 3 ]"
check "store: the old one keeps running during the trial" bash -c "! grep -q '^stop' '$T/s0.log'"
check "/healthz notes the trial" wait_for --timeout 4 hz_is "store teststore" note '"a new configuration is on trial"'
check "store: the old one is stopped (replaced) once the new one confirmed" \
    wait_for --timeout 20 grep -qx 'stop replaced' "$T/s0.log"
check "store: confirmation came before the old one's stop (agent log order)" bash -c "
    grep -nE 'store teststore \(new\): ready|the new configuration took over' '$LOG' | head -1 | grep -q 'ready'"
check "store: the old one never deregistered anything" bash -c "! grep -q '^deregister' '$T/s0.log'"
sleep 0.5
check_eq "store swap: the sink saw no catalog change (no blink)" "$a0" "$(applies "$SINKOUT")"
check "/healthz: the trial note is gone" hz_is "store teststore" note null

# ---- 2. a store whose new section fails its trial -----------------------------------------
STORELOG=$T/s2.log STORE_X=$'confirm_after = 300ms\nconfirm_error = registry says no'; reload
check "store fail: the new one is stopped (failed)" wait_for --timeout 10 grep -qx 'stop failed' "$T/s2.log"
check "store fail: the log says the new configuration was refused and why" \
    grep -q 'store teststore: new configuration refused: registry says no; the previous one runs' "$LOG"
check "store fail: /healthz says so, still ok" hz_is "store teststore" note \
    '"new configuration refused: registry says no; the previous one runs"'
check "store fail: /healthz stays 200" hz_is "store teststore" ok true
check "store fail: the old one was not stopped" bash -c "! grep -q '^stop' '$T/s1.log'"
printf 'n/a4 web 127.0.0.1 18004\n' >> "$T/src-a"
check "store fail: the old one keeps registering" wait_for --timeout 10 grep -q '^register n/a4' "$T/s1.log"
check "store fail: and the catalog follows" wait_for --timeout 10 grep -q 'n/a4 127.0.0.1:18004' "$SINKOUT"

# ---- 3. a store that never confirms: start_timeout ----------------------------------------
START_TIMEOUT=1s STORELOG=$T/s3.log STORE_X="confirm_after = 30s"; reload
check "timeout: the new one is stopped (failed) after start_timeout" \
    wait_for --timeout 10 grep -qx 'stop failed' "$T/s3.log"
check "timeout: the log says why" grep -q 'new configuration refused: not ready within 1.0 s (start_timeout); the previous one runs' "$LOG"
check "timeout: the old one still runs" bash -c "! grep -q '^stop' '$T/s1.log'"

# ---- 4. a second SIGHUP during a trial -----------------------------------------------------
START_TIMEOUT=10s STORELOG=$T/s4.log STORE_X="confirm_after = 5s"; reload
check "second HUP: the first trial starts" wait_for --timeout 10 grep -q '^start$' "$T/s4.log"
STORELOG=$T/s5.log STORE_X="confirm_after = 300ms"; reload
check "second HUP: the first trial is abandoned (failed)" wait_for --timeout 10 grep -qx 'stop failed' "$T/s4.log"
check "second HUP: the log says it was abandoned" grep -q 'store teststore (new): abandoned: a newer reload superseded its configuration' "$LOG"
check "second HUP: the newer one takes over" wait_for --timeout 10 grep -qx 'stop replaced' "$T/s1.log"
check "second HUP: the abandoned one never confirmed" bash -c "! grep -q '^confirm' '$T/s4.log'"
# a HUP that keeps the section on trial lets the trial go on
STORELOG=$T/s6.log STORE_X="confirm_after = 2s"; reload
check "same section: a trial starts" wait_for --timeout 10 grep -q '^start$' "$T/s6.log"
reload
check "same section: the trial goes on and takes over" wait_for --timeout 10 grep -qx 'stop replaced' "$T/s5.log"
check "same section: it was not abandoned" bash -c "! grep -q '^stop' '$T/s6.log'"
# a HUP back to the running section abandons the trial and keeps the running one
STORELOG=$T/s7.log STORE_X="confirm_after = 5s"; reload
check "revert: a trial starts" wait_for --timeout 10 grep -q '^start$' "$T/s7.log"
STORELOG=$T/s6.log STORE_X="confirm_after = 2s"; reload
check "revert: the trial is abandoned" wait_for --timeout 10 grep -qx 'stop failed' "$T/s7.log"
sleep 0.3
check "revert: the running store is untouched" bash -c "! grep -q '^stop' '$T/s6.log'"
STORE=$T/s6.log

# ---- 5. sinks ------------------------------------------------------------------------------
SINKOUT=$T/k1.out SINK_X="confirm_after = 8s"; reload  # long enough to see on a loaded machine
check "sink: the new one gets the current snapshot while on trial" \
    wait_for --timeout 10 grep -q 'n/a4 127.0.0.1:18004' "$T/k1.out"
k0=$(applies "$T/k0.out")
printf 'n/a5 web 127.0.0.1 18005\n' >> "$T/src-a"
check "sink: a change during the trial reaches the new one" wait_for --timeout 5 grep -q 'n/a5' "$T/k1.out"
check "sink: ... and not the old one (they would fight)" bash -c "! grep -q '^confirm' '$T/k1.out' && ! grep -q 'n/a5' '$T/k0.out'"
check_eq "sink: the old one got no apply during the trial" "$k0" "$(applies "$T/k0.out")"
check "sink: the old one is stopped (replaced) after the confirmation" \
    wait_for --timeout 15 grep -qx 'stop replaced' "$T/k0.out"
SINKOUT=$T/k2.out SINK_X=$'confirm_after = 1s\nconfirm_error = bad include'; reload
check "sink fail: the new one is on trial" wait_for --timeout 10 grep -q '^apply' "$T/k2.out"
k1=$(applies "$T/k1.out")
grep -v 'n/a5' "$T/src-a" > "$T/src-a.new" && mv "$T/src-a.new" "$T/src-a"
check "sink fail: the new one is stopped (failed)" wait_for --timeout 10 grep -qx 'stop failed' "$T/k2.out"
check "sink fail: the old one gets the current snapshot again" \
    wait_for --timeout 5 bash -c "[ \$(grep -c '^apply' '$T/k1.out') -gt $k1 ]"
snap=$(last_snapshot "$T/k1.out")
check "sink fail: the old one's snapshot has what came during the trial" grep -q n/a4 <<<"$snap"
check "sink fail: ... and no longer what went during the trial" bash -c '! grep -q n/a5' <<<"$snap"
check "sink fail: /healthz says so" hz_is "sink testsink" note \
    '"new configuration refused: bad include; the previous one runs"'
check "sink fail: the old one was not stopped" bash -c "! grep -q '^stop' '$T/k1.out'"
SINKOUT=$T/k1.out SINK_X="confirm_after = 8s"; reload # back to the running one
check "sink: going back to the running section clears the note" wait_for --timeout 5 hz_is "sink testsink" note null

# ---- 6. sources ----------------------------------------------------------------------------
# src-a: a1 a2 a3 a4.  src-b: a1 same, a2 on another port, b1 new.
printf 'n/a1 web 127.0.0.1 18001\nn/a2 web 127.0.0.1 18102\nn/b1 web 127.0.0.1 18011\n' > "$T/src-b"
m=$(lines "$STORE")
SRC=$T/src-b SRC_X="confirm_after = 500ms"; reload
check "source swap: the new source takes over" wait_for --timeout 10 grep -q 'source testsource: the new configuration took over' "$LOG"
check "source swap: the ids only the old one saw go" wait_for --timeout 5 bash -c "
    since() { tail -n \"+\$((\$2 + 1))\" \"\$1\"; }
    since '$STORE' $m | grep -q '^deregister n/a3' && since '$STORE' $m | grep -q '^deregister n/a4'"
check "source swap: the new id is registered" bash -c "tail -n +$((m + 1)) '$STORE' | grep -q '^register n/b1'"
check "source swap: the changed one is updated" bash -c "tail -n +$((m + 1)) '$STORE' | grep -q '^register n/a2 web 127.0.0.1:18102'"
check "source swap: no deregistration of an id both report (no blink)" \
    bash -c "! tail -n +$((m + 1)) '$STORE' | grep -qE '^deregister n/a[12] '"
check "source swap: no re-registration of the unchanged one" \
    bash -c "! tail -n +$((m + 1)) '$STORE' | grep -q '^register n/a1 '"
# a new source that fails after reporting: its own ids go, the shared ones stay
printf 'n/a1 web 127.0.0.1 18001\nn/c1 web 127.0.0.1 18021\n' > "$T/src-c"
m=$(lines "$STORE")
SRC=$T/src-c SRC_X=$'confirm_after = 500ms\nconfirm_error = socket gone'; reload
check "source fail: refused" wait_for --timeout 10 grep -q 'source testsource: new configuration refused: socket gone; the previous one runs' "$LOG"
check "source fail: what only the new one reported goes" wait_for --timeout 5 bash -c "tail -n +$((m + 1)) '$STORE' | grep -q '^deregister n/c1'"
check "source fail: the old source's instances stay" \
    bash -c "! tail -n +$((m + 1)) '$STORE' | grep -qE '^deregister n/(a1|a2|b1) '"
# a new source that cannot start at all (its docker socket does not exist, say)
m=$(lines "$STORE")
SRC=$T/no-such-file SRC_X="require_file = true"; reload
check "source cannot start: refused with the cause" wait_for --timeout 10 grep -q 'source testsource: new configuration refused: cannot start: No such file or directory; the previous one runs' "$LOG"
check "source cannot start: /healthz says so" hz_is "source testsource" note \
    '"new configuration refused: cannot start: No such file or directory; the previous one runs"'
printf 'n/b2 web 127.0.0.1 18012\n' >> "$T/src-b"
check "source cannot start: the old source keeps reporting" wait_for --timeout 10 bash -c "tail -n +$((m + 1)) '$STORE' | grep -q '^register n/b2'"
check "source cannot start: nothing was deregistered" bash -c "! tail -n +$((m + 1)) '$STORE' | grep -q '^deregister'"

# ---- 7. a section added by a reload, then SIGTERM during a trial ------------------------------
STORELOG=$T/s8.log STORE_X="confirm_after = 30s"; reload
check "SIGTERM during a trial: the trial is on" wait_for --timeout 10 grep -q '^start$' "$T/s8.log"
daemon_stop regent 20
check "SIGTERM: the instance on trial stops as failed (it never took over)" grep -qx 'stop failed' "$T/s8.log"
check "SIGTERM: the running store stops with the reason exit" grep -qx 'stop exit' "$STORE"
check "SIGTERM: the running sink stops with the reason exit" grep -qx 'stop exit' "$T/k1.out"
check "exited cleanly" grep -q ': core: stopped$' "$LOG"

# ---- 8. a first start that fails through started() ----------------------------------------
PORT=$(free_port); BASE=http://127.0.0.1:$PORT
SRC=$T/src-a STORELOG=$T/f.log SINKOUT=$T/f.out SRC_X="" SINK_X=""
STORE_X=$'confirm_after = 200ms\nconfirm_error = lease refused'
mkcfg
daemon_start regent2 "$REGENT_BIN" -c "$CFG" -p "$REGENT_PLUGIN_DIR"
check "first start fails: /healthz turns unhealthy with the reason" \
    wait_for --timeout 20 hz_is "store teststore" reason '"failed to start: lease refused"'
check "first start fails: /healthz is 503" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 5 '$BASE/healthz') = 503 ]"
daemon_stop regent2 20

for l in "$LOG" "$(daemon_log regent2)"; do
    check "no sanitizer report in $(basename "$l")" bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$l'"
done
harness_summary
