# shellcheck shell=bash
# bench/lib/propagation.sh - `bench/run propagation`: how fast haproxy follows containers.
#
# The seed's scenario (tests/e2e/scenario.sh): a registry (etcd, or the Consul emulator),
# two backend "hosts" (own dockerd + regent with source docker), a client regent with a
# managed haproxy.  Containers are started and killed one at a time; for each event the time
# from Docker's own event timestamp to haproxy's runtime state showing the change is taken
# from a poller on haproxy's admin socket.

prop_usage() {
	cat <<'EOF2'
usage: bench/run propagation [options]
  -n N               events per store: N/2 container starts + N/2 kills (default 200)
  --store S          etcd, consul (the emulator) or both (default both)
  --reload-every K   of a pool of 2K containers (cycled), 2 get a service of their own: their
                     every start needs a new listen section (a reload); the others join the
                     `whoami` service, whose free slots take the fast path (default 5)
  --poll-ms MS       admin-socket poll interval (default 2)
  --debounce D       set [agent] debounce on the client agent (default: the agent's, 50ms)
  --floor-n N        samples for each floor measurement (default 100)
  --target-ms MS     fast-path p99 target (default 15, issue 15)
  --build DIR        regent build dir (default $REGENT_BUILD_DIR or <repo>/build)
  --out DIR          results dir (default bench/results)
EOF2
}

bench_propagation() {
	local n=200 store=both every=5 poll=2 debounce="" floor_n=100 target=15 build="" out="" rows=""
	while [[ $# -gt 0 ]]; do
		case $1 in
		-n) n=$2; shift 2 ;;
		--store) store=$2; shift 2 ;;
		--reload-every) every=$2; shift 2 ;;
		--poll-ms) poll=$2; shift 2 ;;
		--debounce) debounce=$2; shift 2 ;;
		--floor-n) floor_n=$2; shift 2 ;;
		--target-ms) target=$2; shift 2 ;;
		--build) build=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		--rows) rows=$2; shift 2 ;; # internal: append rows here, no report
		-h | --help) prop_usage; return 0 ;;
		*) prop_usage >&2; b_die "unknown option $1" ;;
		esac
	done
	[[ $EUID -eq 0 ]] || b_die "propagation needs root (it starts dockerd)"
	bench_setup_build "$build"
	bench_need_plugins docker etcd consul haproxy stats
	local common=(-n "$n" --reload-every "$every" --poll-ms "$poll" --floor-n "$floor_n"
		--target-ms "$target" --build "$BENCH_BUILD_DIR")
	[[ -n "$debounce" ]] && common+=(--debounce "$debounce")
	if [[ -z "$rows" ]]; then
		bench_results_paths propagation "$out"
		B_MACHINE=$(mktemp); bench_machine "$B_MACHINE"
		local s stores=("$store")
		[[ "$store" == both ]] && stores=(etcd consul)
		for s in "${stores[@]}"; do
			b_log "propagation with store $s (${n} events)"
			"$BENCH_DIR/run" propagation "${common[@]}" --store "$s" --rows "$B_ROWS" ||
				b_log "propagation with store $s failed (its rows may be missing)"
		done
		local title="propagation: docker event -> haproxy runtime state, $n events per store"
		[[ -n "$debounce" ]] && title+=", client debounce $debounce"
		bench_report "$title"
		rm -f "$B_MACHINE"
		return 0
	fi
	prop_one "$store" "$n" "$every" "$poll" "$debounce" "$floor_n" "$target" "$rows"
}

