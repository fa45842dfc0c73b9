#!/usr/bin/env bash
# tests/etcd/failover_test.sh: failover in about one election.  3-member etcd; a backend agent
# (a) and a client agent (b) both list the leader first.  Every request carries etcd's
# require-leader metadata, so a member without a leader refuses at once ("no leader") and the
# agents move to the next member instead of waiting for the request timeout; a member that
# accepts connections but never answers (frozen) is left when its check is not answered within
# 200 ms while the next member's is.  Measured: the time from the fault to a new instance of a
# in b's catalog, with the leader SIGKILLed and, separately, SIGSTOPped (frozen), broken down
# from the logs into etcd's own election (the signal -> the first "became leader" after it in
# an etcd log), regent's part (the new leader -> a sends the txn that puts the instance; its
# answer -> b's catalog change -> seen by this test in b's sink, polled every 10 ms) and the
# txn's round trip (etcd's commit under the new leader).  Target < 1.5 s in all, regent's part
# < 0.1 s (docs/etcd.md); the checks use generous bounds (a loaded test machine: 10 s in all,
# 1 s for regent's part) and the figures are printed.  etcd runs with its default
# heartbeat-interval (100 ms) and election-timeout (1000 ms, randomised in [1x, 2x)).
# RUNS=N (default 1) repeats both faults N times (the agents restarted before each run with
# the new leader listed first) and prints min/median/max.
source "$(dirname "$0")/lib.sh"
harness_init
RUNS=${RUNS:-1}
EPS=$(etcd_cluster_start 3 f) || exit 1

