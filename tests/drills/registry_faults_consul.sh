#!/usr/bin/env bash
# tests/drills/registry_faults_consul.sh - the Consul agent fails under a client that routes a
# steady load through the haproxy it manages: one agent (the emulator; a real `consul agent
# -dev` with REGENT_CONSUL_MODE=real) keeping its state in a data directory (the emulator's
# --state-file: services, checks and check state, as a real agent's -data-dir), a backend
# regent registering two loopback http servers at it, a client regent reading the catalog from
# it.  The design's rule for a registry that fails (docs/consul.md "Failures"): keep running,
# keep serving the last known catalog, never empty haproxy because a read failed, resume when
# the agent answers again.  Each case counts the requests that failed while it happened; the
# bar is 0, with the same haproxy master, no reload and the client's /v1/catalog the same after
# as before:
#   a. the agent SIGKILLed, started again FAULT_SEC later with its state, on the same port
#      (FAULT_SEC + ttl/3 + 2 s for its start stay under the ttl: the checks' state has not
#      expired, they come back passing);
#   b. the agent frozen (SIGSTOP) for FAULT_SEC, then resumed (the checks' TTLs run on while
#      it is frozen);
#   d. the agent away OUTAGE s (longer than the backend's ttl: the checks' persisted state has
#      expired when it starts again, and Consul brings such a check back critical), started
#      again with its state; then a new backend instance must be routed (time from its
#      registration to the first answer from it, printed; bound 10 s), without a reload.
# (no case c: Consul has no compaction; a blocking query's index going back is read afresh.)
# Each case also checks what the agent saw (tests/drills/lib.sh drill_consul_begin/_end: no
# register, no deregister, no TTL missed, nothing reaped, no check seen critical; in d the
# checks restored critical are shown, not asserted) and the agents' logs: at most one warning
# per part (the backend's registration, the client's discovery) for the fault, not one per
# retry, and the requests that failed meanwhile (the client's regent_store_errors_total; the
# backend's "; retrying" lines, or the count its end line gives).
# Each agent that failed must also say it works again within RESUME_BOUND (3 s) of the agent's
# first answer after its start: the design's "about a second" whatever the outage length (the store's recovery check,
# plugins/consul/consul_recover.c, once a second; the rest is the machine's load).  FAULT_SEC is
# long enough for the retries' backoff to grow past that bound (a pass's to ttl/3 = 10 s, a
# read's to 10 s): without the check each side waited out its backoff, 2-14 s.
# DRILL_SMOKE=1 (the test suite's drill_consul_faults_smoke, DRILL_CASES=ad): ttl 15 s,
# FAULT_SEC 8, OUTAGE 20.
# Full: ttl 30 s, FAULT_SEC 10, OUTAGE 40.  DRILL_TTL, DRILL_FAULT_SEC, DRILL_OUTAGE and
# DRILL_RESUME_BOUND override; DRILL_CASES (default abd) picks cases.  In d the client reads the
# checks the agent restored critical, often before the backend passed them again: its settle
# (plugins/consul/consul_disc.c) holds that read; before it, the client drained them then (1 of
# 11 smoke-length runs, 2 of 2 full ones in session 27: 238-678 requests answered 503).
# Rows: DRILL|registry_faults_consul|<case>|requests|failed|recovery|note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # (lib.sh's)
DRILL_STORE=consul
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
if [[ "${DRILL_SMOKE:-0}" == 1 ]]; then TTL=15 FAULT_SEC=8 OUTAGE=20; else TTL=30 FAULT_SEC=10 OUTAGE=40; fi
RESUME_BOUND=${DRILL_RESUME_BOUND:-3}
TTL=${DRILL_TTL:-$TTL}
FAULT_SEC=${DRILL_FAULT_SEC:-$FAULT_SEC}
OUTAGE=${DRILL_OUTAGE:-$OUTAGE}
# a and b keep the checks' state: FAULT_SEC, the ttl/3 since the last pass and 2 s for the
# agent's start (a loaded machine) stay under the ttl.  d lets it expire: OUTAGE over the ttl.
if ((3 * FAULT_SEC + TTL + 6 > 3 * TTL || OUTAGE <= TTL)); then
	echo "registry_faults_consul: FAULT_SEC ($FAULT_SEC) + ttl/3 + 2 s must stay within the ttl ($TTL), OUTAGE ($OUTAGE) over it" >&2
	exit 2
