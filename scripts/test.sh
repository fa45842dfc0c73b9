#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it: installs missing Debian
# packages, builds regent twice (RelWithDebInfo, then ASan+UBSan) and runs
# every test (unit tests and the integration tests that start real etcd,
# dockerd and haproxy on loopback) under ctest in each build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== build (RelWithDebInfo) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
# Skip policy: a test that could not run (part of) itself exits 77 and ctest shows it as
# "Skipped" (SKIP_RETURN_CODE 77).  This command installs every Debian package the tests use
# (scripts/deps.sh), so a skip here means that promise was broken: it fails the run unless the
# test is in ALLOWED_SKIPS below, each with the reason it may skip.  ctest's own summary stays
# the last thing ctest prints; this verdict comes after it.
ALLOWED_SKIPS=(
	# consul_*_real: a real `consul agent -dev` (Debian has no consul package); registered only
	# when a consul binary is on PATH at configure time, so normally they do not even appear.
	'consul_.*_real'
)
# Entries run side by side (ctest -j2) except SERIAL ones: those that measure a latency, a
# cadence or a wall-clock bound (a neighbour's CPU use would be charged to regent).  Every test
# takes its ports from the harness's machine-wide allocator and its daemons' directories from
# its own H_TMP, so neighbours never share a port, a socket or a data directory.  (The fuzz
# smokes run in the parallel part: each is one libFuzzer process, one core, and they hold one
# RESOURCE_LOCK, so at most one runs at a time.)
SERIAL='^(e2e_.*|consul_latency|haproxy_churn|haproxy_routing|test_catalog|etcd_failover|etcd_recovery|migration_seed|drill_.*)$'
# run_ctest DIR [SKIP [ONLY]]: ctest in DIR on the entries matching the regex ONLY (default: all)
# but not SKIP, first the parallel part, then the SERIAL part, output shown and kept; fails on a
# failure or on a skip that ALLOWED_SKIPS does not cover.
run_ctest() {
	local dir=$1 skip=${2:-'^$'} only=${3:-'.*'} out rc=0 name bad=() pat ok par=() ser=()
	out=$(mktemp /tmp/regent-ctest.XXXXXX)
	while read -r name; do
		[[ "$name" =~ $only && ! "$name" =~ $skip ]] || continue
		if [[ "$name" =~ $SERIAL ]]; then ser+=("$name"); else par+=("$name"); fi
	done < <(cd "$dir" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p')
	if [ ${#par[@]} -gt 0 ]; then
		(cd "$dir" && ctest --output-on-failure --timeout 900 -j2 -R "^($(IFS='|'; echo "${par[*]}"))\$") \
			2>&1 | tee "$out" || rc=$?
	fi
	if [ ${#ser[@]} -gt 0 ]; then
		(cd "$dir" && ctest --output-on-failure --timeout 900 -R "^($(IFS='|'; echo "${ser[*]}"))\$") \
			2>&1 | tee -a "$out" || rc=$?
	fi
	# "  5/40 Test  #5: cli ......................***Skipped   0.02 sec"
	while read -r name; do
		ok=0
		for pat in "${ALLOWED_SKIPS[@]}"; do [[ "$name" =~ ^($pat)$ ]] && ok=1; done
		((ok)) || bad+=("$name")
	done < <(sed -n 's/^ *[0-9]*\/[0-9]* *Test *#[0-9]*: \([^ ]*\) .*\*\*\*Skipped.*/\1/p' "$out")
	rm -f "$out"
	if [ ${#bad[@]} -gt 0 ]; then
		echo "test.sh: FAILED: skipped tests not in ALLOWED_SKIPS (a package this command installs" \
		     "should have let them run; see their SKIPPED: lines): ${bad[*]}" >&2
		return 1
	fi
	return "$rc"
}

echo "== tests (RelWithDebInfo)"
run_ctest build

echo "== build (ASan+UBSan) in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DREGENT_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests (ASan+UBSan)"
# The ASan pass does not run every entry: it runs every unit test and, for each plugin and core
# module, the integration entries that drive it (its hostile-input paths included), so every
# module runs under the sanitizers at least once.  Left out: the entries that drive the same
# modules again to measure continuity or timing (the e2e pair, the drills, migration, churn,
# routing's 100 ms bounds, latency), those that test the harness or the packaging, and the
# valgrind runs; under ASan, which slows regent several-fold, they would measure the sanitizer,
# and they cost about 400 s that the 25-minute budget does not have.  The libFuzzer smokes (in
# the normal pass) run their harnesses with ASan+UBSan.  A new module needs an entry here.
ASAN_ENTRIES='^(test_(http|model|config|config_parse|log|loader|localset|catalog|catalog_gauges|history|helpers|annotations)|build_tree_plugins|cli'
ASAN_ENTRIES+='|docker_(decode|config|garbage|checks|burst|bigevent)|etcd_(unit|reload|source_afresh|bigvalue|failover)|consul_(util|reload|checkless|handover|afresh|limits|faults|settle)'
ASAN_ENTRIES+='|haproxy_(render|model|write|annot|slots|files|master_busy|handover|handback)|stats_(render|http|listener)|reload|metrics|ctl)$'
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export REGENT_NO_DLCLOSE=1
run_ctest build-asan '^$' "$ASAN_ENTRIES"