prop_one() {
	local store=$1 n=$2 every=$3 poll=$4 debounce=$5 floor_n=$6 target=$7 rows=$8
	[[ "$store" == etcd || "$store" == consul ]] || b_die "--store etcd|consul|both"
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/harness/lib.sh"
	harness_init
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/e2e/scenario.sh"
	if [[ -n "$debounce" ]]; then
		eval "sc_write_configs_orig() $(declare -f write_configs | tail -n +2)"
		write_configs() {
			sc_write_configs_orig
			sed -i "0,/^node = client-1\$/s//node = client-1\ndebounce = $BENCH_DEBOUNCE/" "$H_TMP/client.ini"
		}
		BENCH_DEBOUNCE=$debounce
	fi
	local d=$H_TMP/prop
	mkdir -p "$d"
	b_log "bringing up the scenario ($store registry, 2 dockerd, 3 regents, haproxy)"
	scenario_up "$store" || b_die "scenario did not come up"
	whoami_start 1 base1 >/dev/null || b_die "base container 1"
	whoami_start 2 base2 >/dev/null || b_die "base container 2"
	local adm
	wait_for --timeout 20 grep -q 'stats socket' "$H_TMP/haproxy/regent.cfg" >/dev/null ||
		b_die "no admin socket in $H_TMP/haproxy/regent.cfg"
	adm=$(awk '$1 == "stats" && $2 == "socket" { print $3; exit }' "$H_TMP/haproxy/regent.cfg")
	b_log "admin socket $adm"

	# Floors first, on the same daemons, while nothing else happens.
	b_log "floors ($floor_n samples each)"
	"$BENCH_PY" "$BENCH_DIR/lib/floors.py" admin-rtt "$adm" "$floor_n" "$d/floor-admin.json" ||
		b_log "admin-rtt floor failed"
	if [[ "$store" == etcd ]]; then
		"$BENCH_PY" "$BENCH_DIR/lib/floors.py" etcd-watch "$SC_REGISTRY" "$floor_n" "$d/floor-etcd.json" ||
			b_log "etcd floor failed"
	else
		"$BENCH_PY" "$BENCH_DIR/lib/floors.py" consul-block "$SC_REGISTRY" "$floor_n" "$d/floor-consul.json" ||
			b_log "consul floor failed"
	fi

	local stop=$d/stop h
	for h in 1 2; do
		daemon_start "dockev-b$h" "$BENCH_PY" "$BENCH_DIR/lib/dockev.py" "$(docker_sock "b$h")" \
			"$d/events-b$h.jsonl" --stop-file "$stop" --max-seconds 1200
	done
	daemon_start hapoll "$BENCH_PY" "$BENCH_DIR/lib/hapoll.py" "$adm" "$d/poll.jsonl" \
		--interval-ms "$poll" --stop-file "$stop" --max-seconds 1200
	wait_for --timeout 10 test -s "$d/poll.jsonl" >/dev/null || b_die "poller wrote nothing"
	wait_for --timeout 10 grep -q ready "$H_TMP/dockev-b1.log" >/dev/null
	wait_for --timeout 10 grep -q ready "$H_TMP/dockev-b2.log" >/dev/null

	b_log "$n events: start a container, wait until haproxy routes to it, kill it, wait until it does not"
	"$BENCH_PY" "$BENCH_DIR/lib/prop_drive.py" --sock "$(docker_sock b1)" --sock "$(docker_sock b2)" \
		--addr 127.0.0.2 --addr 127.0.0.3 --image "$SC_IMAGE" --events "$n" \
		--reload-every "$every" --poll "$d/poll.jsonl" --plan "$d/plan.tsv" \
		--reserved "$H_TMP/.h/ports" --harness-dir "$REPO_DIR/tests/harness" ||
		b_log "the driver failed"
	sleep 0.5
	curl -s --noproxy '*' "http://127.0.0.1:$SC_REGENT_STATS_PORT/metrics" > "$d/client-metrics.txt"
	touch "$stop"
	wait_for --timeout 10 grep -q '"rtt"' "$d/poll.jsonl" >/dev/null
	local lbl="$store"
	[[ "$store" == consul ]] && lbl="consul (emulator)"
	local dms=50
	if [[ -n "$debounce" ]]; then
		case $debounce in
		*ms) dms=${debounce%ms} ;;
		*s) dms=$(awk -v v="${debounce%s}" 'BEGIN { print v * 1000 }') ;;
		*) dms=$(awk -v v="$debounce" 'BEGIN { print v * 1000 }') ;;
		esac
	fi
	"$BENCH_PY" "$BENCH_DIR/lib/prop_analyze.py" "$d" "$store" "$target" "$rows" "$lbl" "$dms" ||
		b_log "analysis failed"
	prop_regent_metrics "$d/client-metrics.txt" "$lbl" >> "$rows"
	if [[ -n "${BENCH_KEEP_RAW:-}" ]]; then
		mkdir -p "$BENCH_KEEP_RAW/$store" && cp -r "$d"/. "$H_TMP"/*.log "$BENCH_KEEP_RAW/$store/"
	fi
}

# The client agent's own view: regent_propagation_seconds (registry change entering the
# client agent -> haproxy sink applied), its mean, and haproxy's runtime vs reload counts.
prop_regent_metrics() {
	local f=$1 lbl=$2
	"$BENCH_PY" - "$f" "$lbl" <<'EOF2'
import json, re, sys
txt = open(sys.argv[1]).read()
def val(pat):
    m = re.search(r'^' + pat + r' ([0-9.e+-]+)$', txt, re.M)
    return float(m.group(1)) if m else None
s = val(r'regent_propagation_seconds_sum\{plugin="haproxy"\}')
c = val(r'regent_propagation_seconds_count\{plugin="haproxy"\}')
rows = []
if s is not None and c:
    rows.append({"metric": "client agent: registry change -> haproxy sink applied (regent_propagation_seconds, mean)",
                 "n": int(c), "value": 1000 * s / c, "unit": "ms"})
for name, what in (("regent_haproxy_runtime_updates_total", "haproxy runtime API updates (client agent)"),
                   ("regent_haproxy_reloads_total", "haproxy reloads (client agent)")):
    v = val(name + r'\{plugin="haproxy"\}')
    if v is not None:
        rows.append({"metric": what, "value": int(v), "unit": "count"})
for r in rows:
    r.update({"bench": "propagation", "section": sys.argv[2]})
    print(json.dumps(r))
EOF2
}
