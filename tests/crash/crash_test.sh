#!/usr/bin/env bash
# crash_test.sh - regent's report of a fatal signal (core/crash.c): the test-only source
# testsource (its crash key, tests/plugins/testsource.c) crashes regent on purpose, four ways:
# abort() on the loop, a null write, a stack overflow, abort() on another thread.  Each time
# the log must hold the line naming the signal, at least one backtrace frame (the plugin's own
# for abort) and the end of the backtrace, and regent must still die of that signal (the
# harness's "signal N": the exit status and a core dump are unchanged by the report).  Under
# a sanitizer build the report is not installed (the sanitizer reports): that is checked.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
ulimit -c 0   # crashes on purpose: no core files
T=$H_TMP
sanitized=${REGENT_SANITIZE:-0}

# crash_case NAME HOW SIGNUM SIGNAME
crash_case() {
	local name=$1 how=$2 num=$3 sig=$4 ini="$T/$1.ini" log st
	mkdir -p "$T/state-$name"
	printf '[agent]\nnode = n1\nstate_dir = %s\n\n[source testsource]\nfile = %s\ncrash = %s\ncrash_after = 200ms\n\n[store teststore]\n' \
		"$T/state-$name" "$T/none.txt" "$how" >"$ini"
	H_EXPECT_CRASH=1 daemon_start "$name" "$REGENT_BIN" -c "$ini" -p "$REGENT_PLUGIN_DIR"
	log=$(daemon_log "$name")
	st=$(daemon_wait_exit "$name" 30)
	if [[ $sanitized == 1 ]]; then
		# ASan reports a SEGV itself and exits 1; SIGABRT it leaves to the kernel
		check "$name: regent died ($st)" test -n "$st" -a "$st" != "exit 0"
		check "$name: sanitizer build: no report of regent's own" \
			bash -c "! grep -q 'error: core: fatal signal' '$log'"
		return 0
	fi
	check_eq "$name: regent died of $sig, as without the report" "signal $num" "$st"
	check "$name: the log names the signal" \
		grep -qE "^[0-9T:.-]+ error: core: fatal signal $sig \\($num\\) in thread [0-9]+" "$log"
	check "$name: a backtrace frame follows" \
		grep -qE '^/[^ ]*(regent|\.so)(\.[0-9]+)*\((.*\+0x[0-9a-f]+)?\) ?\[0x[0-9a-f]+\]$' "$log"
	check "$name: the backtrace ends" grep -qx "end of backtrace" "$log"
}

crash_case abort abort 6 SIGABRT
if [[ $sanitized != 1 ]]; then
	check "abort: the report says abort() raised it" \
		grep -q "fatal signal SIGABRT (6) in thread [0-9]*, sent by pid [0-9]* (this process" "$(daemon_log abort)"
	check "abort: the crashing plugin's frame is in the backtrace" \
		grep -q "/testsource\.so(" "$(daemon_log abort)"
fi
crash_case segv segv 11 SIGSEGV
[[ $sanitized == 1 ]] || check "segv: the report gives the faulting address" \
	grep -q "fatal signal SIGSEGV (11) in thread [0-9]*, address 0x0," "$(daemon_log segv)"
crash_case stack stack 11 SIGSEGV
crash_case thread thread 6 SIGABRT
harness_summary
