# shellcheck shell=bash
# bench/lib/hostile.sh - `bench/run hostile`: bounded work per registry input (issue 14 point 2).
#
# One etcd (--max-request-bytes 2 MiB, so 1.4 MB values can be written) and a client regent
# (store etcd + sink haproxy, manage = true + sink stats) that runs throughout ("live"), its
# /healthz sampled every 50 ms by a separate process.  Three hostile inputs, one after the other:
#   a) 100,000 instances in one service (txns of 128 puts), later deleted 10,000 keys a request
#   b) one value with 60,000 meta pairs, put, re-put unchanged, re-put changed
#   c) 15 values of 1.4 MB next to normal entries
# For each: the live agent's loop stall (max /healthz latency, failed samples), its CPU for the
# input, the time until haproxy (or the log) reflects it; then a fresh agent started with the
# input in etcd ("cold": time to the first complete read reflected in haproxy, its stall), and
# another fresh agent sent SIGTERM at the worst moment: as soon as it logs its first read
# complete (everything is then being reported to the sinks), timed to its exit against
# stop_timeout.

hostile_usage() {
	cat <<'EOF2'
usage: bench/run hostile [options]
  --instances N   instances in the one big service (default 100000)
  --meta N        meta pairs in the one big value (default 60000)
  --big N         number of big values (default 15)
  --big-bytes B   size of each (default 1400000)
  --repeats N     re-puts of the meta value, unchanged and changed, N each (default 3)
  --only LIST     scenarios to run, e.g. "a c" (default "a b c")
  --no-haproxy    the agents run without the haproxy sink (store etcd + sink stats): the cost
                  of the core and the store alone; "routed" then means "in the catalog"
  --state-interval D  the haproxy sink's server_state_interval (default: its default, 5s); e.g.
                  1h to see single changes without the periodic poll of every server in them
  --no-fresh      skip the fresh agents (cold start, SIGTERM at the worst moment) and, in a),
                  the delete of everything: only the live agent's figures
  --perf DIR      record the live agent with perf (DWARF call graphs, wall-clock timestamps)
                  during a)'s whole write (DIR/write.data) and whole delete (DIR/delete.data),
                  with the /healthz samples so far (DIR/PHASE.samples: start_ns latency_ns code)
  --write-rate R  in a), write the instances at most R keys a second (default 0: as fast as
                  etcd takes them, ~6,000-10,000 a second here): the writer's pace, which the
                  write's agent CPU should not follow
  --write-delete  in a), only the live agent's whole write and whole delete (for profiling)
  --callgrind     run the live agent under valgrind callgrind: a)'s whole write and whole delete
                  counted in instructions (user space; load-independent), with an annotated
                  profile of each beside the results (use a smaller --instances: ~50x slower);
                  with REGENT_BENCH_KEEP_CALLGRIND=1 in the environment, the whole profiles too
                  (<result>-callgrind-PHASE.out.gz)
  --build DIR     regent build dir (default $REGENT_BUILD_DIR or <repo>/build)
  --out DIR       results dir (default bench/results)
environment: HS_LOG_LEVEL=debug runs the agents at that log level (the haproxy sink's pipeline
  line: where each reload's time went); REGENT_BENCH_KEEP_LOGS=DIR copies the live agent's log,
  haproxy's output and the last generated config into DIR at the end
EOF2
}

# Targets, from issue 14 point 2 ("a 100,000-instance service and a 60,000-pair value each cost
# the agent well under a second, /healthz answers throughout, SIGTERM is honoured within
# stop_timeout"), read as: agent CPU for the input <= 500 ms; loop stall (max /healthz latency)
# <= 500 ms; no /healthz sample failed; exit within stop_timeout (5 s, the default) after
# SIGTERM; a live change reflected in haproxy within 1 s of the last write; one warning per
# oversized key, naming it.

HS_TOOL() { "$BENCH_PY" "$BENCH_DIR/lib/hostile_tool.py" "$@"; }
hs_fact() { echo "$1 $2" >> "$H_TMP/facts"; } # NAME VALUE (VALUE may be JSON without blanks)

hs_ini() { # NAME: writes $H_TMP/NAME/client.ini; ports in $H_TMP/NAME/{hsp,rsp}
	local d=$H_TMP/$1 hsp rsp
	mkdir -p "$d/hx"
	hsp=$(free_port); rsp=$(free_port)
	echo "$rsp" > "$d/rsp"
	cat > "$d/client.ini" <<EOF2
[agent]
node = hostile-$1
state_dir = $H_TMP/state-$1
metrics_per_service = true
${HS_LOG_LEVEL:+log_level = $HS_LOG_LEVEL}

[store etcd]
endpoints = $HS_EP
prefix    = /fleet

[sink stats]
listen = 127.0.0.1:$rsp
EOF2
	[[ -n "$HS_NO_HAPROXY" ]] || cat >> "$d/client.ini" <<EOF2

[sink haproxy]
manage          = true
keep_running    = false ; the bench stops haproxy with regent
config_file     = $d/hx/regent.cfg
bind_address    = 127.0.0.1
stats           = 127.0.0.1:$hsp
slots           = 16
check_interval  = 24h     ; nothing listens behind the synthetic instances: check rarely
reload_interval = 200ms
${HS_STATE_INTERVAL:+server_state_interval = $HS_STATE_INTERVAL}
EOF2
	"$REGENT_BIN" --check-config -c "$d/client.ini" >/dev/null || b_die "agent $1: config refused"
}

