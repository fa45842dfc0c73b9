# shellcheck shell=bash
# bench/lib/soak.sh - `bench/run soak`: does an agent that runs for a long time keep its
# memory, descriptors, threads and haproxy processes, and its catalog right?
#
# One etcd (or a Consul agent: --store consul); a register agent (the synthsource plugin: INSTANCES instances in SERVICES services,
# one of them moved to another port every CHURN) and a client agent (store etcd + sink haproxy,
# manage = true + sink stats) watching them.  For DURATION: both agents get SIGHUP every HUP
# with one key of their file changed (a plugin instance replaced each time), a service of 5
# instances is written into etcd and deleted again every NEWSVC (haproxy reloads), /metrics is
# scraped every 5 s.  bench/lib/soak_tool.py samples and drives; the rows compare the figures
# after the warm-up with those at the end, against targets fixed before any run.

soak_usage() {
	cat <<'EOF2'
usage: bench/run soak [options]
  --duration D       how long (default 30m; s, m or h)
  --instances N      the register agent's instances (default 2000)
  --services N       in N services (default 200)
  --churn D          one instance moves every D (default 100ms)
  --hup D            SIGHUP both agents every D, one key changed (default 60s; 0: never)
  --new-service D    a service added and removed every D (default 30s; 0: never)
  --sample D         sample every D (default 10s)
  --warmup D         the figures compared start after D (default 10% of the run, at least 60s)
  --store S          etcd (default) or consul: tests/consul/consul_emulator.py, or a real
                     `consul agent -dev` with REGENT_CONSUL_MODE=real
  --build DIR        regent build dir (default $REGENT_BUILD_DIR or <repo>/build)
  --out DIR          results dir (default bench/results)
  --smoke            a short run (the test suite's bench_soak_smoke): the growth rows are
                     shown but not judged (a minute is still the warm-up); the catalog,
                     reload, haproxy-process and error rows are
Exits 1 when a target is missed.
EOF2
}

soak_secs() { # 30m / 90s / 1h / 100ms -> seconds (ms rounded up)
	local v=$1
	case $v in
	*ms) echo $(((${v%ms} + 999) / 1000)) ;;
	*s) echo "${v%s}" ;;
	*m) echo $((${v%m} * 60)) ;;
	*h) echo $((${v%h} * 3600)) ;;
	*) echo "$v" ;;
	esac
}

soak_on_exit() {
	local rc=$?
	bench_track_masters
	harness_cleanup
	exit "$rc"
}

bench_soak() {
	local duration=30m ninst=2000 nsvc=200 churn=100ms hup=60s newsvc=30s sample=10s warmup="" build="" out="" smoke=False store=etcd
	while [[ $# -gt 0 ]]; do
		case $1 in
		--duration) duration=$2; shift 2 ;;
		--instances) ninst=$2; shift 2 ;;
		--services) nsvc=$2; shift 2 ;;
		--churn) churn=$2; shift 2 ;;
		--hup) hup=$2; shift 2 ;;
		--new-service) newsvc=$2; shift 2 ;;
		--sample) sample=$2; shift 2 ;;
		--warmup) warmup=$2; shift 2 ;;
		--build) build=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		--smoke) smoke=True; shift ;;
		--store) store=$2; shift 2 ;;
		-h | --help) soak_usage; return 0 ;;
		*) soak_usage >&2; return 2 ;;
		esac
	done
	local d
	for d in "$duration" "$hup" "$newsvc" "$sample" ${warmup:+"$warmup"}; do
		[[ "$d" =~ ^[0-9]+(s|m|h)?$ ]] || b_die "not a duration: $d (e.g. 90s, 30m, 2h)"
	done
	[[ "$churn" =~ ^[0-9]+(ms|s)$ ]] || b_die "--churn: a duration like 100ms or 1s"
	if ! [[ "$ninst" =~ ^[0-9]+$ && "$nsvc" =~ ^[0-9]+$ ]] || ((nsvc < 1 || ninst < nsvc)); then
		b_die "--instances and --services: numbers, instances >= services >= 1"
	fi
	local dur_s hup_s new_s sample_s warm_s
	dur_s=$(soak_secs "$duration"); hup_s=$(soak_secs "$hup"); new_s=$(soak_secs "$newsvc")
	sample_s=$(soak_secs "$sample")
	if [[ -n "$warmup" ]]; then warm_s=$(soak_secs "$warmup"); else
		warm_s=$((dur_s / 10)); ((warm_s >= 60)) || warm_s=60
	fi
	((sample_s >= 1)) || b_die "--sample: at least 1s"
	[[ "$store" == etcd || "$store" == consul ]] || b_die "--store: etcd or consul"

	bench_setup_build "$build"
	bench_need_plugins "$store" haproxy stats synthsource
	command -v haproxy >/dev/null || b_die "haproxy not installed (apt-get install haproxy)"
	[[ "$store" != etcd ]] || command -v etcd >/dev/null || b_die "etcd not installed (apt-get install etcd-server)"
	bench_results_paths "soak-$store" "$out"
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/harness/lib.sh"
	local ep base W store_sec reg_toggle
	if [[ "$store" == consul ]]; then
		export REGENT_TEST_DIR=$REPO_DIR/tests
		# shellcheck source=/dev/null
		source "$REPO_DIR/tests/consul/consul_lib.sh"
		consul_test_init >/dev/null
	else
		harness_init
	fi
	trap 'soak_on_exit' EXIT
	W=$H_TMP/soak
	mkdir -p "$W/hx"
	if [[ "$store" == consul ]]; then
		agent_start >/dev/null || b_die "the Consul agent did not start"
		ep=$AGENT_URL
		store_sec=$(printf '[store consul]\naddress = %s\n' "$ep")
		reg_toggle='["store consul", "timeout", "10s", "11s"]'
	else
		etcd_start soak >/dev/null || b_die "etcd"
		ep=$(etcd_endpoint soak)
		store_sec=$(printf '[store etcd]\nendpoints = %s\nprefix    = /fleet\n' "$ep")
		reg_toggle='["store etcd", "check_interval", "1s", "2s"]'
	fi
	# The services' listeners: nsvc consecutive ports (synthsource's service_port_base), and
	# 8 more for the services the soak adds.
	base=$("$BENCH_PY" "$BENCH_DIR/lib/soak_tool.py" base "$((nsvc + 8))" 12000 19999 "$H_TMP/.h/ports") ||
		b_die "no $((nsvc + 8)) consecutive free ports in 12000-19999"

	cat > "$W/register.ini" <<EOF2
