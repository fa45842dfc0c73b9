# shellcheck shell=bash
# bench/lib/first_check.sh - `bench/run first-check`: when haproxy runs a joining server's
# first health check, by the way the server joins (regent's free slot, or `add server`), and
# whether the joiner gets a request before it.  haproxy alone (no regent, no dockerd): the
# numbers behind docs/haproxy.md "When the joiner's first check runs".

bench_first_check() {
	local inter=2000 n=3 out=""
	while [[ $# -gt 0 ]]; do
		case $1 in
		--inter-ms) inter=$2; shift 2 ;;
		-n) n=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		-h | --help)
			echo "bench/run first-check [--inter-ms MS (2000)] [-n JOINS (3) per path] [--out DIR]"
			return 0 ;;
		*) b_die "unknown option $1" ;;
		esac
	done
	command -v haproxy >/dev/null || b_die "no haproxy in PATH"
	bench_results_paths first-check "$out"
	# the machine and the load at the start (no regent build is involved)
	B_MACHINE=$(mktemp); BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-} bench_machine "$B_MACHINE"
	local reserved
	reserved=$(mktemp)
	b_log "first checks: $n joins per path, check inter $inter ms"
	"$BENCH_PY" "$BENCH_DIR/lib/first_check.py" "$B_ROWS" "$reserved" "$REPO_DIR/tests/harness" \
		--inter-ms "$inter" -n "$n" || b_log "first_check.py failed (its rows may be missing)"
	rm -f "$reserved"
	bench_report "first-check: a joining server's first health check in haproxy $(haproxy -v | awk 'NR == 1 { print $3 }')"
	rm -f "$B_MACHINE"
}
