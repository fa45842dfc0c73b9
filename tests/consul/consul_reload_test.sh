#!/usr/bin/env bash
# consul_reload_test.sh - a SIGHUP that replaces [store consul] is make-before-break, and the old
# and new instances agree on the registered services only through the state file
# (<state_dir>/consul.consul; no list of live instances in the process, issue #13 point 2):
#  1. a store key that leaves the registrations as they are (timeout): the new instance adopts
#     the 3 services, claims the state file, and the old one then leaves them all registered.
#     No register and no deregister request reaches the agent, and a watching client agent
#     applies no catalog change.
#  2. a change of the registration itself (ttl, deregister_after: each service's TTL check):
#     the new instance registers the 3 again in place while the old one still runs; nothing is
#     deregistered, and every snapshot the client applies holds the 3 instances (no gap).
#  3. the agent's node (every plugin replaced): the registrations move to the new node's meta
#     in place, the same way, without a gap.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=30s DEREG=1m RECONCILE_WAIT=2s
EMU_VERBOSE=1 agent_start || { echo "agent did not start"; harness_summary; exit 1; }

cat >"$T/a.txt" <<'EOT'
backend-1/web1/80 web 127.0.0.1 8001
backend-1/web2/80 web 127.0.0.1 8002
backend-1/api1/90 api 127.0.0.1 9001
EOT
a_ini() { # NODE [EXTRA STORE LINES...]
	local node=$1; shift
	{ printf '[agent]\nnode = %s\ndebounce = 10ms\nstate_dir = %s\n' "$node" "$T/state-a"
	  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"; store_section
	  [[ $# -gt 0 ]] && printf '%s\n' "$@"; } >"$T/a.ini.new"
	mv "$T/a.ini.new" "$T/a.ini"
}
a_ini backend-1
{ printf '[agent]\nnode = client-1\ndebounce = 10ms\nstate_dir = %s\n' "$T/state-c"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
regent_start a "$T/a.ini" -L debug
regent_start c "$T/c.ini"
for id in backend-1/web1/80 backend-1/web2/80 backend-1/api1/90; do
	check "client sees $id" wait_for --timeout 15 snapshot_has "$T/c.sink" "$id"
done
alog=$(regent_log a)
elog=$(daemon_log consul)
SF="$T/state-a/consul.consul"
nready() { grep -cE "store consul( \(new\))?: ready: the agent at" "$alog"; }
ready_ge() { [[ $(nready) -ge $1 ]]; }
check "the first instance is ready" wait_for --timeout 15 ready_ge 1
has_ids() { [[ $(grep -c '^id=' "$SF" 2>/dev/null) -eq 3 ]]; }
check "the state file lists the 3 services" wait_for --timeout 5 has_ids
check "the state file names this process" grep -qx "pid=$(daemon_pid regent-a)" "$SF"
deregs() { grep -c "PUT /v1/agent/service/deregister/.* -> " "$elog"; }
regs() { grep -c "PUT /v1/agent/service/register -> " "$elog"; }
applies() { grep -c "^apply " "$T/c.sink"; }
owner() { sed -n 's/^owner=//p' "$SF"; }
nleft() { grep -c "leaving 3 services registered at .*a reload replaced this section: the new instance at the same agent holds them" "$alog"; }
left_ge() { [[ $(nleft) -ge $1 ]]; }
# every complete snapshot the client applied (from line $1 on) holds the 3 instances
all_full() {
	local from=$1 id
	for id in backend-1/web1/80 backend-1/web2/80 backend-1/api1/90; do
		all_snapshots_have "$T/c.sink" "$id" "$from" || return 1
	done
}

# ---- 1. a store key that keeps the registrations ------------------------------------------
d0=$(deregs) r0=$(regs) a0=$(applies) o0=$(owner)
a_ini backend-1 "timeout = 3s"
daemon_kill regent-a HUP
check "1: the old instance left the 3 services to the new one" wait_for --timeout 20 left_ge 1
check "1: the new instance adopted the 3" grep -q "held 3 services this node registered before" "$alog"
check "1: the new instance kept web1 as the agent held it" \
	grep -q "kept backend-1/web1/80 (web) as the agent holds it" "$alog"
check "1: the state file changed owner" test "$(owner)" != "$o0"
check "1: the state file still lists the 3" has_ids
sleep 3 # past reconcile_wait: nothing deregistered later either
check_eq "1: no deregistration reached the agent" "$d0" "$(deregs)"
check_eq "1: no registration reached the agent" "$r0" "$(regs)"
check_eq "1: the client applied no catalog change" "$a0" "$(applies)"
for id in backend-1/web1/80 backend-1/web2/80 backend-1/api1/90; do
	check "1: the agent holds $id" agent_has "$id"
done
echo "# 1 (timeout changed): $(( $(regs) - r0 )) registrations, $(( $(deregs) - d0 )) deregistrations, $(( $(applies) - a0 )) catalog changes at the client"

# ---- 2. the registration itself changes (the TTL check) -----------------------------------
d0=$(deregs) r0=$(regs) a0=$(applies) from=$(($(wc -l <"$T/c.sink") + 1))
TTL=40s DEREG=2m a_ini backend-1 "timeout = 3s"
daemon_kill regent-a HUP
check "2: the old instance left the 3 services to the new one" wait_for --timeout 20 left_ge 2
check "2: the new instance ready" wait_for --timeout 10 ready_ge 3
check_eq "2: the 3 registered again in place" 3 "$(( $(regs) - r0 ))"
sleep 1
check_eq "2: no deregistration reached the agent" "$d0" "$(deregs)"
check "2: every snapshot the client applied holds the 3 instances" all_full "$from"
passing() { agent_curl GET "/v1/health/state/passing" | "$PYTHON3" -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c.get("ServiceID","").startswith("backend-1:")))'; }
check_eq "2: the 3 checks are passing" 3 "$(passing)"
echo "# 2 (ttl changed): $(( $(regs) - r0 )) registrations, $(( $(deregs) - d0 )) deregistrations, $(( $(applies) - a0 )) catalog changes at the client"

# ---- 3. the agent's node: every plugin replaced, the registrations' meta moves ---------------
d0=$(deregs) r0=$(regs) a0=$(applies) from=$(($(wc -l <"$T/c.sink") + 1))
TTL=40s DEREG=2m a_ini backend-9 "timeout = 3s"
daemon_kill regent-a HUP
check "3: the client sees the new node" \
	wait_for --timeout 20 snapshot_has "$T/c.sink" "backend-1/web1/80 127.0.0.1:8001/tcp node=backend-9"
check "3: the state file names the new node" wait_for --timeout 10 grep -qx "node=backend-9" "$SF"
sleep 3 # past reconcile_wait
check_eq "3: no deregistration reached the agent" "$d0" "$(deregs)"
check "3: every snapshot the client applied holds the 3 instances" all_full "$from"
for id in backend-1/web1/80 backend-1/web2/80 backend-1/api1/90; do
	check "3: the agent holds $id" agent_has "$id"
done
meta_nodes() { agent_curl GET /v1/agent/services | "$PYTHON3" -c 'import json,sys; print(" ".join(sorted((v.get("Meta") or {}).get("node", "") for v in json.load(sys.stdin).values())))'; }
check_eq "3: the agent's 3 registrations carry the new node" "backend-9 backend-9 backend-9" "$(meta_nodes)"
check "3: the client's last snapshot has web2 at the new node" \
	snapshot_has "$T/c.sink" "backend-1/web2/80 127.0.0.1:8002/tcp node=backend-9"
echo "# 3 (node changed): $(( $(regs) - r0 )) registrations, $(( $(deregs) - d0 )) deregistrations, $(( $(applies) - a0 )) catalog changes at the client"
check "no plugin turned unhealthy" bash -c "! grep -h 'unhealthy' $T/regent-*.log"
check_regent_logs_clean
harness_summary