hs_start() { # NAME: start agent NAME with a /healthz sampler; prints its pid
	local d=$H_TMP/$1
	hs_ini "$1"
	local wrap=()
	[[ -n "$HS_CG" && $1 == live ]] &&
		wrap=(valgrind -q --tool=callgrind --callgrind-out-file="$H_TMP/cg-live")
	daemon_start "regent-$1" "${wrap[@]}" "$REGENT_BIN" -c "$d/client.ini"
	daemon_start "sample-$1" "$BENCH_PY" "$BENCH_DIR/lib/hostile_tool.py" sample \
		"http://127.0.0.1:$(cat "$d/rsp")/healthz" "$d/samples.txt"
	daemon_pid "regent-$1"
}

hs_stop() { # NAME
	daemon_stop "sample-$1"
	daemon_stop "regent-$1" 30
}

# hs_perf_start PHASE / hs_perf_stop PHASE: with --perf DIR, perf records the live agent over a
# phase into DIR/PHASE.data (its own CPU is not the agent's: cpu_ns reads the agent's threads)
hs_perf_start() {
	if [[ -n "$HS_CG" ]]; then # the count starts here
		callgrind_control -z "$HS_PID" >/dev/null || b_log "callgrind_control -z $HS_PID failed"
	fi
	[[ -n "$HS_PERF" ]] || return 0
	daemon_start "perf-$1" perf record -q -k CLOCK_REALTIME --call-graph dwarf,16384 -F 499 -o "$HS_PERF/$1.data" \
		-p "$HS_PID"
	sleep 1 # perf attached
}
hs_perf_stop() {
	if [[ -n "$HS_CG" ]]; then # dump N of the agent: this phase's instructions
		HS_CGN=$((${HS_CGN:-0} + 1))
		callgrind_control -d "$HS_PID" >/dev/null || b_log "callgrind_control -d $HS_PID failed"
		wait_for --timeout 60 test -s "$H_TMP/cg-live.$HS_CGN" >/dev/null || b_log "$1: no callgrind dump"
		hs_fact "a.$1.ir" "$(awk '/^totals:/ {print $2}' "$H_TMP/cg-live.$HS_CGN" 2>/dev/null)"
		{
			echo "# callgrind: the live agent over a)'s whole $1"
			callgrind_annotate --inclusive=yes "$H_TMP/cg-live.$HS_CGN" 2>/dev/null | head -80
			echo "# self"
			callgrind_annotate --threshold=100 "$H_TMP/cg-live.$HS_CGN" 2>/dev/null | sed -n '/PROGRAM TOTALS/,$p' | head -50
		} > "${B_CSV%.csv}-callgrind-$1.txt"
		# the whole profile (callgrind_annotate it for any function), when asked
		[[ -z "${REGENT_BENCH_KEEP_CALLGRIND:-}" ]] ||
			gzip -c "$H_TMP/cg-live.$HS_CGN" > "${B_CSV%.csv}-callgrind-$1.out.gz"
	fi
	[[ -n "$HS_PERF" ]] || return 0
	daemon_stop "perf-$1" 30
	cp "$H_TMP/live/samples.txt" "$HS_PERF/$1.samples" # /healthz latencies, to align stalls
}

# hs_applies NAME: catalog snapshots handed to agent NAME's haproxy sink so far (/metrics)
hs_applies() {
	curl -s "http://127.0.0.1:$(cat "$H_TMP/$1/rsp")/metrics" |
		awk '$1 == "regent_sink_applies_total{plugin=\"haproxy\"}" { print $2 }'
}

# hs_cpu_facts TAG C0 C1 T0: the agent's CPU from C0 to C1 (read now) over the window since
# T0 (wall ns): TAG.cpu_raw_ms, TAG.win_ms, TAG.cpu_ms (the idle agent's rate subtracted over
# the whole window) and TAG.cpu_old_ms (one second of it subtracted: the figure before session
# 12, which counted the idle rate of the rest of the window, ~4-5 ms/s, as the input's)
hs_cpu_facts() {
	local raw=$((($3 - $2) / 1000000)) win=$((($(now_ns) - $4) / 1000000))
	hs_fact "$1.cpu_raw_ms" "$raw"
	hs_fact "$1.win_ms" "$win"
	hs_fact "$1.cpu_ms" "$((raw - win * HS_IDLE_NS / 1000000000))"
	hs_fact "$1.cpu_old_ms" "$((raw - 1000 * HS_IDLE_NS / 1000000000))"
}

hs_stall() { HS_TOOL stall "$H_TMP/$1/samples.txt" "$2" "$3"; } # NAME T0 T1 -> JSON
hs_sock() { echo "$H_TMP/$1/hx/haproxy-admin.sock"; }
hs_log() { daemon_log "regent-$1"; }
hs_ms() { echo $((($2 - $1) / 1000000)); } # T0_NS T1_NS

# hs_cold TAG WAITCMD...: a fresh agent started with the input in etcd: WAITCMD (run with the
# agent's name appended... see callers) must print the wall ns when the input is reflected.
hs_cold() {
	local tag=$1 name=cold-$1 t0 tr pid c
	shift
	t0=$(now_ns)
	pid=$(hs_start "$name")
	if tr=$("$@" "$name"); then
		c=$(cpu_ns "$pid")
		sleep 1
		hs_fact "$tag.cold.ms" "$(hs_ms "$t0" "$tr")"
		[[ -f "$H_TMP/$name/cat_ns" ]] && hs_fact "$tag.cold.cat_ms" "$(hs_ms "$t0" "$(cat "$H_TMP/$name/cat_ns")")"
		hs_fact "$tag.cold.reloads" "$(hs_reloads "$name" 0)"
		hs_fact "$tag.cold.cpu_ms" "$((c / 1000000))"
		hs_fact "$tag.cold.stall" "$(hs_stall "$name" "$t0" "$(now_ns)")"
		b_log "$tag cold: reflected after $(hs_ms "$t0" "$tr") ms, agent CPU $((c / 1000000)) ms"
	else
		hs_fact "$tag.cold.ms" timeout
		b_log "$tag cold: not reflected in time"
	fi
	daemon_stop "sample-$name"
	t0=$(now_ns)
	daemon_stop "regent-$name" 30
	hs_fact "$tag.cold.stop_ms" "$(hs_ms "$t0" "$(now_ns)")"
	# SIGTERM at the worst moment
	name=term-$tag
	pid=$(hs_start "$name")
	local r
	r=$(HS_TOOL termstall "$pid" "http://127.0.0.1:$(cat "$H_TMP/$name/rsp")/healthz" 100 120 \
		"$(hs_log "$name")" 'store etcd: read /fleet/')
	b_log "$tag SIGTERM: $r ($(daemon_status "regent-$name"))"
	hs_stop "$name"
	hs_fact "$tag.term" "$r"
	hs_fact "$tag.term.status" "$(daemon_status "regent-$name" | tr ' ' _)"
}