[agent]
node = soak-register
state_dir = $W/state-register
control_socket = $W/register.sock

[source synthsource]
count    = $ninst
services = $nsvc
churn    = $churn
service_port_base = $base

$store_sec
$([[ $store == etcd ]] && echo "check_interval = 1s" || echo "timeout = 10s")
EOF2
	local hsp rsp
	hsp=$(free_port); rsp=$(free_port)
	cat > "$W/client.ini" <<EOF2
[agent]
node = soak-client
state_dir = $W/state-client
control_socket = $W/client.sock

$store_sec

[sink haproxy]
manage          = true
keep_running    = false ; stopped with regent at the end
config_file     = $W/hx/regent.cfg
bind_address    = 127.0.0.1
stats           = 127.0.0.1:$hsp
check_interval  = 24h     ; nothing listens behind the synthetic instances: check rarely
reload_interval = 200ms

[sink stats]
listen = 127.0.0.1:$rsp
EOF2
	mkdir -p "$W/state-register" "$W/state-client"
	"$REGENT_BIN" --check-config -c "$W/register.ini" >/dev/null || b_die "register config"
	"$REGENT_BIN" --check-config -c "$W/client.ini" >/dev/null || b_die "client config"
	daemon_start soak-register "$REGENT_BIN" -c "$W/register.ini"
	daemon_start soak-client "$REGENT_BIN" -c "$W/client.ini"
	wait_for --timeout 60 grep -q "reported $ninst instances" "$(daemon_log soak-register)" >/dev/null ||
		b_die "the register agent did not report its instances"
	b_log "soak: $ninst instances in $nsvc services, one moves every $churn; SIGHUP every $hup, a service added and removed every $newsvc; $duration (warm-up ${warm_s}s)"
	local ports
	ports=$(seq -s, "$((base + nsvc))" "$((base + nsvc + 7))")
	"$BENCH_PY" - "$W/spec.json" <<EOF2
import json, sys
json.dump({"store": "$store", "duration_s": $dur_s, "warmup_s": $warm_s, "sample_s": $sample_s, "hup_s": $hup_s,
           "newsvc_s": $new_s, "smoke": $smoke, "ep": "$ep", "prefix": "/fleet", "instances": $ninst, "out": "$W",
           "metrics": "http://127.0.0.1:$rsp/metrics", "haproxy_cfg": "$W/hx/regent.cfg",
           "newsvc_ports": [$ports],
           "agents": {"client": {"pid": $(daemon_pid soak-client), "ini": "$W/client.ini",
                                 "toggle": ["sink haproxy", "reload_interval", "200ms", "250ms"]},
                      "register": {"pid": $(daemon_pid soak-register), "ini": "$W/register.ini",
                                   "toggle": $reg_toggle,
                                   "churn_key": ["source synthsource", "churn"]}}},
          open(sys.argv[1], "w"))
EOF2
	"$BENCH_PY" "$BENCH_DIR/lib/soak_tool.py" run "$W/spec.json" >> "$B_ROWS" || b_log "the soak's driver failed"
	local name n e
	for name in client register; do
		n=$(grep -c "configuration reloaded" "$(daemon_log "soak-$name")")
		e=$(grep -c " error: \| fatal: " "$(daemon_log "soak-$name")")
		printf '{"bench":"soak","section":"%s agent","metric":"lines logged at level error (the whole run)","value":%d,"target":"0","missed":"%s","note":"%d reloads logged; warnings and errors in %s"}\n' \
			"$name" "$e" "$([[ $e == 0 ]] && echo met || echo MISSED)" "$n" "$(basename "${B_CSV%.csv}")-$name-warnings.log" >> "$B_ROWS"
	done
	cp "$W/samples.json" "${B_CSV%.csv}-samples.json" 2>/dev/null
	# The agents' warnings and errors are kept next to the results (the harness removes its
	# directory at exit).
	for name in client register; do
		grep -E " (warn|error|fatal): " "$(daemon_log "soak-$name")" > "${B_CSV%.csv}-$name-warnings.log" || true
	done
	daemon_stop soak-client
	daemon_stop soak-register
	bench_report "soak ($store): $ninst instances in $nsvc services for $duration (one moves every $churn, SIGHUP every $hup, a service added and removed every $newsvc)"
	echo "Samples:  ${B_CSV%.csv}-samples.json"
	! grep -q '"missed": "MISSED"' "$B_ROWS"
}
