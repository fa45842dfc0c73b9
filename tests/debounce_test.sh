#!/usr/bin/env bash
# debounce_test.sh - the core's leading-edge debounce, end to end with a real regent and the
# test plugins (testsource -> teststore -> catalog -> testsink), with a long debounce (3 s) so
# that "at once" and "after the debounce" cannot be mistaken for each other on a loaded machine:
#  - after a quiet period, one change reaches the sink at once (well under the debounce);
#  - a burst right after it (6 changes, 100 ms apart) is batched: exactly one more apply,
#    holding the burst's last state, and not before a debounce after the burst's last change;
#  - after another quiet period, the next change again goes at once.
# Bounds are generous (the leading edge within half the debounce, polling included); the
# speed itself is measured by bench/run propagation, not here.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1

T=$H_TMP
CFG=$T/regent.ini
SRC=$T/src
SINKOUT=$T/sink.out
DEBOUNCE_MS=3000
mkdir -p "$T/state"
cat > "$CFG" <<EOF
[agent]
node = db
debounce = ${DEBOUNCE_MS}ms
debounce_max = 20s
state_dir = $T/state

[source testsource]
file = $SRC
interval = 20ms

[store teststore]

[sink testsink]
file = $SINKOUT
EOF

applies() { grep -c '^apply' "$SINKOUT" 2>/dev/null || echo 0; }
applies_at_least() { [[ $(applies) -ge $1 ]]; }
# last_port: the port of instance n/w1 in the sink's last snapshot
last_port() {
    awk '/^apply /{p=""} $1 == "n/w1" {split($2, a, "[:/]"); p=a[2]} /^end$/{last=p} END{print last}' "$SINKOUT"
}
set_port() { printf 'n/w1 web 127.0.0.1 %s\n' "$1" > "$SRC.tmp" && mv "$SRC.tmp" "$SRC"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

set_port 18000
daemon_start regent "$REGENT_BIN" -c "$CFG" -p "$REGENT_PLUGIN_DIR"
if ! wait_for --timeout 20 applies_at_least 1; then
    check "regent starts and the sink gets the first snapshot" false
    harness_summary; exit 1
fi
check_eq "start: the first snapshot holds the instance" 18000 "$(last_port)"

# ---- 1. a change after a quiet period goes at once -----------------------------------------
sleep $((DEBOUNCE_MS / 1000 + 1))
a0=$(applies)
t0=$(now_ms)
set_port 18001
check "quiet period, one change: the sink gets it" wait_for --timeout 10 applies_at_least $((a0 + 1))
t1=$(now_ms)
check_eq "quiet period, one change: applied with its port" 18001 "$(last_port)"
check "quiet period, one change: applied in $((t1 - t0)) ms, well under the ${DEBOUNCE_MS} ms debounce (bound: half of it)" \
    test $((t1 - t0)) -lt $((DEBOUNCE_MS / 2))

# ---- 2. a burst right after it is batched ---------------------------------------------------
a1=$(applies)
for p in 18002 18003 18004 18005 18006 18007; do
    set_port "$p"
    sleep 0.1
done
tb=$(now_ms) # the burst's last change is written (at most 100 ms ago)
check "burst: nothing applied before the debounce ran out" test "$(applies)" -eq "$a1"
check "burst: one apply follows" wait_for --timeout 15 applies_at_least $((a1 + 1))
t2=$(now_ms)
check "burst: applied $((t2 - tb)) ms after the last change, not before the debounce (${DEBOUNCE_MS} ms, less the 100 ms pause)" \
    test $((t2 - tb)) -ge $((DEBOUNCE_MS - 100))
check_eq "burst: the apply holds the burst's last state" 18007 "$(last_port)"
sleep 1
check_eq "burst: 6 changes, exactly one apply (batched)" $((a1 + 1)) "$(applies)"

# ---- 3. quiet again: the next change goes at once again -------------------------------------
sleep $((DEBOUNCE_MS / 1000 + 1))
a2=$(applies)
t0=$(now_ms)
set_port 18010
check "second quiet period: the sink gets the change" wait_for --timeout 10 applies_at_least $((a2 + 1))
t1=$(now_ms)
check_eq "second quiet period: applied with its port" 18010 "$(last_port)"
check "second quiet period: applied in $((t1 - t0)) ms, under half the debounce" \
    test $((t1 - t0)) -lt $((DEBOUNCE_MS / 2))

daemon_stop regent 20
check "no sanitizer report" bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$(daemon_log regent)'"
harness_summary
