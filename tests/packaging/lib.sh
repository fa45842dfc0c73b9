# lib.sh - helpers shared by the packaging tests (sourced).
# Needs REGENT_BUILD_DIR (set by tests/packaging/CMakeLists.txt) and the
# variables regent_script_test sets.
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_SOURCE_DIR:?}" "${REGENT_BUILD_DIR:?}"
T=$(mktemp -d /tmp/regent-pkg.XXXXXX)
PIDS=()
# PIDS: children started with & and not waited for yet (an unwaited child's pid stays ours,
# a zombie, so killing those at exit never hits a stranger); wait_pid forgets a waited one.
cleanup() {
	for p in "${PIDS[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
	rm -rf "$T"
}
wait_pid() {
	local p=$1 rc q keep=()
	wait "$p"; rc=$?
	for q in "${PIDS[@]}"; do [ "$q" != "$p" ] && keep+=("$q"); done
	PIDS=("${keep[@]}")
	return $rc
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# skip REASON: a part that could not run (a missing tool): the test ends skipped (77), not passed
SKIPPED=""
skip() { echo "SKIPPED: $*"; SKIPPED="${SKIPPED:+$SKIPPED; }$*"; }
summary() {
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ] || return 1
	if [ -n "$SKIPPED" ]; then echo "skipped: $SKIPPED"; return 77; fi
	return 0
}
# wait_for SECONDS CMD...: polls every 20 ms
wait_for() {
	local deadline=$(($(date +%s%N) + $1 * 1000000000)); shift
	while [ "$(date +%s%N)" -lt "$deadline" ]; do "$@" && return 0; sleep 0.02; done
	"$@"
}
cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$REGENT_BUILD_DIR/CMakeCache.txt"; }

# The build's install layout: PREFIX, LIBDIR (relative), PLUGINDIR
# (absolute, compiled into regent as its default).
BUILD_PLUGIN_DIR=$REGENT_PLUGIN_DIR
PREFIX=$(cache_get CMAKE_INSTALL_PREFIX)
LIBDIR=$(cache_get CMAKE_INSTALL_LIBDIR)
PLUGINDIR=$(cache_get REGENT_PLUGIN_DIR)

# install_destdir DIR: cmake --install of this build into DIR.
install_destdir() {
	DESTDIR=$1 cmake --install "$REGENT_BUILD_DIR" >"$T/install.log" 2>&1
}

# The in-tree plugins this build made (the test-only ones excluded).
built_plugins() {
	local f n
	for f in "$BUILD_PLUGIN_DIR"/*.so; do
		n=${f##*/}; n=${n%.so}
		[ -f "$REGENT_SOURCE_DIR/plugins/$n/CMakeLists.txt" ] && echo "$n"
	done
}
