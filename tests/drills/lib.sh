# shellcheck shell=bash
# tests/drills/lib.sh - what the store drills share (registration_restart.sh, hup_together.sh,
# client_restart.sh, registry_faults.sh, registry_faults_consul.sh...):
# the store they run against, its section in the agents' configs, the bounded load through the
# client's haproxy and its count, the client's catalog and metrics.  On top of tests/etcd/lib.sh
# (regent agents with testsource) and tests/harness/lib.sh (daemons by pid, ports).
#
#   DRILL_STORE=etcd     the default: a real etcd on loopback
#   DRILL_STORE=consul   the Consul emulator (tests/consul/consul_emulator.py, request log on),
#                        or a real `consul agent -dev` with REGENT_CONSUL_MODE=real
#                        (tests/consul/consul_lib.sh; exits 77 without a consul binary)
#
#   source "$here/lib.sh"              # sets REGENT_* from REGENT_BUILD (default build/)
#   drill_init                         # harness_init (and the Consul mode)
#   drill_store_start NAME             # -> $DRILL_ADDR: etcd's endpoint or the agent's URL
#   drill_store_section [LINE...]      # "[store S]" for $DRILL_ADDR, ttl $DRILL_STORE_TTL s
#                                      # (default 10), then LINE...
#   drill_agent_config NAME [LINE...]  # a backend agent's $H_TMP/NAME.ini (testsource from
#                                      # $H_TMP/NAME.inst, no sink, stop keeps registrations)
#   drill_client_config [LINE...]     # the client's $H_TMP/c.ini (store, sinks + LINE...)
#   drill_client_ports / drill_client_sinks [LINE...]  # the client's ports and its sinks'
#                                      # sections (managed haproxy, stats, service web)
#   drill_client_ready                 # routed, master tracked, M0 = its pid
#   bad / drill_reloads / drill_case_begin / drill_case_end   # a drill's cases (below)
#   drill_up PORT / drill_catalog PORT / drill_metric PORT NAME
#   drill_load_start PORT / drill_load_stop / drill_load_count   # -> "requests failed refused"
#   drill_events_metric / drill_events_name   # the client's store events: etcd's watch
#                                             # events, Consul's service reads
#   drill_consul_begin NODE / drill_consul_end  # Consul: what the agent saw meanwhile
#   drill_webs / drill_web_start / drill_web_line / drill_join / drill_sleep_rest  # backends
#                                      # w1..wN on 127.0.0.2.., a join, a fault's length
D_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
D_BUILD=${REGENT_BUILD:-$D_SRC/build}
export REGENT_SOURCE_DIR=${REGENT_SOURCE_DIR:-$D_SRC}
export REGENT_TEST_DIR=${REGENT_TEST_DIR:-$D_SRC/tests}
export REGENT_BIN=${REGENT_BIN:-$D_BUILD/core/regent}
export REGENT_PLUGIN_DIR=${REGENT_PLUGIN_DIR:-$D_BUILD/plugins}
export PYTHON3=${PYTHON3:-python3}
DRILL_STORE=${DRILL_STORE:-etcd}
[[ $DRILL_STORE == etcd || $DRILL_STORE == consul ]] ||
	{ echo "DRILL_STORE must be etcd or consul, got $DRILL_STORE" >&2; exit 2; }
# consul_lib.sh first: its agent_start (the Consul agent; also consul_agent_start) is then
# replaced by etcd/lib.sh's (a regent agent).
if [[ $DRILL_STORE == consul ]]; then
	# shellcheck source=../consul/consul_lib.sh
	source "$REGENT_TEST_DIR/consul/consul_lib.sh"
fi
# shellcheck source=../etcd/lib.sh
source "$REGENT_TEST_DIR/etcd/lib.sh"

drill_init() {
	if [[ $DRILL_STORE == consul ]]; then consul_test_init; else harness_init || exit 1; fi
}

drill_store_start() {
	if [[ $DRILL_STORE == consul ]]; then
		EMU_VERBOSE=1 consul_agent_start || return 1
		DRILL_ADDR=$AGENT_URL
	else
		DRILL_ADDR=$(etcd_start "$1") || return 1
	fi
}

drill_store_section() {
	local line
	if [[ $DRILL_STORE == consul ]]; then
		printf '[store consul]\naddress = %s\nttl = %ss\n' "$DRILL_ADDR" "${DRILL_STORE_TTL:-10}"
	else
		printf '[store etcd]\nendpoints = %s\nttl = %s\n' "$DRILL_ADDR" "${DRILL_STORE_TTL:-10}"
	fi
	for line in "$@"; do printf '%s\n' "$line"; done
}

