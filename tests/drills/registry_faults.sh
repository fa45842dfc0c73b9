#!/usr/bin/env bash
# tests/drills/registry_faults.sh - the registry fails under a client that routes a steady load
# through the haproxy it manages: a 3-member etcd cluster, a backend agent registering two
# loopback http servers through it, the client watching it (both list every member, the leader
# first, the client with the default backoff).  The design's rule for a registry that fails
# (docs/etcd.md "Failures"): keep running, keep serving the last known catalog, never empty
# haproxy because a read failed, resume when the registry answers again.  Each case counts the
# requests that failed while it happened; the bar is 0, with the same haproxy master, no
# reload and the client's /v1/catalog the same after as before:
#   a. the member the client watches through SIGKILLed, started again FAULT_SEC later;
#   b. the member the client then watches through frozen (SIGSTOP) for FAULT_SEC, then resumed
#      (FAULT_SEC + ttl/3 stays under the ttl: etcd 3.4 before PR #16822 lets a leader frozen
#      longer revoke, once resumed, leases the new leader kept alive, etcd issue #12528; the
#      drill checks regent, not that bug, which docs/etcd.md describes);
#   c. etcd compacted past the client's revision (its last event's), then the member it
#      watches through SIGKILLed: the watch resumed elsewhere is canceled ("compacted") and the
#      prefix read again, which must change nothing;
#   d. every member SIGKILLed: etcd away for OUTAGE s (twice the backend's ttl: its lease is
#      kept by etcd, which extends leases when a leader is elected again), then all started
#      again; then a new backend instance must be routed (time from its registration to the
#      first answer from it, printed; bound 10 s), still without a reload (a free slot).
# DRILL_SMOKE=1 (the test suite's drill_registry_smoke): ttl 5 s, FAULT_SEC 2, OUTAGE 10.
# Full: ttl 10 s, FAULT_SEC 5, OUTAGE 20.  DRILL_TTL, DRILL_FAULT_SEC and DRILL_OUTAGE override.
# Rows: DRILL|registry_faults|<case>|requests|failed|recovery|note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
if [[ $DRILL_STORE != etcd ]]; then
	echo "registry_faults: an etcd drill (a 3-member cluster); DRILL_STORE=$DRILL_STORE not supported" >&2
	exit 77
fi
if [[ "${DRILL_SMOKE:-0}" == 1 ]]; then TTL=5 FAULT_SEC=2 OUTAGE=10; else TTL=10 FAULT_SEC=5 OUTAGE=20; fi
TTL=${DRILL_TTL:-$TTL}
FAULT_SEC=${DRILL_FAULT_SEC:-$FAULT_SEC}
OUTAGE=${DRILL_OUTAGE:-$OUTAGE}
if ((3 * FAULT_SEC + TTL > 3 * TTL)); then
	echo "registry_faults: FAULT_SEC ($FAULT_SEC) + ttl/3 must stay under the ttl ($TTL) (case b)" >&2
	exit 2
fi
PY=${PYTHON3:-python3}
# shellcheck disable=SC2034 # (drill_case_end names the rows with it)
drill=registry_faults

