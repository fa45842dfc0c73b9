#!/usr/bin/env bash
# consul_limits_test.sh - the Consul store against real Consul's limits
# (issue #21), on the emulator (or a real `consul agent -dev`):
#  1. 250 services with the agent's limit of 200 connections per client IP:
#     the client gets every service, nothing is refused with 429;
#  2. an old agent (Consul <= 1.11, ACLs on) answering a TTL pass for an
#     unknown check with 500 `Unknown check "..."`: registered again;
#  3. deregister_after under 1m: --check-config warns with the effective time;
#  4. health_states: a `warning` instance is served only with
#     `health_states = passing, warning`;
#  5. max_response_size: a service's health answer over it is refused with the setting named,
#     and the default reads it.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=2s DEREG=2s
SECRET="s3cr3t-$RANDOM-token"
EMU_VERBOSE=1 agent_start "$SECRET" || { echo "agent did not start"; harness_summary; exit 1; }

# ---- 1. 250 services, 200 connections per client IP
"$PYTHON3" - "$AGENT_URL" "$SECRET" <<'PY' || echo "registering 250 services failed"
import json, sys, urllib.request
base, tok = sys.argv[1], sys.argv[2]
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(250):
    body = json.dumps({"ID": "m%d" % i, "Name": "many%d" % i, "Address": "127.0.0.5",
                       "Port": 10000 + i, "Check": {"TTL": "1h", "Status": "passing"}}).encode()
    req = urllib.request.Request(base + "/v1/agent/service/register", data=body, method="PUT",
                                 headers={"X-Consul-Token": tok})
    op.open(req, timeout=10).read()
