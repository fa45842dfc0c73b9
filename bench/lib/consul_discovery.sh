# shellcheck shell=bash
# bench/lib/consul_discovery.sh - `bench/run consul-discovery`: one regent client discovering
# 1,000 services from tests/consul/consul_emulator.py with Consul's limit of 200 connections
# per client IP on (see consul_discovery.py for what is measured).

bench_consul_discovery() {
	local build="" services=1000 samples=5
	while [[ $# -gt 0 ]]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--services) services=$2; shift 2 ;;
		--samples) samples=$2; shift 2 ;;
		-h | --help)
			echo "bench/run consul-discovery [--build DIR] [--services N (1000)] [--samples K (5)]"
			return 0 ;;
		*) b_die "unknown option $1" ;;
		esac
	done
	bench_setup_build "$build"
	bench_need_plugins consul testsink
	bench_results_paths consul-discovery
	rm -f "$B_ROWS" "$B_CSV"
	"$BENCH_PY" "$BENCH_DIR/lib/consul_discovery.py" --regent "$REGENT_BIN" \
		--plugins "$REGENT_PLUGIN_DIR" --services "$services" --samples "$samples" --out "$B_MD"
	b_log "written $B_MD"
}