# callers' WAITCMDs: print the wall ns when agent $last-arg shows the input
hs_wait_backend() { HS_TOOL wait-backend "$(hs_sock "$3")" "$1" "$2" 300; } # BACKEND N NAME
hs_wait_cat() { # SERVICE N NAME: the catalog (/metrics) holds N instances of SERVICE (-0: none)
	HS_TOOL wait-metric "http://127.0.0.1:$(cat "$H_TMP/$3/rsp")/metrics" \
		"regent_catalog_instances{service=\"$1\"}" "$2" 300
}
hs_wait_cat_backend() { # N EXP NAME: the catalog holds N of huge, then haproxy routes EXP
	local t
	t=$(hs_wait_cat huge "$1" "$3") || return 1
	echo "$t" > "$H_TMP/$3/cat_ns"
	hs_wait_backend huge "$2" "$3"
}
# hs_reloads NAME FROMLINE: haproxy reloads logged since line FROMLINE: "count max_ms"
hs_reloads() {
	tail -n +"$(($2 + 1))" "$(hs_log "$1")" |
		sed -n 's/.*haproxy reloaded (worker [0-9]*), \([0-9]*\) ms after the change.*/\1/p' |
		awk 'BEGIN { m = 0 } { n++; if ($1 > m) m = $1 } END { printf "%d_%d\n", n, m }'
}
hs_wait_skipped() { HS_TOOL wait-log "$(hs_log "$3")" "skipped key /fleet/$1" "$2" 120; } # KEYRX N NAME
hs_wait_normal_skipped() { # N NAME: the normal service routed and N big keys skipped
	hs_wait_backend normal 3 "$2" >/dev/null && hs_wait_skipped 'big[0-9]+/x' "$1" "$2"
}

