#!/usr/bin/env bash
# tests/etcd/restart_test.sh: a restart is invisible to other hosts.  An agent with 3 local
# instances is restarted (SIGTERM, start) 10 times under `etcdctl watch`: no key is ever
# deleted or rewritten, the lease stays the same (kept in state_dir, re-attached on start).
# An instance gone while the agent was down is deleted after reconcile_grace.  (The TTL is 10 s
# so that a restart on a loaded test machine stays well within it.)
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start s1) || exit 1
N=${RESTARTS:-10}

cat > "$H_TMP/b.inst" <<'EOT'
b/c1/80 web 127.0.0.2 8080
b/c2/80 web 127.0.0.3 8080
b/c3/53 dns 127.0.0.4 53 udp
EOT
AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP" "reconcile_grace = 1s"
agent_start b
check "3 keys registered" wait_for --timeout 10 nkeys_is "$EP" 3
leases() { h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp leases | awk '{print $2}' | sort -u; }
lease0=$(leases)
check_eq "one lease" 1 "$(wc -w <<<"$lease0")"
check "the lease id is kept in state_dir (mode 0640)" \
    bash -c "[[ \$(stat -c %a '$H_TMP/b.state/etcd.lease') == 640 ]] && grep -q '^lease=$lease0\$' '$H_TMP/b.state/etcd.lease'"

# Watch the prefix during the restarts: every event is printed.
daemon_start w etcdctl --endpoints "$EP" watch --prefix /backends/
sleep 0.5
worst=0
cur=b
for ((i = 1; i <= N; i++)); do
    t0=$(now)
    daemon_stop "$cur"
    wait_for --timeout 30 agent_gone "$cur" || { check "restart $i: the old process exited" false; break; }
    cur=b$i # each run under its own daemon name and log
    agent_start_as "$cur" b
    if ! wait_for --timeout 15 log_has "$cur" 'store etcd: ready'; then
        check "restart $i: the store became ready" false
        break
    fi
    took=$(elapsed "$t0")
    lt "$worst" "$took" && worst=$took
done
sleep 1.5 # past reconcile_grace: nothing must be deleted later either
daemon_stop w
check "$N restarts: no DELETE event seen by the watcher" bash -c "! grep -q DELETE '$H_TMP/w.log'"
check "$N restarts: no key rewritten (no PUT event)" bash -c "! grep -q PUT '$H_TMP/w.log'"
check "$N restarts: still 3 keys" nkeys_is "$EP" 3
check_eq "$N restarts: the lease is the same" "$lease0" "$(leases)"
check "every restart re-attached to the lease" \
    test "$(cat "$H_TMP"/b*.log | grep -c "re-attached to lease $lease0")" -ge "$N"
check "stop logged that the lease is kept" log_has b "keeping lease $lease0"
echo "measured: stop + start + re-attach, slowest of $N: ${worst} s"

# An instance that went away while the agent was down: deleted after reconcile_grace (1 s).
daemon_stop "$cur"
check "the agent $cur is gone" wait_for --timeout 30 agent_gone "$cur"
sed -i '/c3/d' "$H_TMP/b.inst"
t0=$(now)
cur=bx
agent_start_as "$cur" b
check "a vanished instance's key is deleted after the grace" \
    wait_for --timeout 10 key_absent "$EP" /backends/dns/b/c3/53
echo "measured: restart -> vanished key deleted in $(elapsed "$t0") s (reconcile_grace 1 s)"
check "the other keys stay" nkeys_is "$EP" 2
check_eq "still the same lease" "$lease0" "$(leases)"

check "no sanitizer report or crash in any run's log" \
    bash -c "! cat '$H_TMP'/b*.log | grep -qE 'Sanitizer|runtime error:|Segmentation|Aborted'"
finish_agents "$cur"
harness_summary