# configure LEADER: both agents' configs list LEADER's endpoint first.
configure() {
    local lep order e
    lep=$(etcd_endpoint "$1")
    order=$lep
    for e in ${EPS//,/ }; do [[ "$e" == "$lep" ]] || order+=", $e"; done
    AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config a "$order"
    AGENT_TTL=10 agent_config b "$order"
}
add() { echo "$1" >> "$H_TMP/a.inst"; }
echo "a/c0/80 web 127.0.0.2 8080" > "$H_TMP/a.inst"
n=0 # instances added
ra=a rb=b started=0 # the agents' current daemon names

# start_agents RUN: (re)starts both agents with the current leader first; waits until the
# client sees the backend's latest instance.
start_agents() {
    local leader
    leader=$(etcd_leader "$EPS") || return 1
    configure "$leader"
    if [[ $started == 1 ]]; then
        daemon_stop "$ra"; daemon_stop "$rb"
        ra=a$1 rb=b$1
    fi
    started=1
    agent_start_as "$ra" a
    agent_start_as "$rb" b
    wait_for --timeout 20 snap_has b "    a/c$n/80 127.0.0.2:8080/tcp node=a"
}

# fault SIG: (run in a subshell, after n=$((n + 1))) the leader gets SIG while instance n is
# added; the signal's time goes to $H_TMP/fault_at; prints the time (epoch seconds) the client's
# catalog held it (or "timeout").
fault() {
    local sig=$1 leader pid
    leader=$(etcd_leader "$EPS") || { echo timeout; return 1; }
    pid=$(daemon_pid "etcd-$leader")
    echo "$leader" > "$H_TMP/faulted"
    ehelp until-snap-at "$H_TMP/b.sink" "    a/c$n/80 127.0.0.2:8080/tcp node=a" 30 \
        bash -c "echo \$EPOCHREALTIME > '$H_TMP/fault_at'; kill -$sig $pid; echo 'a/c$n/80 web 127.0.0.2 8080' >> '$H_TMP/a.inst'"
}

# measure RUN WHAT SEEN: the failover's parts from the logs (etcd's own election, then regent:
# the backend's put answered, the client's catalog change, the test seeing it); prints one
# line, appends "total etcd regent" to $H_TMP/WHAT.times and checks generous bounds.
measure() {
    local run=$1 what=$2 seen=$3 t0 p total regent pe pr pc pd ps
    t0=$(cat "$H_TMP/fault_at")
    total=$("$PY" -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$seen")
    if ! p=$(ehelp failover-times "$t0" "$seen" "/backends/web/a/c$n/80" "$H_TMP/$ra.log" \
            "$H_TMP/$rb.log" "$H_TMP"/etcd-f?.log); then
        check "run $run: leader $what: the logs show the election, the put and the catalog change" false
        return 1
    fi
    read -r pe pr pc pd ps <<< "$p"
    # regent's part: after the new leader, until the txn went out; then the client's catalog
    # after the put's answer, and the test's poll (the txn's round trip is etcd's commit)
    regent=$("$PY" -c "import sys; print('%.3f' % sum(map(float, sys.argv[1:])))" "$pr" "$pd" "$ps")
    echo "breakdown: run $run leader $what: fault -> client catalog $total s = etcd $pe (fault -> new leader) + regent $pr (-> backend's txn sent) + etcd $pc (-> txn answered) + regent $pd (-> client's catalog) + $ps (-> seen by the test); regent in all $regent"
    echo "$total $pe $regent $pr $pc $pd $ps" >> "$H_TMP/$what.times"
    check "run $run: leader $what: a new instance reaches the client (${total} s)" lt "$total" 10
    # regent's share: the target is under 0.1 s (docs/etcd.md); 1 s here for a loaded machine
    check "run $run: leader $what: regent adds $regent s after the new leader" lt "$regent" 1
}

for ((run = 1; run <= RUNS; run++)); do
    if ! start_agents "$run"; then
        check "run $run: registered and discovered through the leader" false
        break
    fi
    # 1. The leader is killed; the clock starts at the signal.
    n=$((n + 1))
    if k=$(fault KILL); then
        measure "$run" SIGKILL "$k"
    else
        check "run $run: leader SIGKILLed: a new instance reaches the client" false
    fi
    leader=$(cat "$H_TMP/faulted")
    etcd_kill "$leader" # reaps what is left of it
    etcd_restart "$leader"
    check "run $run: the killed member is back" wait_for --timeout 30 etcd_healthy "$(etcd_endpoint "$leader")"

    # 2. The (new) leader is frozen: the agents restarted with it first.
    sleep 1
    if ! start_agents "$run.s"; then
        check "run $run: discovered through the new leader" false
        break
    fi
    n=$((n + 1))
    if s=$(fault STOP); then
        measure "$run" SIGSTOP "$s"
    else
        check "run $run: leader SIGSTOPped: a new instance reaches the client" false
    fi
    leader=$(cat "$H_TMP/faulted")
    kill -CONT "$(daemon_pid "etcd-$leader")"
    check "run $run: the frozen member answers again" wait_for --timeout 30 etcd_healthy "$(etcd_endpoint "$leader")"
done
check "the agents were refused by a member without a leader or moved on" \
    bash -c "cat '$H_TMP'/a*.log | grep -q 'switching from' && cat '$H_TMP'/b*.log | grep -q 'switching from'"
check "a frozen leader was left before its check timed out (the hedge answered first)" \
    bash -c "cat '$H_TMP'/[ab]*.log | grep -q 'no answer to its check within'"
# stats FILE COLUMN: min/median/max of a column of FILE
stats() {
    [[ -f "$1" ]] || { echo "no runs"; return; }
    awk -v c="$2" '{print $c}' "$1" | sort -n |
        awk '{v[NR]=$1} END {if (NR) printf "min %s median %s max %s", v[1], v[int((NR+1)/2)], v[NR]}'
}
for what in SIGKILL SIGSTOP; do
    f="$H_TMP/$what.times"
    echo "measured: leader $what, $(wc -l < "$f" 2>/dev/null || echo 0) runs: fault -> new instance in the client's catalog $(stats "$f" 1) s (target < 1.5 s); etcd's election $(stats "$f" 2) s; regent after the new leader $(stats "$f" 3) s (of which new leader -> txn sent $(stats "$f" 4) s); the txn's round trip (etcd's commit) $(stats "$f" 5) s"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); etcd: $(etcd --version | head -1), heartbeat-interval and election-timeout at etcd's defaults (100 ms, 1000 ms)"
finish_agents "$ra" "$rb"
harness_summary
