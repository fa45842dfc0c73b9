#!/usr/bin/env bash
# tests/etcd/failover_test.sh: failover in about one election.  3-member etcd; a backend agent
# (a) and a client agent (b) both list the leader first.  Every request carries etcd's
# require-leader metadata, so a member without a leader refuses at once ("no leader") and the
# agents move to the next member instead of waiting for the request timeout.  Measured: the
# time from the fault to a new instance of a in b's catalog, with the leader SIGKILLed and,
# separately, SIGSTOPped (frozen).  Target < 1.5 s; the checks use generous bounds (a loaded
# test machine) and the figures are printed.
source "$(dirname "$0")/lib.sh"
harness_init
EPS=$(etcd_cluster_start 3 f) || exit 1
leader=$(etcd_leader "$EPS")
check "a leader was elected" test -n "$leader"
LEP=$(etcd_endpoint "$leader")
ORDER=$LEP
for e in ${EPS//,/ }; do [[ "$e" == "$LEP" ]] || ORDER+=", $e"; done

echo "a/c1/80 web 127.0.0.2 8080" > "$H_TMP/a.inst"
AGENT_TTL=10 AGENT_NO_SINK=1 agent_config a "$ORDER"
AGENT_TTL=10 agent_config b "$ORDER"
agent_start a
agent_start b
check "before: registered and discovered through the leader" \
    wait_for --timeout 15 snap_has b '    a/c1/80 127.0.0.2:8080/tcp node=a'
add() { echo "$1" >> "$H_TMP/a.inst"; }

# 1. The leader is killed; the clock starts at the signal.
pid=$(daemon_pid "etcd-$leader")
if k=$(ehelp until-snap "$H_TMP/b.sink" '    a/c2/80 127.0.0.3:8080/tcp node=a' 20 \
        bash -c "kill -KILL $pid; echo 'a/c2/80 web 127.0.0.3 8080' >> '$H_TMP/a.inst'"); then
    check "leader SIGKILLed: a new instance reaches the client (${k} s)" lt "$k" 10
else
    check "leader SIGKILLed: a new instance reaches the client" false
fi
check "the agents were refused by a member without a leader or moved on" \
    bash -c "grep -q 'switching from' '$H_TMP/a.log' && grep -q 'switching from' '$H_TMP/b.log'"
etcd_kill "$leader" # reaps what is left of it
etcd_restart "$leader"
check "the killed member is back" wait_for --timeout 30 etcd_healthy "$LEP"

# 2. The (new) leader is frozen.
sleep 2
leader2=$(etcd_leader "$EPS")
check "a leader after the restart" test -n "$leader2"
pid=$(daemon_pid "etcd-$leader2")
if s=$(ehelp until-snap "$H_TMP/b.sink" '    a/c3/80 127.0.0.4:8080/tcp node=a' 30 \
        bash -c "kill -STOP $pid; echo 'a/c3/80 web 127.0.0.4 8080' >> '$H_TMP/a.inst'"); then
    check "leader SIGSTOPped: a new instance reaches the client (${s} s)" lt "$s" 15
else
    check "leader SIGSTOPped: a new instance reaches the client" false
fi
kill -CONT "$pid"
echo "measured: fault -> new instance in the client's catalog: leader SIGKILL ${k:-?} s, leader SIGSTOP ${s:-?} s (target < 1.5 s)"
finish_agents a b
harness_summary