hs_scn_a() { # 100,000 instances in one service
	local n=$1 t0 t1 tr td tg c0 c1 exp
	exp=$((n < 10000 ? n : 10000)) # the haproxy sink routes at most 10,000 per service
	b_log "a) $n instances in service huge (live agent)"
	hs_perf_start write
	c0=$(cpu_ns "$HS_PID"); tw0=$(now_ns); HS_L0=$(wc -l < "$(hs_log live)"); HS_AP0=$(hs_applies live)
	read -r t0 t1 < <(HS_TOOL bulk "$HS_EP" /fleet huge "$n" "$HS_PORT_HUGE" "$HS_RATE") || b_die "bulk write"
	b_log "a) written in $(hs_ms "$t0" "$t1") ms"
	local tcat
	if tcat=$(hs_wait_cat huge "$n" live); then
		hs_fact a.live.cat_ms "$(hs_ms "$t1" "$tcat")"
		b_log "a) the catalog holds $n instances of huge $(hs_ms "$t1" "$tcat") ms after the last write"
	else
		hs_fact a.live.cat_ms timeout
	fi
	if [[ -n "$HS_NO_HAPROXY" ]]; then
		tr=$tcat
	else
		tr=$(HS_TOOL wait-backend "$(hs_sock live)" huge "$exp" 300) || tr=""
	fi
	if [[ -n "$tr" ]]; then
		sleep 1; c1=$(cpu_ns "$HS_PID")
		hs_fact a.write_ms "$(hs_ms "$t0" "$t1")"
		hs_fact a.live.ms "$(hs_ms "$t1" "$tr")"
		hs_cpu_facts a.live "$c0" "$c1" "$tw0"
		hs_fact a.live.applies "$(($(hs_applies live) - ${HS_AP0:-0}))"
		hs_fact a.live.stall "$(hs_stall live "$t0" "$(now_ns)")"
		b_log "a) haproxy routes $exp of huge $(hs_ms "$t1" "$tr") ms after the last write"
	else
		hs_fact a.live.ms timeout
	fi
	hs_perf_stop write
	if HS_TOOL wait-log "$(hs_log live)" "service huge: [0-9]+ instances over the limit" 1 10 >/dev/null; then
		hs_fact a.cap_warned 1
	else
		hs_fact a.cap_warned 0
	fi
	hs_fact a.live.reloads "$(hs_reloads live "$HS_L0")"
	# the agent's idle rate now that it holds the big service (the haproxy sink asks haproxy for
	# every server's state every server_state_interval, 5 s): the single changes below subtract
	# this rate, not the one measured before the write
	# (measured once the write's aftermath is over: reloads, state dumps; at most 60 s of 2 s
	# windows until one costs under 25 ms of CPU per second, then 20 s)
	local ci k
	for ((k = 0; k < 30 && !HS_WD; k++)); do
		ci=$(cpu_ns "$HS_PID"); sleep 2
		(($(cpu_ns "$HS_PID") - ci < 50000000)) && break
	done
	ci=$(cpu_ns "$HS_PID"); sleep $((HS_WD ? 2 : 20))
	HS_IDLE_BIG_NS=$((($(cpu_ns "$HS_PID") - ci) / (HS_WD ? 2 : 20)))
	hs_fact a.idle_big_ms_s "$((HS_IDLE_BIG_NS / 1000))e-3"
	b_log "a) idle with the big service: $((HS_IDLE_BIG_NS / 1000)) us CPU/s"
	[[ -n "$HS_WD" ]] || hs_one a "$n" put
	[[ -n "$HS_WD" ]] || hs_one a "$n" change
	[[ -n "$HS_WD" ]] || hs_one a "$n" del
	if [[ -z "$HS_NO_HAPROXY$HS_WD" ]]; then
		# three rounds: one window of ~2 s may or may not hold one of the sink's state polls
		# (every 5 s, tens of ms with 10,000 routed servers), so one sample is noise; the row
		# gives the median and every sample
		local r w cpu_rput="" cpu_rchange="" cpu_rdel="" all
		for ((r = 0; r < 3; r++)); do
			for w in rput rchange rdel; do
				hs_one a "$n" "$w"
				printf -v "cpu_$w" '%s %s' "$(eval echo "\$cpu_$w")" "$HS_LAST_CPU"
			done
		done
		for w in rput rchange rdel; do
			all=$(eval echo "\$cpu_$w")
			hs_fact "a.one_$w.cpu_ms" "$(tr ' ' '\n' <<< "$all" | sed '/^$/d' | sort -n | sed -n 2p)"
			hs_fact "a.one_$w.cpu_all" "$(tr ' ' '/' <<< "$all" | sed 's|^/||')"
		done
	fi
	[[ -n "$HS_NO_FRESH" ]] && return 0
	[[ -n "$HS_WD" ]] || hs_cold a hs_wait_cat_backend "$n" "$exp"
	b_log "a) delete of the $n keys, 10,000 a request (live agent)"
	hs_perf_start delete
	c0=$(cpu_ns "$HS_PID"); td=$(now_ns); HS_L0=$(wc -l < "$(hs_log live)"); HS_AP0=$(hs_applies live)
	read -r t1 _ < <(HS_TOOL delbulk "$HS_EP" /fleet huge "$n") || b_die "delete"
	# the listen itself stays for empty_grace (a service briefly empty keeps its port): the
	# input is reflected when haproxy routes to none of them any more
	if tcat=$(hs_wait_cat huge -0 live); then
		hs_fact a.del.cat_ms "$(hs_ms "$t1" "$tcat")"
		# the store's and the core's share: CPU until the catalog is empty (the haproxy sink
		# has done part of its work by then, not all of it)
		hs_fact a.del.cat_cpu_ms "$((($(cpu_ns "$HS_PID") - c0) / 1000000 - ($(now_ns) - td) / 1000000 * HS_IDLE_NS / 1000000000))"
		hs_fact a.del.cat_applies "$(($(hs_applies live) - ${HS_AP0:-0}))"
	fi
	tg=$(HS_TOOL wait-backend "$(hs_sock live)" huge -0 300) || tg=""
	sleep 1; c1=$(cpu_ns "$HS_PID")
	if [[ -n "$tg" ]]; then
		hs_fact a.del.ms "$(hs_ms "$t1" "$tg")"
		hs_cpu_facts a.del "$c0" "$c1" "$td"
		hs_fact a.del.stall "$(hs_stall live "$td" "$(now_ns)")"
		hs_fact a.del.reloads "$(hs_reloads live "$HS_L0")"
		# reloads haproxy refused meanwhile, and how many of its refusals were its FD limit
		# (a configuration of ~20,000 server slots needs more descriptors than RLIMIT_NOFILE)
		hs_fact a.del.refused "$(tail -n +"$((HS_L0 + 1))" "$(hs_log live)" | grep -c 'haproxy reload failed')"
		hs_fact a.del.fdlimit "$(grep -c 'Cannot raise FD limit' "$H_TMP/state-live/regent.cfg.log" 2>/dev/null)"
	else
		hs_fact a.del.ms timeout
	fi
	hs_keep_refused "$HS_L0" # also when the delete timed out
	hs_perf_stop delete
}

# hs_keep_refused FROMLINE: when the live agent logged a refused reload since line FROMLINE, its
# causes (the agent's words: distinct, numbers blanked, 3 at most) become a fact for the row's
# note, and the agent's log, haproxy's log and the generated config are kept beside the results
# (DIR/<result>-refused/), since the harness removes its directory on exit
hs_keep_refused() {
	local log keep
	log=$(hs_log live)
	tail -n +"$(($1 + 1))" "$log" | grep -q 'haproxy reload failed' || return 0
	hs_fact a.del.refused_why "$(tail -n +"$(($1 + 1))" "$log" |
		sed -n 's/.*haproxy reload failed: \(.*\); retrying in [0-9]* ms.*/\1/p' |
		sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | head -3 |
		awk '{ c = $1; $1 = ""; printf "%s%dx:%s", (NR > 1 ? " | " : ""), c, $0 }' | tr ' ' '~')"
	keep=${B_CSV%.csv}-refused
	mkdir -p "$keep"
	cp "$log" "$keep/agent.log"
	cp "$H_TMP/state-live/"*.log "$keep/" 2>/dev/null
	cp "$H_TMP/live/hx/regent.cfg" "$keep/" 2>/dev/null
	b_log "a) reloads refused during the delete: logs kept in $keep"
}

