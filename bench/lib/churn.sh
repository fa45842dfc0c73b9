# shellcheck shell=bash
# bench/lib/churn.sh - `bench/run churn`: client traffic through haproxy while containers
# start and die.  The seed's scenario (tests/e2e/scenario.sh) with BASE long-lived whoami
# containers; wrk runs DURATION seconds against haproxy three times: with no churn, while a
# container starts every INTERVAL and each one is SIGKILLed LIFETIME intervals later, and the
# same with `docker stop` (SIGTERM, 1 s of grace) instead of SIGKILL.

churn_usage() {
	cat <<'EOF2'
usage: bench/run churn [options]
  --duration S       seconds of each wrk run (default 60)
  --interval D       a container starts (and one dies) every D ms (default 250)
  --lifetime K       each churned container ends K intervals after its start (default 4); two
                     churn runs: ended by SIGKILL (docker kill) and by docker stop (the
                     container serves 1 s more after SIGTERM, like a graceful app)
  --base N           long-lived containers behind haproxy (default 4)
  --threads T        wrk threads (default 2)
  --connections C    wrk connections (default 4: enough to keep the busybox backends busy
                     without overflowing their accept queues, which would measure them)
  --store S          etcd or consul (the emulator) (default etcd)
  --build DIR        regent build dir (default $REGENT_BUILD_DIR or <repo>/build)
  --out DIR          results dir (default bench/results)
EOF2
}

ch_metric() { # FILE NAME -> value of NAME{plugin="haproxy"}
	awk -v n="$2{plugin=\"haproxy\"}" '$1 == n { print $2 }' "$1"
}

bench_churn() {
	local duration=60 interval=250 lifetime=4 base=4 threads=2 conns=4 store=etcd build="" out=""
	while [[ $# -gt 0 ]]; do
		case $1 in
		--duration) duration=$2; shift 2 ;;
		--interval) interval=${2%ms}; shift 2 ;;
		--lifetime) lifetime=$2; shift 2 ;;
		--base) base=$2; shift 2 ;;
		--threads) threads=$2; shift 2 ;;
		--connections) conns=$2; shift 2 ;;
		--store) store=$2; shift 2 ;;
		--build) build=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		-h | --help) churn_usage; return 0 ;;
		*) churn_usage >&2; b_die "unknown option $1" ;;
		esac
	done
	[[ $EUID -eq 0 ]] || b_die "churn needs root (it starts dockerd)"
	command -v wrk >/dev/null || b_die "wrk not found (Debian package wrk: apt-get install wrk)"
	bench_setup_build "$build"
	bench_need_plugins docker "$store" haproxy stats
	bench_results_paths churn "$out"
	B_MACHINE=$(mktemp); bench_machine "$B_MACHINE"
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/harness/lib.sh"
	harness_init
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/e2e/scenario.sh"
	b_log "bringing up the scenario ($store registry, 2 dockerd, 3 regents, haproxy)"
	scenario_up "$store" || b_die "scenario did not come up"
	local i ids=() want
	for ((i = 1; i <= base; i++)); do
		ids+=("$(whoami_start $((1 + i % 2)) "base$i")") || b_die "base container $i"
	done
	want=$(printf '%s\n' "${ids[@]}" | cut -c1-12 | sort)
	ch_all() { [[ "$(sc_ids $((base * 6)))" == "$want" ]]; }
	wait_for --timeout 30 ch_all >/dev/null || b_die "haproxy does not route to the $base base containers"
	local pool=$((lifetime + 12)) # a stopped container is restarted 3 s later at the earliest
	b_log "creating a pool of $pool containers for the churn"
	"$BENCH_PY" "$BENCH_DIR/lib/churn_drive.py" create --sock "$(docker_sock b1)" --sock "$(docker_sock b2)" \
		--addr 127.0.0.2 --addr 127.0.0.3 --image "$SC_IMAGE" --pool "$pool" --reserved "$H_TMP/.h/ports" \
		--harness-dir "$REPO_DIR/tests/harness" --state "$H_TMP/pool.json" || b_die "pool"
	local url=http://127.0.0.1:$SC_HAPROXY_PORT/ mode m0 m1 adm
	adm=$(awk '$1 == "stats" && $2 == "socket" { print $3; exit }' "$H_TMP/haproxy/regent.cfg")
	for mode in none kill stop; do
		curl -s --noproxy '*' "http://127.0.0.1:$SC_REGENT_STATS_PORT/metrics" > "$H_TMP/m0-$mode.txt"
		haproxy_admin_cmd "$adm" "show stat" > "$H_TMP/s0-$mode.csv" 2>/dev/null
		b_log "wrk ${duration}s, $threads threads, $conns connections; churn: $mode"
		local drv=""
		if [[ "$mode" != none ]]; then
			"$BENCH_PY" "$BENCH_DIR/lib/churn_drive.py" run --state "$H_TMP/pool.json" --interval-ms "$interval" \
				--lifetime "$lifetime" --duration "$duration" --action "$mode" --out "$H_TMP/churn-$mode.json" &
			drv=$!
		fi
		wrk -t "$threads" -c "$conns" -d "${duration}s" --timeout 5s -s "$BENCH_DIR/lib/churn.lua" "$url" \
			> "$H_TMP/wrk-$mode.txt" 2>&1 || b_log "wrk failed: $(tail -3 "$H_TMP/wrk-$mode.txt")"
		[[ -n "$drv" ]] && wait "$drv"
		sleep 1
		curl -s --noproxy '*' "http://127.0.0.1:$SC_REGENT_STATS_PORT/metrics" > "$H_TMP/m1-$mode.txt"
		haproxy_admin_cmd "$adm" "show stat" > "$H_TMP/s1-$mode.csv" 2>/dev/null
		m0=$(ch_metric "$H_TMP/m0-$mode.txt" regent_haproxy_reloads_total)
		m1=$(ch_metric "$H_TMP/m1-$mode.txt" regent_haproxy_reloads_total)
		echo "$mode reloads $(( ${m1%.*} - ${m0%.*} ))" >> "$H_TMP/reloads"
		m0=$(ch_metric "$H_TMP/m0-$mode.txt" regent_haproxy_runtime_updates_total)
		m1=$(ch_metric "$H_TMP/m1-$mode.txt" regent_haproxy_runtime_updates_total)
		echo "$mode runtime $(( ${m1%.*} - ${m0%.*} ))" >> "$H_TMP/reloads"
	done
	"$BENCH_PY" - "$H_TMP" "$duration" "$interval" "$lifetime" "$base" "$store" <<'EOF2' >> "$B_ROWS"