drill_agent_config() {
	local name=$1; shift
	if [[ $DRILL_STORE == consul ]]; then
		AGENT_STORE=$(drill_store_section "$@") AGENT_NO_SINK=1 agent_config "$name" ""
	else
		AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config "$name" "$DRILL_ADDR" "$@"
	fi
}

# drill_client_ports: HP (the service web through the client's haproxy), HS (haproxy's stats
# listener) and RS (the client's stats sink), and the haproxy sink's directory $H_TMP/haproxy.
drill_client_ports() {
	HP=$(free_port); HS=$(free_port); RS=$(free_port)
	mkdir -p "$H_TMP/haproxy" && chmod 0750 "$H_TMP/haproxy"
}
# drill_client_config [LINE...]: the client agent's $H_TMP/c.ini (node c, the store's section,
# the client's sinks: drill_client_sinks LINE...).
drill_client_config() {
	{ printf '[agent]\nnode = c\nstate_dir = %s\n\n' "$H_TMP/c.state"
	  drill_store_section; printf '\n'; drill_client_sinks "$@"; } > "$H_TMP/c.ini"
}

# drill_client_sinks [LINE...]: the client's sinks and service: [sink haproxy] managed in
# $H_TMP/haproxy (LINE... added to it), [sink stats] on RS, [service web] on HP with an http
# check every 500 ms.
drill_client_sinks() {
	local line
	printf '[sink haproxy]\nmanage          = true\n'
	for line in "$@"; do printf '%s\n' "$line"; done
	printf 'config_file     = %s\nmaster_socket   = %s\nbind_address    = 127.0.0.1\n' \
		"$H_TMP/haproxy/regent.cfg" "$H_TMP/haproxy/master.sock"
	printf 'stats           = 127.0.0.1:%s\nreload_interval = 200ms\n\n' "$HS"
	printf '[sink stats]\nlisten = 127.0.0.1:%s\n\n' "$RS"
	printf '[service web]\nport           = %s\nmode           = http\ncheck          = /\ncheck_interval = 500ms\n' "$HP"
}

# drill_client_ready: waits until the client's haproxy routes web (ends the drill when it never
# does), tracks its master (tests/haproxy/hxlib.sh, sourced by the drill) and gives haproxy's
# checks time to see both servers up; M0 = the master's pid.
drill_client_ready() {
	if ! wait_for --timeout 60 drill_up "$HP"; then
		echo "drill: haproxy never routed to the backends" >&2
		exit 1
	fi
	hx_track_master "$H_TMP/haproxy/master.sock"
	sleep 2 # both servers up in haproxy's checks
	M0=$(hx_master_pid "$H_TMP/haproxy/master.sock")
}