# hs_one TAG N WHAT: one change to the big service of N instances (live agent): WHAT = put (a
# new instance), change (a new address for that one), del (that one deleted); rput, rchange,
# rdel the same with an instance id that sorts before the bulk's (hostile-node/a-one), so that
# the haproxy sink routes it (it takes the place of the 10,000th, which comes back on its
# delete): a runtime change of haproxy, the mirrored file and the server states published.  Facts: the time
# from the write to the catalog (/metrics, polled every 10 ms by the writing process), the
# agent's CPU and the loop stall over the change (the CPU window includes the writer's
# polling: /metrics ~100 times a second).
hs_one() {
	local tag=$1 n=$2 what=$3 key=/fleet/huge/hostile-node/one/8000 c0 c1 t0 lat want value
	local url="http://127.0.0.1:$(cat "$H_TMP/live/rsp")/metrics"
	sleep 5 # whatever the previous step left running settles (reloads, the state poll)
	[[ $what == r* ]] && key=/fleet/huge/hostile-node/a-one/8000
	case $what in
	put | rput) value="{\"address\":\"127.7.0.1\",\"port\":9001,\"service_port\":$HS_PORT_HUGE}"; want=$((n + 1)) ;;
	change | rchange) value="{\"address\":\"127.7.0.2\",\"port\":9001,\"service_port\":$HS_PORT_HUGE}"; want=$((n + 1)) ;;
	del | rdel) value=-; want=$n ;;
	esac
	c0=$(cpu_ns "$HS_PID"); t0=$(now_ns)
	lat=$(HS_TOOL change-wait "$HS_EP" "$key" "$value" "$url" 'regent_catalog_instances{service="huge"}' "$want" 60) || lat=""
	[[ $what == *change ]] && { lat=""; sleep 1; } # a change keeps the count: not visible in /metrics
	sleep 1; c1=$(cpu_ns "$HS_PID")
	hs_fact "$tag.one_$what.ms" "$lat"
	HS_LAST_CPU=$(((c1 - c0) / 1000000 - (($(now_ns) - t0) / 1000000) * ${HS_IDLE_BIG_NS:-$HS_IDLE_NS} / 1000000000))
	hs_fact "$tag.one_$what.cpu_ms" "$HS_LAST_CPU"
	hs_fact "$tag.one_$what.stall" "$(hs_stall live "$t0" "$(now_ns)")"
	b_log "a) one $what in huge: in the catalog ${lat:-?} ms after the write"
}

hs_scn_b() { # one value with 60,000 meta pairs
	local n=$1 reps=$2 key=/fleet/metasvc/hostile-node/m1 t0 tp tw c0 c1 k kind seed sz cnt=0 ms=()
	b_log "b) one value with $n meta pairs: put, $reps re-puts unchanged, $reps changed (live agent)"
	c0=$(cpu_ns "$HS_PID"); t0=$(now_ns)
	for ((k = 0; k <= 2 * reps; k++)); do
		if ((k == 0)); then kind=put; seed=s0; elif ((k <= reps)); then kind=same; seed=s0; else kind=changed; seed=s$k; fi
		read -r tp sz < <(HS_TOOL meta "$HS_EP" "$key" "$n" "$seed") || b_die "meta put"
		cnt=$((cnt + 1))
		if tw=$(HS_TOOL wait-log "$(hs_log live)" "skipped key ${key} " "$cnt" 60); then
			ms+=("$kind:$(hs_ms "$tp" "$tw")")
		else
			ms+=("$kind:timeout")
		fi
	done
	sleep 1; c1=$(cpu_ns "$HS_PID")
	hs_fact b.bytes "$sz"
	hs_fact b.live.ms "${ms[*]}"
	hs_fact b.live.cpu_ms "$(((c1 - c0) / 1000000 - (($(now_ns) - t0) / 1000000) * HS_IDLE_NS / 1000000000))"
	hs_fact b.live.puts "$cnt"
	hs_fact b.live.stall "$(hs_stall live "$t0" "$(now_ns)")"
	hs_fact b.warnings "$(grep -c "skipped key ${key}" "$(hs_log live)")"
	b_log "b) put -> warning: ${ms[*]} ms"
	hs_cold b hs_wait_skipped "metasvc/hostile-node/m1" 1
}

hs_scn_c() { # 15 values of 1.4 MB next to normal entries
	local n=$1 bytes=$2 t0 t1 tw c0 c1
	b_log "c) $n values of $bytes bytes (live agent)"
	c0=$(cpu_ns "$HS_PID")
	read -r t0 t1 < <(HS_TOOL big "$HS_EP" /fleet "$n" "$bytes") || b_die "big puts"
	if tw=$(HS_TOOL wait-log "$(hs_log live)" 'skipped key /fleet/big[0-9]+/x' "$n" 120); then
		sleep 1; c1=$(cpu_ns "$HS_PID")
		hs_fact c.live.ms "$(hs_ms "$t1" "$tw")"
		hs_fact c.live.cpu_ms "$(((c1 - c0) / 1000000 - (($(now_ns) - t0) / 1000000) * HS_IDLE_NS / 1000000000))"
		hs_fact c.live.stall "$(hs_stall live "$t0" "$(now_ns)")"
	else
		hs_fact c.live.ms timeout
	fi
	hs_fact c.warnings "$(grep -cE 'skipped key /fleet/big[0-9]+/x' "$(hs_log live)")"
	hs_cold c hs_wait_normal_skipped "$n"
	hs_fact c.cold.warnings "$(grep -cE 'skipped key /fleet/big[0-9]+/x' "$(hs_log cold-c)")"
	hs_fact c.cold.named "$(grep -oE 'skipped key /fleet/big[0-9]+/x' "$(hs_log cold-c)" | sort -u | wc -l)"
}

