# shellcheck shell=bash
# bench/lib/checks.sh - `bench/run checks`: the register-side agent's CPU for 1,000 checked
# instances (agent-run checks, plugins/docker/checks.c; tcp by default, --check http for http)
# at a 2 s interval.  One private
# dockerd (host networking, loopback): C containers of P ports each (busybox httpd on every
# port), every port an instance with `regent.check=tcp` (or http:/); one regent with [source docker] and
# [store teststore].  Measured once every instance passed its check and was registered: the
# agent's CPU over a window, as a share of one core, against the same agent with the same
# containers and no check (its idle baseline).

bench_checks() {
	local build="" containers=20 ports=50 interval=2s window=60 kind=tcp
	while [[ $# -gt 0 ]]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--containers) containers=$2; shift 2 ;;
		--ports) ports=$2; shift 2 ;;
		--interval) interval=$2; shift 2 ;;
		--window) window=$2; shift 2 ;;
		--check) kind=$2; shift 2 ;;
		-h | --help)
			echo "bench/run checks [--build DIR] [--containers C (20)] [--ports P (50)] [--interval 2s] [--window S (60)] [--check tcp|http (tcp)]"
			return 0 ;;
		*) b_die "unknown option $1" ;;
		esac
	done
	[[ $EUID -eq 0 ]] || b_die "checks needs root (it starts dockerd)"
	bench_setup_build "$build"
	bench_need_plugins docker teststore
	bench_results_paths checks
	export REGENT_TEST_DIR=$REPO_DIR/tests
	# shellcheck source=../../tests/harness/lib.sh
	source "$REPO_DIR/tests/harness/lib.sh"
	harness_init || b_die "harness_init failed"
	B_MACHINE=$H_TMP/machine.md; bench_machine "$B_MACHINE"
	local sock n=$((containers * ports)) c p base img=regent/whoami:1
	sock=$(dockerd_start d1) || b_die "dockerd did not start"
	image_build_whoami d1 "$img" || b_die "image build failed"
	b_log "starting $containers containers x $ports ports ($n instances)"
	# The harness's allocator (free_port), in one process: one python start per port takes
	# seconds on a loaded machine.
	local -a portv=()
	mapfile -t portv < <("$H_PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import hutil
for _ in range(int(sys.argv[3])):
    hutil.free_port("127.0.0.1", sys.argv[2])' "$H_LIB_DIR" "$H_TMP/.h/ports" "$n")
	[[ ${#portv[@]} -eq $n ]] || b_die "only ${#portv[@]} of $n ports allocated"
	for ((c = 0; c < containers; c++)); do
		local -a args=() cmd="mkdir -p /w; echo ok > /w/index.html;"
		for ((p = 0; p < ports; p++)); do
			base=${portv[c * ports + p]}
			args+=(--expose "$base")
			cmd+=" httpd -p 127.0.0.1:$base -h /w;"
		done
		cmd+=" exec sleep 100000"
		docker_cmd d1 run -d --network host --name "c$c" "${args[@]}" -l regent.service=bench \
			-l "regent.check=$([[ $kind == http ]] && echo http:/ || echo tcp)" -l "regent.check.interval=$interval" --entrypoint /bin/sh "$img" \
			-c "$cmd" >/dev/null || b_die "container c$c did not start"
	done
	local ini=$H_TMP/r.ini store=$H_TMP/r.store
	printf '[agent]\nnode = b1\nhost_ip = 127.0.0.1\nstate_dir = %s\n\n[source docker]\nsocket = %s\nallow_loopback = true\n\n[store teststore]\nlog = %s\n' \
		"$ini.state" "$sock" "$store" > "$ini"
	: > "$store"
	daemon_start regent "$REGENT_BIN" -c "$ini" --plugin-dir "$REGENT_PLUGIN_DIR" --log-level info
	local t0 up
	t0=$(date +%s)
	wait_for --timeout 600 bash -c "[[ \$(grep -c '^register ' '$store') -ge $n ]]" ||
		b_die "only $(grep -c '^register ' "$store") of $n instances registered"
	up=$(( $(date +%s) - t0 ))
	b_log "all $n instances passed their checks and registered after ${up} s; measuring ${window} s"
	local pid c0 c1 w0 w1 fails d0
	pid=$(daemon_pid regent)
	# Deregistrations inside the measured window only (flaps while all were coming up are not
	# the steady state this row is about).
	d0=$(grep -c '^deregister ' "$store")
	c0=$(cpu_ns "$pid"); w0=$(date +%s%N)
	sleep "$window"
	c1=$(cpu_ns "$pid"); w1=$(date +%s%N)
	fails=$(( $(grep -c '^deregister ' "$store") - d0 ))
	local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
	"$BENCH_PY" - "$c0" "$c1" "$w0" "$w1" "$n" "$interval" "$up" "$fails" "$load" "$kind" <<'EOF' >> "$B_ROWS"
import json, sys
c0, c1, w0, w1, n = (int(x) for x in sys.argv[1:6])
interval, up, fails, load, kind = sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), sys.argv[9], sys.argv[10]
share = 100.0 * (c1 - c0) / (w1 - w0)
sec = "%d checked instances (%s), interval %s" % (n, kind, interval)
def row(**r):
    r["bench"] = "checks"; r["section"] = sec; print(json.dumps(r))
row(metric="agent CPU, steady state (share of one core)", value=share, unit="%",
    target="<= 10 %", missed="met" if share <= 10 else "MISSED",
    note="over %.0f s; load average at the end %s" % ((w1 - w0) / 1e9, load))
isec = float(interval[:-2]) / 1000 if interval.endswith("ms") else float(interval.rstrip("s"))
probes = n * ((w1 - w0) / 1e9) / isec
row(metric="agent CPU per probe (CPU time / probes expected in the window)",
    value=(c1 - c0) / 1e3 / probes, unit="us", note="%.0f probes" % probes)
row(metric="from agent start to all registered (each after rise = 2 passes)", value=up, unit="s")
row(metric="instances deregistered during the measured window (a check failing under load)", value=fails,
    unit="count", target="0", missed="met" if fails == 0 else "MISSED")
EOF
	daemon_stop regent
	bench_report "agent-run checks: $n instances"
}
