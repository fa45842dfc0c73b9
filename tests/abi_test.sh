#!/usr/bin/env bash
# abi_test.sh - plugin ABI compatibility within major 1 (issue 18): the 1.0
# fixtures (tests/plugins/abi10.c: a 1.0 descriptor, 1.0's key stride, only
# 1.0 host entries) and a plugin built as against a newer header
# (tests/plugins/future.c: a longer descriptor and key stride) are loaded by
# this regent and run: the 1.0 source reports an instance, the 1.0 store gets
# it registered and reports it back, both sinks get it in an apply,
# everything stops cleanly; their keys are
# checked with the plugins' own strides.
set -u
source "$(dirname "$0")/harness/lib.sh"
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}"
harness_init || exit 1
T=$H_TMP
P=$REGENT_PLUGIN_DIR

# ---- listing and key checks, without running ----
"$REGENT_BIN" --list-plugins --plugin-dir "$P" >"$T/list" 2>"$T/list.err"
check "--list-plugins shows the 1.0 sink fixture" grep -Eq "^abi10sink +sink +1\.0\.0 +$P/abi10sink.so$" "$T/list"
check "--list-plugins shows the 1.0 source fixture" grep -Eq "^abi10source +source +1\.0\.0 +$P/abi10source.so$" "$T/list"
check "--list-plugins shows the 1.0 store fixture" grep -Eq "^abi10store +store +1\.0\.0 +$P/abi10store.so$" "$T/list"
check "--list-plugins shows the newer-header sink" grep -Eq "^futuresink +sink +future +$P/futuresink.so$" "$T/list"

cat >"$T/bad.ini" <<EOF
[source abi10source]
service = web
id = n1/web/1
port = 99999
colour = red
[sink futuresink]
file = $T/future.out
count = 11
shade = blue
[service web]
weight = 300
EOF
"$REGENT_BIN" --check-config -c "$T/bad.ini" --plugin-dir "$P" >"$T/out" 2>"$T/err"; rc=$?
check_eq "--check-config refuses the bad keys (exit 1)" 1 "$rc"
check "a 1.0 plugin's key table is read with 1.0's stride (range)" \
	grep -qxF "$T/bad.ini:4: source abi10source.port: 99999 is out of range (must be between 1 and 65535)" "$T/err"
check "... (the known keys listed)" \
	grep -qxF "$T/bad.ini:5: source abi10source.colour: unknown key (known: service, id, address, port)" "$T/err"
check "a newer plugin's key table is read with its own longer stride (range)" \
	grep -qxF "$T/bad.ini:8: sink futuresink.count: 11 is out of range (must be between 1 and 10)" "$T/err"
check "... (the known keys listed)" \
	grep -qxF "$T/bad.ini:9: sink futuresink.shade: unknown key (known: file, greeting, count)" "$T/err"
check "... and so is its service key table" \
	grep -qxF "$T/bad.ini:11: service web.weight: 300 is out of range (must be between 1 and 256)" "$T/err"
check_eq "... and nothing else is reported" 6 "$(wc -l <"$T/err")"

# ---- running them ----
cat >"$T/run.ini" <<EOF
[agent]
node = abi-1
debounce = 20ms
control_socket =
[source abi10source]
service = web
id = abi-1/web/1
address = 127.0.0.7
port = 18080
[store abi10store]
log = $T/store.log
[sink abi10sink]
file = $T/abi10.out
[sink futuresink]
file = $T/future.out
greeting = hi
[service web]
label = front
weight = 5
EOF
"$REGENT_BIN" --check-config -c "$T/run.ini" --plugin-dir "$P" >"$T/out" 2>"$T/err"; rc=$?
check_eq "--check-config accepts the fixtures' sections" 0 "$rc"
daemon_start regent "$REGENT_BIN" -c "$T/run.ini" --plugin-dir "$P"
LOG=$(daemon_log regent)
check "the 1.0 source starts and reports its instance" \
	wait_for --timeout 10 grep -q "source abi10source: abi10 source reported abi-1/web/1 (0)" "$LOG"
check "the 1.0 sink starts" grep -q "sink abi10sink: abi10 sink started" "$LOG"
check "the 1.0 store starts" grep -q "store abi10store: abi10 store started" "$LOG"
check "the 1.0 store gets the instance registered" \
	wait_for --timeout 10 grep -qx "register abi-1/web/1 127.0.0.7:18080" "$T/store.log"
check "the 1.0 sink gets the instance in an apply" \
	wait_for --timeout 10 grep -qx "  web abi-1/web/1 127.0.0.7:18080" "$T/abi10.out"
check "the newer-header sink runs with its keys (default and set)" grep -qx "hi count=3" "$T/future.out"
check "the newer-header sink gets the service with its service keys" \
	wait_for --timeout 10 grep -qx "  web label=front weight=5" "$T/future.out"
daemon_stop regent 10
check_eq "regent stops cleanly (exit 0)" "exit 0" "$(daemon_status regent)"
check "the 1.0 sink was stopped" grep -q "sink abi10sink: abi10 abi10sink stopped" "$LOG"
check "the 1.0 source was stopped" grep -q "source abi10source: abi10 abi10source stopped" "$LOG"
check "the 1.0 store was stopped" grep -q "store abi10store: abi10 abi10store stopped" "$LOG"
check "no warning or error in the log" bash -c "! grep -E '(^|[] ])(warn|error): ' '$LOG'"

harness_summary
