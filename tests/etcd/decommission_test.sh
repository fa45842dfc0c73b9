#!/usr/bin/env bash
# tests/etcd/decommission_test.sh: the stops that do deregister.  deregister_on_stop = true (a
# host being decommissioned) revokes the lease on SIGTERM: the keys vanish at once and the
# lease file is removed.  A crash (SIGKILL) leaves the keys to the TTL.  The default stop keeps
# them (tests/etcd/restart_test.sh).
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start d1) || exit 1
cat > "$H_TMP/b.inst" <<'EOT'
b/c1/80 web 127.0.0.2 8080
b/c2/80 web 127.0.0.3 8080
EOT
AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP"
agent_start b
check "keys registered" wait_for --timeout 10 nkeys_is "$EP" 2
daemon_stop b
check "a default stop keeps the keys" nkeys_is "$EP" 2

# Decommission: deregister_on_stop = true revokes on SIGTERM.
daemon_stop b
AGENT_NO_SINK=1 agent_config b "$EP"
agent_start b
check "deregister_on_stop: the store is ready" wait_for --timeout 10 log_has b "store etcd: ready"
t0=$(now)
daemon_stop b
check "deregister_on_stop: keys gone at once" wait_for --timeout 3 nkeys_is "$EP" 0
echo "measured: SIGTERM with deregister_on_stop -> keys gone in $(elapsed "$t0") s"
check "deregister_on_stop: the lease file is removed" test ! -e "$H_TMP/b.state/etcd.lease"

# Crash: SIGKILL leaves the keys to the TTL (3 s).
AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP"
agent_start b
check "crash case: keys registered" wait_for --timeout 10 nkeys_is "$EP" 2
sleep 1.2
daemon_kill b KILL
t0=$(now)
check "SIGKILL: keys still there right after" nkeys_is "$EP" 2
check "SIGKILL: keys gone within the TTL" wait_for --timeout 8 nkeys_is "$EP" 0
echo "measured: SIGKILL -> keys gone in $(elapsed "$t0") s (ttl 3 s)"

finish_agents b
harness_summary