PY
{ printf '[agent]\nnode = client-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-1"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
regent_start c "$T/c.ini"
nsvc() { last_snapshot "$T/c.sink" | grep -c '^  many[0-9]* '; }
has250() { [[ $(nsvc) -eq 250 ]]; }
check "250 services: the client's first snapshot has all of them" wait_for --timeout 60 has250
if [[ $CONSUL_MODE == emulator ]]; then
	check "250 services: the agent refused no connection (429)" \
		bash -c "! grep -q 'connections from one client: 429' '$(daemon_log consul)'"
	n=$(grep -c 'GET /v1/health/service/.* -> 200' "$(daemon_log consul)")
	echo "# 250 services: $n service reads for the first snapshot"
	check "250 services: one read per service, no blocking query per service" \
		test "$n" -le 300
fi
check "250 services: the client is healthy" bash -c "! grep -q 'store consul: unhealthy' '$(regent_log c)'"
daemon_stop regent-c

# ---- 3. the deregister_after floor, at --check-config
{ printf '[agent]\nnode = x\nstate_dir = %s\n' "$H_TMP/state-x"; store_section; } >"$T/w.ini"
out=$("$REGENT_BIN" --check-config -c "$T/w.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1)
check_contains "deregister_after = 2s: warned with the effective removal time" "$out" \
	"Consul raises DeregisterCriticalServiceAfter below 1m to 1m and reaps every 30 s, so the services of a regent that died leave the agent 62s to 92s after its last pass"

# ---- 4. health_states
agent_curl PUT /v1/agent/service/register \
	'{"ID":"w1","Name":"warm","Address":"127.0.0.6","Port":7001,"Check":{"CheckID":"service:w1","TTL":"1h","Status":"warning"}}' >/dev/null
agent_curl PUT /v1/agent/service/register \
	'{"ID":"w2","Name":"warm","Address":"127.0.0.6","Port":7002,"Check":{"CheckID":"service:w2","TTL":"1h","Status":"passing"}}' >/dev/null
{ printf '[agent]\nnode = client-2\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-2"; store_section
  printf 'health_states = passing, warning\n[sink testsink]\nfile = %s\n' "$T/w.sink"; } >"$T/w.ini"
{ printf '[agent]\nnode = client-3\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-3"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/p.sink"; } >"$T/p.ini"
regent_start w "$T/w.ini"
regent_start p "$T/p.ini"
check "passing, warning: the warning instance is served" wait_for --timeout 20 snapshot_has "$T/w.sink" "/w1 127.0.0.6:7001"
check "passing (default): the passing one is served" wait_for --timeout 20 snapshot_has "$T/p.sink" "/w2 127.0.0.6:7002"
check "passing (default): the warning one is not" snapshot_lacks "$T/p.sink" "/w1 127.0.0.6:7001"
agent_curl PUT /v1/agent/check/fail/service:w1 >/dev/null
check "passing, warning: a critical instance leaves" wait_for --timeout 20 snapshot_lacks "$T/w.sink" "/w1 127.0.0.6:7001"
daemon_stop regent-w
daemon_stop regent-p

# ---- 5. max_response_size: a service's health answer is ~3 KB an instance, so 16 MiB (the
# HTTP layer's default limit, all this store had before) held ~5,400 instances and a bigger
# service could never be read. The limit is a setting (64 MiB by default); an answer over it is
# refused with the setting named, and a client with room reads the service whole.
# (the 250 services of case 1 go first: a client reads them 16 at a time, which under load can
# outlast first_read_wait and leave more services than wide unknown)
"$PYTHON3" - "$AGENT_URL" "$SECRET" <<'PY' || echo "registering the wide service failed"
import json, sys, urllib.request
base, tok = sys.argv[1], sys.argv[2]
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(250):
    op.open(urllib.request.Request(base + "/v1/agent/service/deregister/m%d" % i, method="PUT",
                                   headers={"X-Consul-Token": tok}), timeout=10).read()
for i in range(120):
    body = json.dumps({"ID": "wide%d" % i, "Name": "wide", "Address": "127.0.0.8",
                       "Port": 20000 + i, "Check": {"TTL": "1h", "Status": "passing"}}).encode()
    req = urllib.request.Request(base + "/v1/agent/service/register", data=body, method="PUT",
                                 headers={"X-Consul-Token": tok})
    op.open(req, timeout=10).read()
PY
wide_bytes=$(agent_curl GET /v1/health/service/wide | wc -c)
checks_bytes=$(agent_curl GET /v1/health/state/any | wc -c)
# room for every other answer (the datacenter's checks), not for the wide service's
limit=$((checks_bytes + 16384)); ((limit < 65536)) && limit=65536
echo "# wide: $wide_bytes bytes of health for 120 instances; all checks: $checks_bytes bytes; limit $limit"
check "max_response_size: the wide service's answer is over the limit, the others' under it" \
	test "$wide_bytes" -gt "$((limit + 4096))"
{ printf '[agent]\nnode = client-4\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-4"; store_section
  printf 'max_response_size = %s\nfirst_read_wait = 2s\n' "$limit"
  printf '[sink testsink]\nfile = %s\nunknown = true\n' "$T/n.sink"
  printf '[sink testsink plain]\nfile = %s\n' "$T/n2.sink"; } >"$T/n.ini"
{ printf '[agent]\nnode = client-5\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-5"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/q.sink"; } >"$T/q.ini"
regent_start n "$T/n.ini"
regent_start q "$T/q.ini"
check "max_response_size: an answer over it is refused with the setting named" wait_for --timeout 20 \
	grep -qF "cannot read the health of service wide from $AGENT_URL: the answer is larger than max_response_size ($limit bytes): raise [store consul] max_response_size" "$(regent_log n)"
# wide cannot be read: after first_read_wait the catalog goes out without it, wide unknown
check "first_read_wait: the store publishes the catalog without the service it cannot read" \
	wait_for --timeout 20 grep -qE 'store consul: read the catalog but 1 of its [0-9]+ services after 2000 ms \(first_read_wait\): wide not read yet' "$(regent_log n)"
check "first_read_wait: a sink that takes unknown services routes the others" \
	wait_for --timeout 10 snapshot_has "$T/n.sink" "/w2 127.0.0.6:7002"
check "first_read_wait: ... and is told that wide is unknown" snapshot_has "$T/n.sink" "unknown wide"
check "first_read_wait: ... with none of wide's instances" snapshot_lacks "$T/n.sink" "127.0.0.8:"
check "first_read_wait: a sink that did not ask for unknown services gets nothing yet" \
	bash -c "! grep -q '^apply' '$T/n2.sink' 2>/dev/null"
check "first_read_wait: ... and says why" grep -q 'sink plain: no catalog yet: 1 service is not read from the registry yet' "$(regent_log n)"
check "max_response_size: the store says it is unhealthy" \
	wait_for --timeout 5 grep -qE 'store consul: (unhealthy: )?discovery: .*larger than max_response_size' "$(regent_log n)"
wide120() { [[ $(last_snapshot "$T/q.sink" | grep -c ' 127\.0\.0\.8:2[0-9]*/tcp') -eq 120 ]]; }
check "max_response_size: the default (64 MiB) reads all 120 instances" wait_for --timeout 30 wide120
daemon_stop regent-n
daemon_stop regent-q
sed 's/^max_response_size = .*/max_response_size = 1000/' "$T/n.ini" >"$T/bad.ini"
out=$("$REGENT_BIN" --check-config -c "$T/bad.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1)
check_contains "max_response_size below 64 KiB: refused at --check-config" "$out" "max_response_size"
check "max_response_size below 64 KiB: --check-config fails" bash -c "! '$REGENT_BIN' --check-config -c '$T/bad.ini' --plugin-dir '$REGENT_PLUGIN_DIR' >/dev/null 2>&1"

# ---- 2. an old agent: 500 Unknown check "..." means "register again"
if [[ $CONSUL_MODE == emulator ]]; then
	echo "backend-1/o1/80 old 127.0.0.7 8007" >"$T/a.txt"
	{ printf '[agent]\nnode = backend-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-backend-1"
	  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"; store_section; } >"$T/a.ini"
	regent_start a "$T/a.ini"
	check "old agent: o1 registered" wait_for --timeout 20 agent_has backend-1/o1/80
	agent_kill
	EMU_VERBOSE=1 EMU_EXTRA="--old-agent" agent_start "$SECRET" || echo "old agent did not start"
	check "old agent: the pass is answered 500 Unknown check" wait_for --timeout 60 \
		grep -qE 'PUT /v1/agent/check/pass/service(:|%3A)backend-1(:|%3A)o1(:|%3A)80 -> 500' "$(daemon_log consul)"
	check "old agent: o1 registered again" wait_for --timeout 30 agent_has backend-1/o1/80
	check "old agent: the store said why" grep -q "no longer knows the check of backend-1/o1/80" "$(regent_log a)"
	daemon_stop regent-a
else
	echo "# (the old-agent case needs the emulator's --old-agent: skipped against a real consul)"
fi
check_regent_logs_clean
harness_summary
