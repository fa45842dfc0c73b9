#!/usr/bin/env bash
# consul_basic_test.sh - the Consul store plugin against one Consul agent
# (the emulator, or a real `consul agent -dev` with REGENT_CONSUL_MODE=real):
# registration (body, TTL check kept passing), discovery by a client host,
# a backend-only host, foreign and invalid registrations, the tag filter,
# changes sent as changes only, a vanished service, and SIGTERM
# deregistering at once.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=1s DEREG=2s
agent_start || { echo "agent did not start"; harness_summary; exit 1; }

# ---- a backend host with a sink (A), a backend-only host (B), a client (C)
cat >"$T/a.txt" <<'EOF'
backend-1/web1/80 web 127.0.0.1 8001 tcp v1,blue
backend-1/web2/80 web 127.0.0.1 8002
backend-1/dns/53 dns 127.0.0.2 5353 udp
EOF
echo "backend-2/web3/80 web 127.0.0.3 8003" >"$T/b.txt"
common() { printf '[agent]\nnode = %s\ndebounce = 10ms\nstate_dir = %s\n' "$1" "$H_TMP/state-$1"; }
{ common backend-1; printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"
  store_section; printf '[sink testsink]\nfile = %s\n' "$T/a.sink"; } >"$T/a.ini"
{ common backend-2; printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/b.txt"
  store_section; } >"$T/b.ini"
{ common client-1; store_section; printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
{ common client-2; store_section; printf 'tag = blue\n[sink testsink]\nfile = %s\n' "$T/d.sink"; } >"$T/d.ini"

check "check-config accepts the [store consul] section" \
	"$REGENT_BIN" --check-config -c "$T/a.ini" --plugin-dir "$REGENT_PLUGIN_DIR"
regent_start a "$T/a.ini" -L debug
regent_start b "$T/b.ini"
regent_start c "$T/c.ini"

for id in backend-1/web1/80 backend-1/web2/80 backend-1/dns/53 backend-2/web3/80; do
	check "agent holds $id" wait_for --timeout 10 agent_has "$id"
done
svc=$(agent_curl GET /v1/agent/services)
field() { "$PYTHON3" -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps(eval(sys.argv[2]), sort_keys=True))' "$svc" "$1"; }
check_eq "Consul service ids: node:container:port, no '/'" \
	"$(printf '%s\n' backend-1:dns:53 backend-1:web1:80 backend-1:web2:80 backend-2:web3:80)" \
	"$(agent_raw_ids)"
check_eq "web1: name, address, port" '["web", "127.0.0.1", 8001]' \
	"$(field '[d["backend-1:web1:80"][k] for k in ("Service","Address","Port")]')"
check_eq "web1: tags" '["v1", "blue"]' "$(field 'd["backend-1:web1:80"]["Tags"]')"
check_eq "web1: meta carries proto, service_port, node, regent-id" \
	'{"node": "backend-1", "proto": "tcp", "regent-id": "backend-1/web1/80", "service_port": "8001"}' \
	"$(field '{k: v for k, v in d["backend-1:web1:80"]["Meta"].items() if k != "regent-hash"}')"
check_eq "dns: udp in meta" '"udp"' "$(field 'd["backend-1:dns:53"]["Meta"]["proto"]')"
checks=$(agent_curl GET /v1/agent/checks)
check_contains "a TTL check named service:<Consul id> per instance" "$checks" '"service:backend-1:web1:80"'

# ---- discovery on the client
for want in "backend-1/web1/80 127.0.0.1:8001/tcp node=backend-1" \
            "backend-1/dns/53 127.0.0.2:5353/udp node=backend-1" \
            "backend-2/web3/80 127.0.0.3:8003/tcp node=backend-2"; do
	check "client sees $want" wait_for --timeout 10 snapshot_has "$T/c.sink" "$want"
done
check "backend host with a sink sees the other host's instance" \
	wait_for --timeout 10 snapshot_has "$T/a.sink" "backend-2/web3/80 127.0.0.3:8003"
check "Consul's own service is not in the catalog" snapshot_lacks "$T/c.sink" "consul ("
check "backend-only host registers without watching" grep -q "registering only" "$(regent_log b)"

# ---- TTL checks stay passing (TTL 1s, passes every ~333 ms)
sleep 2.5
passing() { agent_curl GET "/v1/health/service/web?passing" | "$PYTHON3" -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
check_eq "checks still passing after 2.5 TTLs" 3 "$(passing)"

# ---- foreign and invalid registrations
agent_curl PUT /v1/agent/service/register '{"ID":"ext1","Name":"web","Address":"10.1.1.1","Port":9000}' >/dev/null
agent_curl PUT /v1/agent/service/register '{"ID":"bad1","Name":"bad name!","Address":"10.1.1.2","Port":9001}' >/dev/null
check "a foreign instance appears as <consul node>/<ID>" \
	wait_for --timeout 10 snapshot_has "$T/c.sink" "/ext1 10.1.1.1:9000/tcp node="
check "an invalid service name is skipped with a warning" \
	wait_for --timeout 10 grep -q 'skipped Consul service "bad name!": invalid name' "$(regent_log c)"
check "client still running" daemon_alive regent-c

# ---- tag filter; ignore_services set (it replaces the default list, "consul")
{ common client-3; store_section; printf 'ignore_services = dns\n[sink testsink]\nfile = %s\n' "$T/e.sink"; } >"$T/e.ini"
regent_start d "$T/d.ini"
regent_start e "$T/e.ini"
check "tag filter: web1 (blue) seen" wait_for --timeout 10 snapshot_has "$T/d.sink" "backend-1/web1/80"
check "tag filter: web2 (untagged) not seen" snapshot_lacks "$T/d.sink" "backend-1/web2/80"
check "tag filter: dns not seen" snapshot_lacks "$T/d.sink" "dns ("
daemon_stop regent-d
check "ignore_services = dns: web is seen" wait_for --timeout 10 snapshot_has "$T/e.sink" "backend-1/web1/80"
check "ignore_services = dns: dns is not (the client without the key sees it)" snapshot_lacks "$T/e.sink" "dns ("
check "ignore_services = dns replaces the default: Consul's own service is seen" snapshot_has "$T/e.sink" "consul ("
daemon_stop regent-e

# ---- changes: web2 moves, dns goes away; only those are sent
nreg() { grep -c "consul: registered $1 " "$(regent_log a)"; }
before_web1=$(nreg backend-1/web1/80)
# (written aside and renamed: the test source must never read half a file)
cat >"$T/a.txt.new" <<'EOF'
backend-1/web1/80 web 127.0.0.1 8001 tcp v1,blue
backend-1/web2/80 web 127.0.0.1 8012
EOF
mv "$T/a.txt.new" "$T/a.txt"
check "agent drops dns" wait_for --timeout 10 agent_lacks backend-1/dns/53
check "client: web2 moved to 8012" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-1/web2/80 127.0.0.1:8012/tcp"
check "client: the vanished service dns left the catalog" wait_for --timeout 10 snapshot_lacks "$T/c.sink" "dns ("
check_eq "unchanged web1 was not registered again" "$before_web1" "$(nreg backend-1/web1/80)"
check_eq "web2 registered twice in all (start + change)" 2 "$(nreg backend-1/web2/80)"

# ---- SIGHUP with a changed [store consul] (same agent): the old instance
# deregisters nothing, the new one takes the services over (the changed
# ttl updates them in place), and the client never sees them leave.
TTL=60s   # long enough for the restart below to find them still registered (ASan, load)
from=$(($(wc -l <"$T/c.sink") + 1))
{ common backend-1; printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"
  store_section; printf '[sink testsink]\nfile = %s\n' "$T/a.sink"; } >"$T/a.ini"
daemon_kill regent-a HUP
check "reload: the old instance left them to the new one" \
	wait_for --timeout 10 grep -q "leaving 2 services registered at .*a reload replaced this section" "$(regent_log a)"
nstarted() { [[ $(grep -cE "consul( \(new\))?: ready: the agent at" "$(regent_log a)") -ge $1 ]]; }
check "reload: the new instance answered (started)" wait_for --timeout 10 nstarted 2
check "reload: web1 registered by the new instance" wait_for --timeout 10 agent_has backend-1/web1/80
check "reload: web2 registered by the new instance" wait_for --timeout 10 agent_has backend-1/web2/80
sleep 2.5
check "reload: still registered 2.5 s later" agent_has backend-1/web1/80
check_eq "reload: checks passing (web1, web2, web3, ext1)" 4 "$(passing)"
check "reload: no re-registration loop" bash -c "! grep -q 'no longer knows' '$(regent_log a)'"
check "reload: the client's catalog kept web1 throughout" \
	all_snapshots_have "$T/c.sink" "backend-1/web1/80" "$from"

# ---- SIGTERM keeps the services (deregister_on_stop = false)
daemon_stop regent-a
check "SIGTERM (default): A's services stay registered" agent_has backend-1/web1/80
check "SIGTERM (default): A said why" grep -q "leaving 2 services registered at .*the agent exits: deregister_on_stop = false" "$(regent_log a)"

# ---- a decommissioned host: deregister_on_stop = true deregisters at once
{ common backend-1; printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"
  DEREG_ON_STOP=true store_section; printf '[sink testsink]\nfile = %s\n' "$T/a.sink"; } >"$T/a.ini"
before_web1=$(nreg backend-1/web1/80)
regent_start a "$T/a.ini" -L debug
check "decommission: the restarted A answered" wait_for --timeout 10 nstarted 3
check "restart: A adopted both services" grep -q "held 2 services this node registered before" "$(regent_log a)"
check "restart: web1 kept as the agent held it" \
	wait_for --timeout 5 grep -q "kept backend-1/web1/80 (web) as the agent holds it" "$(regent_log a)"
check_eq "restart: web1 not registered again" "$before_web1" "$(nreg backend-1/web1/80)"
t0=$(now_ms)
daemon_stop regent-a
t1=$(now_ms)
check "A's services are gone right after SIGTERM" agent_lacks backend-1/web1/80
echo "# SIGTERM to exit (deregistration included): $((t1 - t0)) ms"
check "A logged its deregistration" grep -q "deregistered 2 services from Consul" "$(regent_log a)"
check "client: web1 leaves" wait_for --timeout 10 snapshot_lacks "$T/c.sink" "backend-1/web1/80"
check "client: web3 (other host) stays" snapshot_has "$T/c.sink" "backend-2/web3/80"
check "B still registered" agent_has backend-2/web3/80
check "no plugin turned unhealthy" bash -c "! grep -h 'unhealthy' $T/regent-*.log"
check_regent_logs_clean
harness_summary
