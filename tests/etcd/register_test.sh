#!/usr/bin/env bash
# tests/etcd/register_test.sh: registration into a real etcd, checked with etcdctl: key layout,
# JSON values, one lease with the configured TTL, only changes written, a revoked lease
# replaced, SIGTERM removes the keys at once, SIGKILL within the TTL.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start r1) || exit 1

cat > "$H_TMP/a.inst" <<'EOT'
a/c1/80 web 127.0.0.2 8080 t1,t2
a/c2/80 web 127.0.0.3 8081
a/c3/53 dns 127.0.0.4 53 udp
EOT
AGENT_NO_SINK=1 agent_config a "$EP"
agent_start a
check "waited for: nkeys_is EP 3" wait_for --timeout 10 nkeys_is "$EP" 3
check_eq "keys are <prefix>/<service>/<id>, the id keeping its slashes" \
    "$(printf '%s\n' /backends/dns/a/c3/53 /backends/web/a/c1/80 /backends/web/a/c2/80)" "$(keys "$EP")"
check_eq "value is the instance's JSON (address, port, proto, service_port, tags, meta, node)" \
    '{"address":"127.0.0.2","meta":{},"node":"a","port":8080,"proto":"tcp","service_port":8080,"tags":["t1","t2"]}' \
    "$(value "$EP" /backends/web/a/c1/80)"
check_eq "udp instance value" \
    '{"address":"127.0.0.4","meta":{},"node":"a","port":53,"proto":"udp","service_port":53,"tags":[]}' \
    "$(value "$EP" /backends/dns/a/c3/53)"

leases() { h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp leases; }
lease=$(leases | awk '{print $2}' | sort -u)
check_eq "all keys attached to one lease" 1 "$(wc -w <<<"$lease")"
check "the lease is a real one" test "$lease" != 0
ttl=$(h_etcdctl "$EP" lease timetolive "$lease")
check_contains "lease TTL is the configured 3 s" "$ttl" "granted with TTL(3s)"
check_eq "etcd holds one lease" 1 "$(h_etcdctl "$EP" lease list | grep -cE '^[0-9a-f]{8,}$')"

# Steady state writes nothing: mod revisions stay while keepalives (every ttl/3) run for > ttl.
revs1=$(h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp revs)
ka0=$(grep -c 'kept alive' "$H_TMP/a.log")
sleep 4
ka1=$(grep -c 'kept alive' "$H_TMP/a.log")
revs2=$(h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp revs)
check_eq "no rewrite in steady state (mod revisions unchanged after 4 s > ttl)" "$revs1" "$revs2"
check "keys outlive the TTL thanks to keepalives" nkeys_is "$EP" 3
ka=$((ka1 - ka0))
check "keepalives sent about every ttl/3 (saw $ka in 4 s)" test "$ka" -ge 2 -a "$ka" -le 7

# One change -> one key written; a removal -> one delete.
sed -i 's/127.0.0.3 8081/127.0.0.3 8082/' "$H_TMP/a.inst"
check "waited for: '[[ (value EP /backends/web/a/c2/80) == *8082* ]]'" wait_for --timeout 5 eval '[[ "$(value "$EP" /backends/web/a/c2/80)" == *8082* ]]'
revs3=$(h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp revs)
check_eq "a changed instance rewrites only its key" \
    "$(grep -v c2 <<<"$revs2")" "$(grep -v c2 <<<"$revs3")"
check "the changed key was rewritten" test "$(grep c2 <<<"$revs2")" != "$(grep c2 <<<"$revs3")"
sed -i '/a\/c3\/53/d' "$H_TMP/a.inst"
wait_for --timeout 5 key_absent "$EP" /backends/dns/a/c3/53
check "a removed instance's key is deleted" key_absent "$EP" /backends/dns/a/c3/53
revs4=$(h_etcdctl "$EP" get --prefix /backends/ -w json | ehelp revs)
check_eq "the others are untouched" "$(grep -v c3 <<<"$revs3")" "$revs4"

# A lost lease (revoked behind the agent's back) is replaced and everything written again.
h_etcdctl "$EP" lease revoke "$lease" >/dev/null
t0=$(now)
check "waited for: nkeys_is EP 2" wait_for --timeout 8 nkeys_is "$EP" 2
took=$(elapsed "$t0")
check "keys re-registered after the lease was revoked (${took} s)" nkeys_is "$EP" 2
lease2=$(leases | awk '{print $2}' | sort -u)
check "under a new lease" test -n "$lease2" -a "$lease2" != "$lease" -a "$(wc -w <<<"$lease2")" = 1
check "the loss was logged" log_has a "lease $lease is gone"

# SIGTERM: the lease is revoked, the keys vanish at once.
took=$(time_until_count "$EP" /backends/ 0 5 kill -TERM "$(daemon_pid a)")
check "SIGTERM: keys gone at once (${took} s)" lt "$took" 1.0
check "SIGTERM: etcdctl agrees" nkeys_is "$EP" 0
wait_for --timeout 5 bash -c "! kill -0 $(daemon_pid a) 2>/dev/null"
check "SIGTERM: agent exited" bash -c "! kill -0 $(daemon_pid a) 2>/dev/null"
check "SIGTERM: revoke logged" log_has a "lease $lease2 revoked"
echo "measured: SIGTERM -> keys gone in ${took} s"

# SIGKILL: nothing is revoked; the lease expires within the TTL.
agent_start a
check "waited for: nkeys_is EP 2" wait_for --timeout 10 nkeys_is "$EP" 2
sleep 1.2 # a keepalive or two: the lease has its full TTL again
took=$(time_until_count "$EP" /backends/ 0 8 kill -KILL "$(daemon_pid a)")
# etcd expires leases on a 500 ms tick, then deletes through raft: allow that on top of the TTL
check "SIGKILL: keys gone within the 3 s TTL (+ etcd's expiry tick) (${took} s)" lt "$took" 3.8
check "SIGKILL: etcdctl agrees" nkeys_is "$EP" 0
echo "measured: SIGKILL -> keys gone in ${took} s (ttl 3 s)"
finish_agents a
harness_summary