hs_rows() {
	"$BENCH_PY" - "$H_TMP/facts" "$1" "$2" "$3" "$4" "${HS_NO_HAPROXY:-0}" <<'EOF2' >> "$B_ROWS"
import json, sys
facts = {}
for l in open(sys.argv[1]):
    k, _, v = l.rstrip("\n").partition(" ")
    facts[k] = v
ninst, nmeta, nbig, bigb = sys.argv[2:6]
nohaproxy = sys.argv[6] == "1"
def row(section, metric, value, unit, target=None, ok=None, note=None):
    r = {"bench": "hostile", "section": section, "metric": metric, "value": value, "unit": unit}
    if target:
        r["target"] = target
        r["missed"] = "met" if ok else "MISSED"
    if note:
        r["note"] = note
    print(json.dumps(r))
def num(k):
    v = facts.get(k)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
def js(k):
    try:
        return json.loads(facts[k])
    except (KeyError, ValueError):
        return None
def stall_rows(sec, k, what):
    s = js(k)
    if not s:
        return
    row(sec, "%s: loop stall, max /healthz latency (50 ms sampling)" % what, s["max_ms"], "ms",
        "<= 500 ms", s["max_ms"] is not None and s["max_ms"] <= 500,
        "p99 %.1f ms over %d samples" % (s["p99_ms"] or 0, s["n"]))
    row(sec, "%s: /healthz samples unanswered" % what, s["failed"], "", "0", s["failed"] == 0)
def cpu_row(sec, k, what):
    v = num(k)
    if v is None:
        return
    p = k[:-len(".cpu_ms")]
    if num(p + ".win_ms") is None:
        row(sec, "%s: agent CPU for the input" % what, v, "ms", "<= 500 ms (well under 1 s)", v <= 500,
            "idle rate subtracted")
        return
    row(sec, "%s: agent CPU for the input" % what, v, "ms", "<= 500 ms (well under 1 s)", v <= 500,
        "the idle agent's rate subtracted over the whole %.1f s window (%s ms of CPU in all; "
        "with 1 s of it subtracted, the figure before session 12: %s ms)" % (
            num(p + ".win_ms") / 1000, facts.get(p + ".cpu_raw_ms"), facts.get(p + ".cpu_old_ms")))
    big = num("a.idle_big_ms_s")
    if p == "a.live" and big is not None:
        v = num(p + ".cpu_raw_ms") - num(p + ".win_ms") / 1000 * big
        row(sec, "%s: agent CPU beyond holding the service" % what, round(v), "ms",
            note="the idle rate holding it (below) subtracted over the window instead: what the write "
                 "costs beyond the haproxy sink's state poll of the 10,000 routed servers, which runs "
                 "while they are held, written or not")
def term_rows(sec, tag):
    t = js(tag + ".term")
    if not t:
        return
    e = t.get("exit_ms")
    row(sec, "SIGTERM at the worst moment -> exit (fresh agent)", e, "ms", "<= 5000 ms (stop_timeout)",
        e is not None and e <= 5000,
        "sent %s %.0f ms after start (%s); %s" % ({"stall": "at a /healthz request open 100 ms",
                                                   "log": "as soon as the first read was logged complete"}.get(
                                                      t["trigger"], "at the window's end"),
                                                  t["at_ms"] or 0, t["trigger"],
                                                  facts.get(tag + ".term.status", "").replace("_", " ")))
def reloads(k):
    v = facts.get(k)
    if not v:
        return None
    n, m = v.split("_")
    return "%s haproxy reloads, the longest %s ms after its change (haproxy's time)" % (n, m) if n != "0" else "no haproxy reload"
def cold_rows(sec, tag, what):
    if tag + ".cold.ms" not in facts:
        return  # --no-fresh
    v = num(tag + ".cold.ms")
    if v is None:
        row(sec, "fresh agent: exec -> %s" % what, facts.get(tag + ".cold.ms"), "", note="not reflected")
        return
    if num(tag + ".cold.cat_ms") is not None:
        row(sec, "fresh agent: exec -> the catalog holds all %s (/metrics)" % ninst, num(tag + ".cold.cat_ms"), "ms")
    row(sec, "fresh agent: exec -> %s" % what, v, "ms", note="agent CPU %s ms until then; %s" % (
        facts.get(tag + ".cold.cpu_ms"), reloads(tag + ".cold.reloads")))
    stall_rows(sec, tag + ".cold.stall", "fresh agent")
    v = num(tag + ".cold.stop_ms")
    if v is not None:
        row(sec, "SIGTERM to that agent once reflected -> exit", v, "ms", "<= 5000 ms (stop_timeout)", v <= 5000,
            "includes stopping its haproxy")

if "a.live.ms" in facts or "a.cold.ms" in facts:
    sec = "a) %s instances in one service" % ninst
    exp = min(int(ninst), 10000)
    row(sec, "write: %s keys, txns of 128 puts" % ninst, num("a.write_ms"), "ms",
        note="the writer's time, for scale" + ("; paced at %s keys/s (--write-rate)" % facts["a.rate"]
                                               if facts.get("a.rate", "0") != "0" else ""))
    v = num("a.live.cat_ms")
    row(sec, "live agent: last write -> the catalog holds all %s (/metrics)" % ninst, v if v is not None else facts.get("a.live.cat_ms"),
        "ms", "<= 1000 ms", v is not None and v <= 1000)
    v = num("a.live.ms")
    if not nohaproxy:
        row(sec, "live agent: last write -> haproxy routes %d (the per-service limit)" % exp, v if v is not None else facts.get("a.live.ms"),
            "ms", note=reloads("a.live.reloads"))
    if int(ninst) > exp and not nohaproxy:
        row(sec, "live agent: the over-limit warning names the service", int(num("a.cap_warned") or 0), "", "1",
            num("a.cap_warned") == 1)
    cpu_row(sec, "a.live.cpu_ms", "live agent, whole write")
    if num("a.write.ir") is not None:
        row(sec, "live agent, whole write: instructions (callgrind, user space)", int(num("a.write.ir")), "",
            note="load-independent; the agent ran under valgrind (its CPU and latency rows mean little)")
    if num("a.live.applies") is not None:
        row(sec, "live agent, whole write: catalog snapshots handed to the haproxy sink", int(num("a.live.applies")), "",
            note="each settles the service's list and is diffed by the sink: O(its instances)")
    stall_rows(sec, "a.live.stall", "live agent, whole write")
    v = num("a.idle_big_ms_s")
    if v is not None:
        row(sec, "live agent idle, holding the %s: agent CPU per second" % ninst, v, "ms/s",
            note="subtracted from the single changes below (the haproxy sink's state poll of "
                 "every routed server runs every server_state_interval)")
    for what, label in (("put", "one instance added"), ("change", "one instance changed"),
                        ("del", "one instance deleted"),
                        ("rput", "one routed instance added (takes the 10,000th's place)"),
                        ("rchange", "one routed instance changed (new address)"),
                        ("rdel", "one routed instance deleted (the 10,000th comes back)")):
        k = "a.one_%s" % what
        if k + ".stall" not in facts:
            continue
        v = num(k + ".ms")
        if not what.endswith("change"):
            row(sec, "live agent, %s (service of %s): write -> catalog (/metrics)" % (label, ninst),
                v if v is not None else "timeout", "ms", "<= 1000 ms", v is not None and v <= 1000,
                "the writing process polls /metrics every 10 ms")
        cpu = num(k + ".cpu_ms")
        row(sec, "live agent, %s: agent CPU" % label, cpu, "ms", "<= 50 ms (O(change), not O(service))",
            cpu is not None and cpu <= 50, "idle rate (with the big service) subtracted" +
            ("; median of 3 rounds: %s ms" % facts[k + ".cpu_all"] if k + ".cpu_all" in facts else ""))
        st = js(k + ".stall")
        if st:
            row(sec, "live agent, %s: loop stall, max /healthz latency (50 ms sampling)" % label, st["max_ms"], "ms",
                "<= 100 ms", st["max_ms"] is not None and st["max_ms"] <= 100,
                "p99 %.1f ms over %d samples; %d unanswered" % (st["p99_ms"] or 0, st["n"], st["failed"]))
    cold_rows(sec, "a", "haproxy routes %d" % exp)
    term_rows(sec, "a")
    v = num("a.del.cat_ms")
    if "a.del.ms" in facts:
      row(sec, "live agent: delete of all %s (10,000 a request) -> gone from the catalog" % ninst,
        v if v is not None else facts.get("a.del.cat_ms"), "ms", "<= 1000 ms", v is not None and v <= 1000)
    v = num("a.del.ms")
    if "a.del.ms" in facts:
      note = reloads("a.del.reloads") or ""
      if facts.get("a.del.refused", "0") not in ("0", ""):
          note += "; %s reloads refused by haproxy (its log: 'Cannot raise FD limit' %s times over the run): " \
                  "the runtime changes after it are refused too ('No such server') until a reload passes" % (facts["a.del.refused"], facts.get("a.del.fdlimit", "?"))
      if facts.get("a.del.refused_why"):
          note += "; refused reloads, the agent's causes: " + facts["a.del.refused_why"].replace("~", " ") + \
                  " (logs kept in <result>-refused/)"
      note += "; the emptied service keeps its listener for empty_grace (60 s), so a reload refused until then " \
              "passes only once the service is gone"
      row(sec, "live agent: delete of all %s (10,000 a request) -> no server routed" % ninst, v if v is not None else facts.get("a.del.ms"),
        "ms", note=note)
    cpu_row(sec, "a.del.cpu_ms", "live agent, the delete")
    if num("a.delete.ir") is not None:
        row(sec, "live agent, the delete: instructions (callgrind, user space)", int(num("a.delete.ir")), "",
            note="load-independent; the agent ran under valgrind (its CPU and latency rows mean little)")
    v = num("a.del.cat_cpu_ms")
    if v is not None:
        row(sec, "live agent, the delete: agent CPU until gone from the catalog", v, "ms",
            note="idle rate subtracted; the store and the core, and the haproxy sink's work so far")
    if num("a.del.cat_applies") is not None:
        row(sec, "live agent, the delete: catalog snapshots handed to the haproxy sink until gone from the catalog",
            int(num("a.del.cat_applies")), "", note="each O(the service's instances) in the core and the sink")
    stall_rows(sec, "a.del.stall", "live agent, the delete")
if "b.live.ms" in facts:
    sec = "b) one value with %s meta pairs (%s bytes)" % (nmeta, facts.get("b.bytes"))
    lat = [x.split(":") for x in facts["b.live.ms"].split()]
    ok = all(v != "timeout" and int(v) <= 1000 for _, v in lat)
    mx = max((int(v) for _, v in lat if v != "timeout"), default=None)
    row(sec, "live agent: put -> warning naming the key (put, re-puts unchanged, changed)", mx, "ms", "<= 1000 ms",
        ok, "each: " + " ".join("%s %s" % (k, v) for k, v in lat))
    row(sec, "warnings naming the key, one per put", int(num("b.warnings") or 0), "", facts.get("b.live.puts"),
        facts.get("b.warnings") == facts.get("b.live.puts"))
    cpu_row(sec, "b.live.cpu_ms", "live agent, all %s puts" % facts.get("b.live.puts"))
    stall_rows(sec, "b.live.stall", "live agent, all puts")
    cold_rows(sec, "b", "the warning for the key")
    term_rows(sec, "b")
if "c.live.ms" in facts:
    sec = "c) %s values of %s bytes next to normal entries" % (nbig, bigb)
    v = num("c.live.ms")
    row(sec, "live agent: last put -> all %s warned" % nbig, v if v is not None else facts.get("c.live.ms"), "ms",
        "<= 1000 ms", v is not None and v <= 1000)
    row(sec, "live agent: warnings naming a big key", int(num("c.warnings") or 0), "", nbig, facts.get("c.warnings") == nbig)
    cpu_row(sec, "c.live.cpu_ms", "live agent, all puts")
    stall_rows(sec, "c.live.stall", "live agent, all puts")
    cold_rows(sec, "c", "first read complete (normal service routed, %s keys warned)" % nbig)
    row(sec, "fresh agent: distinct big keys named in warnings", int(num("c.cold.named") or 0), "", nbig,
        facts.get("c.cold.named") == nbig, "%s warning lines" % facts.get("c.cold.warnings"))
    term_rows(sec, "c")
EOF2
}