fi
# shellcheck disable=SC2034 # (tests/etcd/lib.sh's elapsed uses it)
PY=${PYTHON3:-python3}
# shellcheck disable=SC2034 # (drill_case_end names the rows with it)
drill=registry_faults_consul

export DRILL_STORE_TTL=$TTL AGENT_DATA_DIR=$H_TMP/consul.data
drill_store_start || exit 1
# shellcheck disable=SC2034 # (lib.sh's drill_web* use it)
declare -A PORT
drill_webs 3
drill_web_start 1
drill_web_start 2
{ drill_web_line 1; drill_web_line 2; } > "$H_TMP/b.inst"
drill_agent_config b

drill_client_ports
drill_client_config
agent_start b
agent_start c
drill_client_ready
cat0=$(drill_catalog "$RS")
fail=0

# The agent: stopped by signal, started again (its state kept) on the same port.
# agent_again: the agent started again on its port, and answering (the times below count from
# its first answer: the design's "resume within about a second" is about a registry answering).
agent_again() {
	drill_store_start || { echo "drill: the Consul agent did not start again" >&2; exit 1; }
	wait_for --timeout 30 agent_ready || { echo "drill: the Consul agent does not answer" >&2; exit 1; }
}

# Each case marks the agents' logs and the client's failed store requests at its start (mark),
# then reads what they logged since (since NAME: those lines).
mark() { lb=$(wc -l < "$H_TMP/b.log") lc=$(wc -l < "$H_TMP/c.log") e0=$(drill_metric "$RS" regent_store_errors_total); }
since() { local n=$lb; [[ $1 == c ]] && n=$lc; tail -n +$((n + 1)) "$H_TMP/$1.log"; }
# warns NAME: the store's warnings and errors; failures b: the backend's failed requests (a
# "; retrying" line each, at whatever level, or what its end line counts, whichever is more);
# the client's come from its metric.
warns() { since "$1" | grep -cE '(warn|error): store consul: '; }
failures_b() {
	local lines ends
	lines=$(since b | grep -cE 'store consul: .*; retrying')
	ends=$(since b | sed -nE 's/.*store consul: .* again after [0-9.]+ s and ([0-9]+) failures?.*/\1/p' | awk '{s += $1} END {print s + 0}')
	echo $((lines > ends ? lines : ends))
}
failures_c() { echo $(($(drill_metric "$RS" regent_store_errors_total) - e0)); }
# again NAME: the store said it works again (today's lines, or the host's failure note's end);
# again_after NAME T: how long after T (epoch s) its log says so, from the line's own time (the
# polling and the tools' start would add to a clock read when it is seen).
AGAIN_RE='store consul: .*(reading the catalog from .* again|accepts requests again|again after [0-9.]+ s and [0-9]+ failure)'
again() { since "$1" | grep -qE "$AGAIN_RE"; }
again_after() {
	"$PY" -c 'import sys, datetime
a = datetime.datetime.strptime(sys.argv[2][:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
print("%.1f" % max(0.0, a - float(sys.argv[1])))' "$2" "$(since "$1" | grep -m1 -E "$AGAIN_RE")"
}
# drains: the instances the client's haproxy sink drained (the client read them out of the
# catalog: their checks critical).
drains() { since c | grep -cE 'sink haproxy: .*: instance .* drained'; }
# recovered T WHAT: REC = "backend again X s after WHAT, client ..." for the parts that failed
# (each waited for up to 30 s), or that one had no failure.
recovered() {
	local who name took
	REC=""
	for who in b c; do
		name=$([[ $who == b ]] && echo backend || echo client)
		if [[ $(warns "$who") -eq 0 ]] && ! since "$who" | grep -qE 'store consul: .*(; retrying|again)'; then
			REC+="${REC:+, }$name: no failure"
		elif wait_for --timeout 30 again "$who"; then
			took=$(again_after "$who" "$1")
			REC+="${REC:+, }$name again $took s after $2"
			lt "$took" "$RESUME_BOUND" ||
				bad "$case_: the $name worked again $took s after $2 (bound $RESUME_BOUND s: about a second, and the load)"
		else
			REC+="${REC:+, }$name not again within 30 s of $2"
			bad "$case_: the $name did not say it works again"
		fi
	done
}
# logs MIN: one warning per agent at most (its one part: the backend's registration, the
# client's discovery; one for the fault, not one per retry, the core's "unhealthy" reading it
# as "the warning above"); with MIN=several, each agent that failed failed more often than it
# warned.
logs() {
	local wb wc fb fc
	wb=$(warns b) wc=$(warns c) fb=$(failures_b) fc=$(failures_c)
	LOGS="warnings: backend $wb for $fb failed requests, client $wc for $fc; the client drained $(drains) instances"
	[[ $wb -le 1 && $wc -le 1 ]] || bad "$case_: $LOGS; want at most 1 each (one per part)"
	if [[ $1 == several ]]; then
		[[ $fb -gt $wb && $fc -gt $wc ]] || bad "$case_: $LOGS; want several failures, fewer warnings"
	fi
	since b | grep -E '(warn|error): store consul: ' | sed 's/^/drill: backend: /' >&2
	since c | grep -E '(warn|error): store consul: ' | sed 's/^/drill: client: /' >&2
}
# agent_seen: drill_consul_end's line (what the agent saw); with "assert", a failure if any.
agent_seen() {
	if SEEN=$(drill_consul_end); then return 0; fi
	[[ $1 == assert ]] && bad "$case_: at the agent: $SEEN"
	return 0
}

CASES=${DRILL_CASES:-abd}
want() { [[ $CASES == *"$1"* ]]; }

# ---- a. the agent SIGKILLed, started again with its state ---------------------------------------
if want a; then
case_=a
drill_case_begin
mark
drill_consul_begin b
agent_kill
sleep "$FAULT_SEC"
agent_again
t=$(now)
recovered "$t" "its first answer"
sleep 1
logs some
agent_seen assert
drill_case_end "a. the Consul agent SIGKILLed, started again ${FAULT_SEC} s later with its state" \
	"$REC" "$LOGS; $SEEN" none "$cat0"
fi

# ---- b. the agent frozen, resumed ---------------------------------------------------------------
if want b; then
case_=b
drill_case_begin
mark
drill_consul_begin b
t=$(now)
daemon_kill consul STOP
drill_sleep_rest "$t" "$FAULT_SEC" # frozen FAULT_SEC in all
daemon_kill consul CONT
t=$(now)
wait_for --timeout 30 agent_ready || bad "b: the agent did not answer again"
recovered "$t" "the resume"
sleep 1
logs some
agent_seen assert
drill_case_end "b. the Consul agent frozen (SIGSTOP) ${FAULT_SEC} s, resumed" \
	"$REC" "$LOGS; $SEEN" none "$cat0"
fi

# ---- d. the agent away longer than the ttl, started again with its state; then a join ---------
if want d; then
case_=d
drill_case_begin
mark
drill_consul_begin b
agent_kill
sleep "$OUTAGE"
hz=$(http_code "http://127.0.0.1:$RS/healthz")
agent_again
t=$(now)
recovered "$t" "its first answer"
sleep 1
logs several
agent_seen show
cat1=$(drill_catalog "$RS")
[[ "$cat1" == "$cat0" ]] || bad "d: the client's catalog after the outage differs"
# w3 joins: from its line in the backend's source to haproxy answering from it.
drill_join 3
drill_case_end "d. the Consul agent away ${OUTAGE} s (ttl ${TTL} s), started again with its state; then a join" \
	"$REC" "/healthz $hz during the outage; $LOGS; $SEEN; the catalog after it as before; the join (w3) answered through haproxy $JOIN after its registration" none "$WANT"
fi

daemon_stop c
daemon_stop b
exit $fail
