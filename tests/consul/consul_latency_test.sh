#!/usr/bin/env bash
# consul_latency_test.sh - a blocking query wakes on a change: the time from
# a direct PUT /v1/agent/service/register at the Consul agent (emulator, or
# a real `consul agent -dev` with REGENT_CONSUL_MODE=real) until a regent
# client's testsink file shows the instance.  [agent] debounce = 0 so the
# number is the store's (the default debounce of 50 ms comes on top).
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
EMU_VERBOSE=1 agent_start || { echo "agent did not start"; harness_summary; exit 1; }
agent_curl PUT /v1/agent/service/register '{"ID":"lat0","Name":"lat","Address":"127.0.0.9","Port":19999}' >/dev/null
{ printf '[agent]\nnode = client-1\nstate_dir = %s\ndebounce = 0\n' "$H_TMP/state-client-1"; store_section
  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
regent_start c "$T/c.ini"
check "client sees the first instance" wait_for --timeout 10 snapshot_has "$T/c.sink" "/lat0 127.0.0.9:19999"

probe() { "$PYTHON3" "$REGENT_TEST_DIR/consul/wake_probe.py" "$AGENT_URL" "$T/c.sink" "$1" "$2" "$AGENT_TOKEN"; }
out_i=$(probe instance 10)
out_s=$(probe service 5)
printf '%s\n%s\n' "$out_i" "$out_s" | sed 's/^/# /'
med_i=$(sed -n 's/^instance .*median=\([0-9.]*\).*/\1/p' <<<"$out_i")
max_i=$(sed -n 's/^instance .*max=\([0-9.a-z]*\).*/\1/p' <<<"$out_i")
med_s=$(sed -n 's/^service .*median=\([0-9.]*\).*/\1/p' <<<"$out_s")
max_s=$(sed -n 's/^service .*max=\([0-9.a-z]*\).*/\1/p' <<<"$out_s")
lt() { "$PYTHON3" -c "import sys; sys.exit(0 if float('$1') < $2 else 1)"; }
check "new instance of a watched service: median ${med_i} ms < 100 ms" lt "${med_i:-inf}" 100
# (a foreign instance without a check moves only the service list: one plain
# read of the checks tells that no check moved, then the services are read)
check "new instance of a watched service: max ${max_i} ms < 500 ms" lt "${max_i:-inf}" 500
check "new service: median ${med_s} ms < 100 ms" lt "${med_s:-inf}" 100
check "no sample timed out" bash -c "! grep -q timeout <<<'$out_i $out_s'"

# Rate limit: an index that moves every few ms must not make the client
# query as fast (at most one query per endpoint per 50 ms).  Counted in the
# emulator's request log, so only against the emulator.
if [[ $CONSUL_MODE == emulator ]]; then
	# --verbose logs each answered request once as "GET <path> -> <status>".
	queries() { grep -c '^consul-emulator: GET /v1/catalog/services.* -> ' "$(daemon_log consul)"; }
	q0=$(queries)
	sleep 1
	q1=$(queries)
	t1=$(now_ms)
	check "idle for 1 s: at most 1 catalog query ($((q1 - q0)))" test $((q1 - q0)) -le 1
	"$PYTHON3" - "$AGENT_URL" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
t0 = time.monotonic()
i = 0
while time.monotonic() - t0 < 1.0:
    if i % 2 == 0:
        body = json.dumps({"ID": "churn", "Name": "churn", "Port": 1, "Address": "127.0.0.8"}).encode()
        req = urllib.request.Request(base + "/v1/agent/service/register", data=body, method="PUT")
    else:
        req = urllib.request.Request(base + "/v1/agent/service/deregister/churn", data=b"", method="PUT")
    op.open(req, timeout=5).read()
    i += 1
    time.sleep(0.004)
print("# churn: %d catalog changes in 1 s" % i)
PY
	sleep 0.1
	q2=$(queries)
	t2=$(now_ms)
	limit=$(( (t2 - t1) / 50 + 2 ))
	echo "# catalog queries while the index moved: $((q2 - q1)) in $((t2 - t1)) ms (limit: 1 per 50 ms)"
	check "fast-moving index: at most $limit catalog queries" test $((q2 - q1)) -le $limit
	check "fast-moving index: the client kept querying (more than 5)" test $((q2 - q1)) -gt 5
else
	echo "# (request-rate checks need the emulator's request log: skipped against real Consul)"
fi
check_regent_logs_clean
harness_summary