bench_hostile() {
	local ninst=100000 nmeta=60000 nbig=15 bigb=1400000 reps=3 only="a b c" build="" out=""
	HS_NO_FRESH="" HS_NO_HAPROXY="" HS_IDLE_BIG_NS="" HS_STATE_INTERVAL="" HS_PERF="" HS_WD="" HS_CG="" HS_CGN=0 HS_RATE=0
	while [[ $# -gt 0 ]]; do
		case $1 in
		--instances) ninst=$2; shift 2 ;;
		--meta) nmeta=$2; shift 2 ;;
		--big) nbig=$2; shift 2 ;;
		--big-bytes) bigb=$2; shift 2 ;;
		--repeats) reps=$2; shift 2 ;;
		--only) only=$2; shift 2 ;;
		--no-fresh) HS_NO_FRESH=1; shift ;;
		--state-interval) HS_STATE_INTERVAL=$2; shift 2 ;;
		--no-haproxy) HS_NO_HAPROXY=1; HS_NO_FRESH=1; shift ;;
		--write-delete) HS_WD=1; shift ;;
		--write-rate) HS_RATE=$2; [[ $2 =~ ^[0-9]+$ ]] || b_die "--write-rate $2: keys a second, an integer"; shift 2 ;;
		--callgrind) HS_CG=1; shift ;;
		--perf) HS_PERF=$(mkdir -p "$2" && cd "$2" && pwd) || b_die "--perf $2"; shift 2 ;;
		--build) build=$2; shift 2 ;;
		--out) out=$2; shift 2 ;;
		-h | --help) hostile_usage; return 0 ;;
		*) hostile_usage >&2; b_die "unknown option $1" ;;
		esac
	done
	bench_setup_build "$build"
	bench_need_plugins etcd haproxy stats
	local tag=hostile
	[[ "$(grep -m1 '^REGENT_SANITIZE:' "$BENCH_BUILD_DIR/CMakeCache.txt" 2>/dev/null | cut -d= -f2)" == ON ]] &&
		tag=hostile-asan
	[[ -n "$HS_NO_HAPROXY" ]] && tag=$tag-nohaproxy
	[[ -n "$HS_CG" ]] && tag=$tag-callgrind
	bench_results_paths "$tag" "$out"
	B_MACHINE=$(mktemp); bench_machine "$B_MACHINE"
	# shellcheck source=/dev/null
	source "$REPO_DIR/tests/harness/lib.sh"
	harness_init
	trap 'hs_rc=$?; bench_track_masters; harness_cleanup $hs_rc' EXIT
	: > "$H_TMP/facts"
	HS_EP=$(etcd_start reg --max-request-bytes 2097152 --quota-backend-bytes 8589934592) || b_die "etcd"
	HS_PORT_HUGE=$(free_port)
	local pn
	pn=$(free_port)
	for i in 1 2 3; do
		HS_TOOL put "$HS_EP" "/fleet/normal/hostile-node/n$i/8000" \
			"{\"address\":\"127.6.0.$i\",\"port\":8000,\"service_port\":$pn}" >/dev/null || b_die "put"
	done
	HS_PID=$(hs_start live)
	if [[ -n "$HS_NO_HAPROXY" ]]; then
		hs_wait_cat normal 3 live >/dev/null || b_die "live agent: normal service not in the catalog"
	else
		HS_TOOL wait-backend "$(hs_sock live)" normal 3 60 >/dev/null || b_die "live agent: normal service not routed"
	fi
	sleep 2
	local c0
	c0=$(cpu_ns "$HS_PID"); sleep 3
	HS_IDLE_NS=$((($(cpu_ns "$HS_PID") - c0) / 3)) # CPU ns per second while idle
	b_log "live agent pid $HS_PID, idle $((HS_IDLE_NS / 1000)) us CPU/s"
	[[ " $only " == *" a "* ]] && hs_scn_a "$ninst"
	[[ " $only " == *" b "* ]] && hs_scn_b "$nmeta" "$reps"
	[[ " $only " == *" c "* ]] && hs_scn_c "$nbig" "$bigb"
	hs_stop live
	if [[ -n "${REGENT_BENCH_KEEP_LOGS:-}" ]]; then # the live agent's log, haproxy's, the config
		mkdir -p "$REGENT_BENCH_KEEP_LOGS"
		cp "$(hs_log live)" "$REGENT_BENCH_KEEP_LOGS/agent.log"
		cp "$H_TMP/state-live/"*.log "$H_TMP/live/hx/regent.cfg" "$REGENT_BENCH_KEEP_LOGS/" 2>/dev/null
	fi
	hs_fact a.rate "$HS_RATE"
	hs_rows "$ninst" "$nmeta" "$nbig" "$bigb"
	cp "$H_TMP/facts" "${B_CSV%.csv}.facts"
	bench_report "hostile: $ninst instances in one service, $nmeta meta pairs in one value, $nbig values of $bigb bytes ($(basename "$BENCH_BUILD_DIR")${HS_NO_HAPROXY:+, no haproxy sink}${HS_STATE_INTERVAL:+, server_state_interval $HS_STATE_INTERVAL}$([[ $HS_RATE == 0 ]] || echo ", written at $HS_RATE keys/s"))"
	rm -f "$B_MACHINE" "$B_ROWS"
}
