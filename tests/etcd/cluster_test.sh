#!/usr/bin/env bash
# tests/etcd/cluster_test.sh: a 3-member etcd cluster on loopback; both agents list the leader
# first. The leader is killed (SIGKILL): registration (agent a) and discovery (agent b) carry
# on through the other members.
source "$(dirname "$0")/lib.sh"
harness_init
EPS=$(etcd_cluster_start 3 c) || exit 1
leader=$(etcd_leader "$EPS")
check "a leader was elected" test -n "$leader"
LEP=$(etcd_endpoint "$leader")
ORDER=$LEP
for e in ${EPS//,/ }; do [[ "$e" == "$LEP" ]] || ORDER+=", $e"; done
SURV=$(tr ',' '\n' <<<"$EPS" | grep -vxF "$LEP" | paste -sd,)

echo "a/c1/80 web 127.0.0.2 8080" > "$H_TMP/a.inst"
AGENT_NO_SINK=1 agent_config a "$ORDER"
agent_config b "$ORDER"
agent_start a
agent_start b
check "waited for: key_exists EPS /backends/web/a/c1/80" wait_for --timeout 10 key_exists "$EPS" /backends/web/a/c1/80
wait_for --timeout 10 snap_has b '    a/c1/80 127.0.0.2:8080/tcp node=a'
check "before: registered and discovered through the leader" \
    snap_has b '    a/c1/80 127.0.0.2:8080/tcp node=a'

etcd_kill "$leader"
t0=$(now)
echo "a/c2/80 web 127.0.0.3 8080" >> "$H_TMP/a.inst"
check "waited for: key_exists SURV /backends/web/a/c2/80" wait_for --timeout 20 key_exists "$SURV" /backends/web/a/c2/80
took_reg=$(elapsed "$t0")
check "leader killed: a new registration lands through the others (${took_reg} s)" \
    key_exists "$SURV" /backends/web/a/c2/80
check "waited for: snap_has b ' a/c2/80 127.0.0.3:8080/tcp node=a'" wait_for --timeout 20 snap_has b '    a/c2/80 127.0.0.3:8080/tcp node=a'
took_disc=$(elapsed "$t0")
check "and reaches the other agent's catalog (${took_disc} s)" snap_has b '    a/c2/80 127.0.0.3:8080/tcp node=a'
t1=$(now)
h_etcdctl "$SURV" put /backends/web/x/c9/80 '{"address":"127.0.0.9","port":8000,"node":"x"}' >/dev/null
check "waited for: snap_has b ' x/c9/80 127.0.0.9:8000/tcp node=x'" wait_for --timeout 10 snap_has b '    x/c9/80 127.0.0.9:8000/tcp node=x'
check "an etcdctl put on a survivor reaches the catalog ($(elapsed "$t1") s)" \
    snap_has b '    x/c9/80 127.0.0.9:8000/tcp node=x'
check "agent a switched endpoints" grep -q "switching from $LEP" "$H_TMP/a.log"
check "agent b switched endpoints" grep -q "switching from $LEP" "$H_TMP/b.log"
sleep 4 # > ttl: the lease is kept alive through the survivors
check "registration stays (lease kept alive through the survivors)" \
    key_exists "$SURV" /backends/web/a/c1/80
sed -i '/a\/c1\/80/d' "$H_TMP/a.inst"
wait_for --timeout 10 snap_lacks b '    a/c1/80 .*'
check "a deregistration reaches the other agent" snap_lacks b '    a/c1/80 .*'
t2=$(now)
daemon_kill a TERM
# The claim is the revoke itself (not the lease expiring 3 s later): the agent logs it, naming
# the survivor it went through, and the keys are gone as soon as it says so.
check "SIGTERM revokes the lease through a survivor (logged)" \
    wait_for --timeout 4 log_has a "lease [0-9a-f]+ revoked at http://127\.0\.0\.1:[0-9]+: [0-9]+ keys removed"
check "the revoke did not go to the dead leader" bash -c "! grep -qF 'revoked at $LEP' '$H_TMP/a.log'"
check "SIGTERM revokes through a survivor: keys gone ($(elapsed "$t2") s after SIGTERM)" \
    eval '[[ -z "$(keys "$SURV" /backends/web/a/)" ]]'
wait_for --timeout 5 snap_lacks b '    a/c2/80 .*'
check "and the other agent's catalog follows" snap_lacks b '    a/c2/80 .*'
echo "measured: leader killed -> registration ${took_reg} s, discovery ${took_disc} s"
finish_agents a b
harness_summary