EPS=$(etcd_cluster_start 3 rf) || exit 1
leader=$(etcd_leader "$EPS") || { echo "drill: no etcd leader" >&2; exit 1; }
order=$(etcd_endpoint "$leader")
for e in ${EPS//,/ }; do [[ "$e" == "$(etcd_endpoint "$leader")" ]] || order+=", $e"; done

# Three loopback http servers, each answering its own name; w3 joins in case c.
# shellcheck disable=SC2034 # (lib.sh's drill_web* use it)
declare -A PORT
drill_webs 3
drill_web_start 1
drill_web_start 2
{ drill_web_line 1; drill_web_line 2; } > "$H_TMP/b.inst"
AGENT_TTL=$TTL AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$order"

drill_client_ports
cat > "$H_TMP/c.ini" <<EOF
[agent]
node = c
state_dir = $H_TMP/c.state

[store etcd]
endpoints = $order

$(drill_client_sinks)
EOF
agent_start b
agent_start c
drill_client_ready
cat0=$(drill_catalog "$RS")
fail=0
# watched_member: the etcd member (its name) the client's watch runs on now, from its log.
watched_member() {
	local ep f
	ep=$(grep -oE 'watching /backends/ from revision [0-9]+ on http://[0-9.:]+' "$H_TMP/c.log" | tail -n 1)
	ep=${ep##* on }
	for f in "$H_TMP"/.h/etcd/rf?.client; do
		if [[ "http://127.0.0.1:$(cat "$f")" == "$ep" ]]; then f=${f##*/}; echo "${f%.client}"; return 0; fi
	done
	return 1
}
# case_end NAME RECOVERY NOTE [CATALOG]: drill_case_end with no reload and the catalog as
# before the faults (or as given).
case_end() { drill_case_end "$1" "$2" "$3" none "${4:-$cat0}"; }
# member_back NAME: the etcd member NAME answers again.
member_back() { etcd_healthy "$(etcd_endpoint "$1")"; }

# nwatch: how many times the client's log says it started watching.
nwatch() { grep -c 'watching /backends/ from revision' "$H_TMP/c.log"; }
watching_again() { [[ $(nwatch) -gt $1 ]]; }

# case_on_watched X: case_begin, then m = the member the client watches through and w = how
# many times it started watching so far.
case_on_watched() {
	drill_case_begin
	m=$(watched_member) || { echo "drill: $1: no watch in the client's log" >&2; exit 1; }
	w=$(nwatch)
}

# ---- a. the watched member SIGKILLed, started again -------------------------------------------
case_on_watched a
t=$(now)
etcd_kill "$m"
if wait_for --timeout 30 watching_again "$w"; then moved="$(elapsed "$t") s"; else moved=-; bad "a: the client did not watch again within 30 s of the kill"; fi
after=$(watched_member)
[[ -n "$after" && "$after" != "$m" ]] || bad "a: the watch did not move off $m"
sleep "$FAULT_SEC"
etcd_restart "$m"
wait_for --timeout 30 member_back "$m" || bad "a: $m did not come back"
case_end "a. the member the client watches through ($m) SIGKILLed, started again ${FAULT_SEC} s later" \
	"watching on $after $moved after the kill" "" ""

# ---- b. the watched member frozen, resumed ----------------------------------------------------
case_on_watched b
t=$(now)
kill -STOP "$(daemon_pid "etcd-$m")"
if wait_for --timeout "$FAULT_SEC" watching_again "$w"; then moved="watching on $(watched_member) $(elapsed "$t") s after the freeze"; else moved="the watch stayed"; fi
drill_sleep_rest "$t" "$FAULT_SEC" # frozen FAULT_SEC in all
kill -CONT "$(daemon_pid "etcd-$m")"
wait_for --timeout 30 member_back "$m" || bad "b: $m did not answer again"
case_end "b. the member the client watches through ($m) frozen (SIGSTOP) ${FAULT_SEC} s, resumed" \
	"$moved" "" ""

# ---- c. etcd compacted past the client's revision, then the watched member SIGKILLed --------------
# The client's watch is synced (a compaction does not cancel it) but its revision is its last
# event's: two writes outside its prefix, everything before them compacted, then its member
# killed: the watch resumed on another member from that revision is canceled ("compacted") and
# the prefix read again, which must change nothing.
case_on_watched c
ncanc=$(grep -c 'canceled: compacted' "$H_TMP/c.log")
h_etcdctl "$EPS" put /drill/other 1 >/dev/null && h_etcdctl "$EPS" put /drill/other 2 >/dev/null ||
	bad "c: cannot write to etcd"
rev=$(h_etcdctl "$EPS" get /drill/other -w json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
h_etcdctl "$EPS" compact "$rev" >/dev/null || bad "c: cannot compact at revision $rev"
t=$(now)
etcd_kill "$m"
canceled() { [[ $(grep -c 'canceled: compacted' "$H_TMP/c.log") -gt $ncanc ]]; }
if wait_for --timeout 30 canceled && wait_for --timeout 30 watching_again "$((w + 1))"; then
	moved="read again and watching on $(watched_member) $(elapsed "$t") s after the kill"
else
	moved=-
	bad "c: the client's watch was not canceled by the compaction and resumed (the prefix not read again)"
fi
sleep "$FAULT_SEC"
etcd_restart "$m"
wait_for --timeout 30 member_back "$m" || bad "c: $m did not come back"
case_end "c. etcd compacted past the client's revision, then the member it watches through ($m) SIGKILLed" \
	"$moved" "" ""

# ---- d. every member killed: etcd away for OUTAGE s, back; then a join ---------------------------
drill_case_begin
w=$(nwatch)
lb=$(wc -l < "$H_TMP/b.log") lc=$(wc -l < "$H_TMP/c.log")
# the member the client watches through last, so that its watch is lost once
m=$(watched_member) || m=rf3
for n in rf1 rf2 rf3; do [[ $n == "$m" ]] || etcd_kill "$n"; done
etcd_kill "$m"
sleep "$OUTAGE"
hz=$(http_code "http://127.0.0.1:$RS/healthz")
for m in rf1 rf2 rf3; do etcd_restart "$m" --no-wait; done
t=$(now)
back=yes
for m in rf1 rf2 rf3; do wait_for --timeout 60 member_back "$m" || back=no; done
[[ $back == yes ]] || bad "d: the cluster did not come back"
wait_for --timeout 30 watching_again "$w" || bad "d: the client never watched again"
back_in=$(elapsed "$t")
# The outage in the agents' logs: a warning when a part fails (at most one per member killed
# while it was in use: the members die one after another), not one per retry (each through
# another member and port: the end of the outage counts more failures than warnings).
warns() { tail -n +$(($2 + 1)) "$H_TMP/$1.log" | grep -cE 'warn: store etcd: (registration|discovery): '; }
ended() { tail -n +$(($2 + 1)) "$H_TMP/$1.log" | grep -qE 'store etcd: (registration|discovery) works again .* after [0-9.]+ s and [0-9]+ failures'; }
failures() { tail -n +$(($2 + 1)) "$H_TMP/$1.log" | sed -nE 's/.*store etcd: (registration|discovery) works again .* after [0-9.]+ s and ([0-9]+) failures.*/\2/p' | tail -n 1; }
wait_for --timeout 10 ended b "$lb" && wait_for --timeout 10 ended c "$lc" ||
	bad "d: an agent did not log the outage's end"
wb=$(warns b "$lb") wc=$(warns c "$lc") fb=$(failures b "$lb") fc=$(failures c "$lc")
[[ $wb -ge 1 && $wb -le 3 && $wc -ge 1 && $wc -le 3 && ${fb:-0} -gt $wb && ${fc:-0} -gt $wc ]] ||
	bad "d: the outage logged $wb (backend) and $wc (client) warnings for ${fb:-?} and ${fc:-?} failures; want 1-3 each, fewer than the failures"
cat1=$(drill_catalog "$RS")
[[ "$cat1" == "$cat0" ]] || bad "d: the client's catalog after the outage differs"
# w3 joins: from its line in the backend's source to haproxy answering from it.
drill_join 3
case_end "d. every etcd member SIGKILLed, etcd away ${OUTAGE} s (ttl ${TTL} s), started again; then a join" \
	"watching again $back_in s after etcd was started" "/healthz $hz during the outage; warnings logged: backend $wb for $fb failures, client $wc for $fc; the catalog after it as before; the join (w3) answered through haproxy $JOIN after its registration" "$WANT"

daemon_stop c
daemon_stop b
exit $fail