# drill_up PORT: the client's haproxy answers 200 on PORT.
drill_up() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 "http://127.0.0.1:$1/")" == 200 ]]; }
# drill_catalog PORT: the stats sink's /v1/catalog on PORT, without its time stamp.
drill_catalog() {
	curl -s --noproxy '*' -m 5 "http://127.0.0.1:$1/v1/catalog" | "$PYTHON3" -c 'import json,sys; d=json.load(sys.stdin); d.pop("generated", None); print(json.dumps(d.get("services", d), sort_keys=True))'
}
# drill_metric PORT NAME: the sum of the stats sink's series of NAME (0 when it has none).
drill_metric() { curl -s --noproxy '*' -m 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

# drill_load_start PORT: tests/e2e/loadgen.py through the client's haproxy on PORT (2 threads, a
# new connection per request, 10 ms apart each) until drill_load_stop; one line per request in
# $H_TMP/load.jsonl.
drill_load_start() {
	daemon_start load "$PYTHON3" "$REGENT_TEST_DIR/e2e/loadgen.py" --url "http://127.0.0.1:$1/" \
		--out "$H_TMP/load.jsonl" --duration 600 --stop-file "$H_TMP/load.stop" --threads 2 --interval 0.01
}
drill_load_stop() {
	touch "$H_TMP/load.stop"
	wait_for --timeout 15 bash -c "! kill -0 $(daemon_pid load) 2>/dev/null" || true
	daemon_stop load
}
# drill_load_count: "<requests> <failed> <refused>" of the load's log.
drill_load_count() {
	"$PYTHON3" -c '
import json, sys
n = f = r = 0
for line in open(sys.argv[1]):
    d = json.loads(line); n += 1
    if d.get("status") != 200:
        f += 1; r += "refused" in (d.get("error") or "").lower()
print(n, f, r)' "$H_TMP/load.jsonl"
}

# The cases of a drill with a managed client (drill_client_ports/_sinks/_ready; M0 its master):
#   bad WHAT                     a failed claim, named as the harness's checks name theirs
#                                (tests/mutation/run shows it); sets fail=1
#   drill_reloads                how many times haproxy's master reloaded (its own count)
#   drill_case_begin             a fresh load through HP; R0 = drill_reloads
#   drill_case_end NAME RECOVERY NOTE RELOADS [CATALOG]
#                                stops the load and checks it (requests, 0 failed) and the
#                                client: the same master, RELOADS = none (no reload since the
#                                case began) or some (at least one), its /v1/catalog equal to
#                                CATALOG when one is given; prints the row (DRILL|$drill|...).
# (fail and drill are the drill's own: its verdict, and its name in the rows)
# shellcheck disable=SC2034
bad() { echo "not ok - $*" >&2; fail=1; }
drill_reloads() { haproxy_master_cmd --sock "$H_TMP/haproxy/master.sock" "show proc" 2>/dev/null | awk '$2 == "master" { print $3 }'; }
drill_case_begin() {
	rm -f "$H_TMP/load.stop" "$H_TMP/load.jsonl"
	R0=$(drill_reloads)
	drill_load_start "$HP"
	sleep 1
}
# shellcheck disable=SC2154
drill_case_end() {
	local name=$1 recovery=$2 note=$3 reloads=$4 want=${5:-} total failed refused m r c ok=yes
	sleep 2
	drill_load_stop
	read -r total failed refused < <(drill_load_count)
	m=$(hx_master_pid "$H_TMP/haproxy/master.sock")
	r=$(drill_reloads)
	[[ -n "$m" && "$m" == "$M0" ]] || { ok=no; note+="${note:+; }haproxy master changed ($M0 -> ${m:-none})"; }
	if [[ $reloads == none && "$r" != "$R0" ]]; then ok=no; note+="${note:+; }haproxy reloaded ($R0 -> $r)"; fi
	if [[ $reloads == some && "$r" == "$R0" ]]; then ok=no; note+="${note:+; }no reload"; fi
	if [[ -n "$want" ]]; then
		c=$(drill_catalog "$RS")
		[[ -n "$c" && "$c" == "$want" ]] || { ok=no; note+="${note:+; }the client's catalog differs"; }
	fi
	[[ $reloads == some ]] && note+="${note:+; }reloads $R0 -> $r"
	[[ $total -gt 0 && $failed -eq 0 ]] || ok=no
	echo "drill: $name: $total requests, $failed failed ($refused refused)${note:+; $note}" >&2
	echo "DRILL|$drill|$name|$total|$failed|$recovery|$refused refused${note:+; $note}"
	mv "$H_TMP/load.jsonl" "$H_TMP/load-${name%%.*}.jsonl" 2>/dev/null
	if [[ $ok == yes ]]; then echo "ok - $name: 0 of $total requests failed" >&2
	else bad "$name: $failed of $total requests failed${note:+; $note}"; fi
}

# The backends of a drill with a join (registry_faults, registry_faults_consul): loopback http
# servers, the I-th on 127.0.0.(I+1):PORT[I], answering "wI" (the caller declares PORT: declare
# -A PORT); the backend agent b's instance lines in $H_TMP/b.inst.
#   drill_webs N                 ports and pages for N servers (none started)
#   drill_web_start I            starts server I (daemon webI)
#   drill_web_line I             server I's line for b.inst ("b/wI/80 web 127.0.0.(I+1) PORT")
#   drill_join I                 server I joins: started, its line added to b.inst, then the
#                                client's haproxy (HP) must answer from it within 10 s;
#                                JOIN = "X s" from its line to the first answer (or "not within
#                                10 s"), WANT = the client's catalog (RS) then, which must hold
#                                the I instances; bad otherwise
#   drill_sleep_rest T SECS      sleeps what is left of SECS since T (now)
drill_webs() {
	local i
	for ((i = 1; i <= $1; i++)); do
		PORT[$i]=$(free_port "127.0.0.$((i + 1))")
		mkdir -p "$H_TMP/www$i" && echo "w$i" > "$H_TMP/www$i/index.html"
	done
}
drill_web_start() {
	daemon_start "web$1" "$PYTHON3" -m http.server --bind "127.0.0.$(($1 + 1))" --directory "$H_TMP/www$1" "${PORT[$1]}"
}
drill_web_line() { printf 'b/w%s/80 web 127.0.0.%s %s\n' "$1" "$(($1 + 1))" "${PORT[$1]}"; }
# shellcheck disable=SC2034 # (JOIN and WANT are the caller's)
drill_join() {
	local i=$1 t n
	drill_web_start "$i"
	wait_for --timeout 10 bash -c "curl -s -m 1 --noproxy '*' http://127.0.0.$((i + 1)):${PORT[$i]}/ | grep -qx w$i" ||
		bad "the joining backend w$i does not answer"
	t=$(now)
	drill_web_line "$i" >> "$H_TMP/b.inst"
	# shellcheck disable=SC2317 # (called by wait_for)
	from_joined() { curl -s -m 2 --noproxy '*' "http://127.0.0.1:$HP/" | grep -qx "w$i"; }
	if wait_for --timeout 10 from_joined; then JOIN="$(elapsed "$t") s"
	else JOIN="not within 10 s"; bad "the join (w$i) was not answered through haproxy within 10 s"; fi
	WANT=$(drill_catalog "$RS")
	n=$(grep -oE '127\.0\.0\.[0-9]+' <<< "$WANT" | sort -u | wc -l)
	[[ $n -eq $i ]] || bad "the client's catalog has $n of the $i instances after the join"
}
drill_sleep_rest() {
	"$PYTHON3" -c 'import sys,time; time.sleep(max(0.0, float(sys.argv[2]) - (time.time() - float(sys.argv[1]))))' "$1" "$2"
}

# What a client's store counts when the registry tells it something changed: etcd's watch
# events; Consul's reads of a service (one per service whose checks or tags moved).
drill_events_metric() {
	if [[ $DRILL_STORE == consul ]]; then echo regent_consul_service_reads_total
	else echo regent_store_watch_events_total; fi
}
drill_events_name() { if [[ $DRILL_STORE == consul ]]; then echo "service reads"; else echo "watch events"; fi; }

# drill_consul_begin NODE: before the faults, counts the emulator's request log and starts a
# poller of the agent's critical checks of NODE's services (daemon "critpoll", every 0.25 s: the
# agent's view, real or emulated).  drill_consul_end: stops it and prints "agent: registers +R,
# deregisters +D, TTLs missed +M, reaped +P; critical checks seen C in N polls"; returns 1 when
# any of these is not 0 (or nothing was polled).  The request log exists in emulator mode only.
drill_consul_begin() {
	read -r D_REGS0 D_DEREGS0 D_MISSED0 D_REAPED0 < <(drill_consul_counts)
	: > "$(daemon_log critpoll)" # this run's polls only
	daemon_start critpoll bash -c "while :; do
		n=\$(curl -s -m 2 --noproxy '*' '$AGENT_URL/v1/health/state/critical' | grep -oE '\"ServiceID\": ?\"$1:' | wc -l)
		echo \"poll \$n\"; sleep 0.25; done"
}
drill_consul_end() {
	local polls crit r d m p ok=0 agent
	daemon_stop critpoll
	read -r polls crit < <(awk '/^poll /{n++; if ($2 > m) m = $2} END{print n + 0, m + 0}' "$(daemon_log critpoll)")
	read -r r d m p < <(drill_consul_counts)
	if [[ $CONSUL_MODE == emulator ]]; then
		agent="agent: registers +$((r - D_REGS0)), deregisters +$((d - D_DEREGS0)), TTLs missed +$((m - D_MISSED0)), reaped +$((p - D_REAPED0))"
		[[ $r == "$D_REGS0" && $d == "$D_DEREGS0" && $m == "$D_MISSED0" && $p == "$D_REAPED0" ]] || ok=1
	else
		agent="agent: real consul (no request log)"
	fi
	[[ $crit -eq 0 && $polls -gt 0 ]] || ok=1
	echo "$agent; critical checks seen $crit in $polls polls"
	return $ok
}
# drill_consul_counts: "<registers> <deregisters> <TTLs missed> <services reaped>" so far, from
# the emulator's request log (emulator mode only: "- - - -" against a real agent).
drill_consul_counts() {
	local l
	l=$(daemon_log consul)
	if [[ $CONSUL_MODE != emulator ]]; then echo "- - - -"; return 0; fi
	echo "$(grep -c 'PUT /v1/agent/service/register -> ' "$l") $(grep -c 'PUT /v1/agent/service/deregister/.* -> ' "$l")" \
	     "$(grep -c 'missed its TTL' "$l") $(grep -c 'critical for too long' "$l")"
}