import json, sys
d, duration, interval, lifetime, base, store = sys.argv[1:7]
extra = {}
for line in open(d + "/reloads"):
    mode, what, v = line.split()
    extra[(mode, what)] = int(v)
def row(**r):
    r["bench"] = "churn"; print(json.dumps(r))
res = {}
SEC = {"none": "no churn",
       "kill": "churn: a start + a SIGKILL every %s ms" % interval,
       "stop": "churn: a start + a docker stop (1 s grace) every %s ms" % interval}
for mode in ("none", "kill", "stop"):
    txt = open("%s/wrk-%s.txt" % (d, mode)).read()
    line = [l for l in txt.splitlines() if l.startswith("RESULT ")]
    if not line:
        row(section=mode, metric="wrk produced no result", note=txt[-200:].replace("\n", " "))
        continue
    r = json.loads(line[0][7:])
    res[mode] = r
    sec = SEC[mode]
    errs = r["connect"] + r["read"] + r["write"] + r["timeout"]
    non2xx = r["requests"] - r["n2xx"]
    tgt = {"target": "0", "missed": "met" if errs == 0 else "MISSED"} if mode != "none" else {}
    row(section=sec, metric="requests (req/s)", value=r["requests"], unit="requests",
        note="%.0f req/s" % (r["requests"] / (r["duration_us"] / 1e6)))
    row(section=sec, metric="socket errors (connect/read/write/timeout)", value=errs, unit="errors",
        note="%d/%d/%d/%d" % (r["connect"], r["read"], r["write"], r["timeout"]), **tgt)
    tgt = {"target": "0", "missed": "met" if non2xx == 0 else "MISSED"} if mode != "none" else {}
    row(section=sec, metric="non-2xx responses", value=non2xx, unit="responses",
        note="3xx %d, 4xx %d, 5xx %d" % (r["n3xx"], r["n4xx"], r["n5xx"]), **tgt)
    row(section=sec, metric="latency", p50=r["p50_us"] / 1000.0, p90=r["p90_us"] / 1000.0,
        p99=r["p99_us"] / 1000.0, max=r["max_us"] / 1000.0, unit="ms", n=r["requests"])
    # haproxy's own view of the whoami backend during the run (its stats counters, deltas)
    def be(fn):
        try:
            lines = open(fn).read().splitlines()
            hdr = lines[0].lstrip("# ").split(",")
            for l in lines[1:]:
                f = l.split(",")
                if len(f) >= len(hdr) - 1 and f[0] == "whoami" and f[1] == "BACKEND":
                    return {k: int(v) if v.isdigit() else 0 for k, v in zip(hdr, f)}
        except (OSError, IndexError):
            pass
        return None
    b0, b1 = be("%s/s0-%s.csv" % (d, mode)), be("%s/s1-%s.csv" % (d, mode))
    reloaded = extra.get((mode, "reloads"), 0) > 0
    if b0 and b1 and reloaded:
        row(section=sec, metric="haproxy backend: retries / redispatches / conn errors / resp errors / server aborts",
            value="n/a", note="haproxy reloaded during the run (slots grew): its counters restarted")
    elif b0 and b1:
        dd = {k: b1.get(k, 0) - b0.get(k, 0) for k in ("wretr", "wredis", "econ", "eresp", "srv_abrt", "cli_abrt", "hrsp_5xx")}
        row(section=sec, metric="haproxy backend: retries / redispatches / conn errors / resp errors / server aborts",
            value="%d / %d / %d / %d / %d" % (dd["wretr"], dd["wredis"], dd["econ"], dd["eresp"], dd["srv_abrt"]),
            unit="count", note="client aborts %d, 5xx sent %d" % (dd["cli_abrt"], dd["hrsp_5xx"]))
    row(section=sec, metric="haproxy changes by the client agent: runtime API / reloads",
        value="%d / %d" % (extra.get((mode, "runtime"), 0), extra.get((mode, "reloads"), 0)), unit="count")
    try:
        c = json.load(open("%s/churn-%s.json" % (d, mode)))
    except (OSError, ValueError):
        continue
    row(section=sec, metric="containers started / ended during the run",
        value="%d / %d" % (c["starts"], c["kills"]), unit="count",
        note="%d ticks, each ended %s ticks after its start; %d Docker API errors; cadence late by %.1fs"
             % (c["ticks"], lifetime, len(c["errors"]), c["late_s"]))
EOF2
	bench_report "churn: wrk ${duration}s through haproxy ($store), $base long-lived backends; no churn, then a container start + end every ${interval} ms"
	rm -f "$B_MACHINE"
}
