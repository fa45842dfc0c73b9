#!/usr/bin/env bash
# tests/etcd/metrics_test.sh: the etcd store's metrics (issue 17), read from the stats sink's
# /metrics with python3-prometheus-client (tests/metrics_check.py): regent_store_ops_total and
# regent_store_errors_total list the same ops, a watch is counted while its stream is open
# (not when it ends), and a seed-format entry (ip:port, no node) is counted under its address
# in regent_catalog_node_instances, never as node="".
source "$(dirname "$0")/lib.sh"
harness_init
PYC=/usr/bin/python3
[[ -x $PYC ]] || PYC=$PY
if ! "$PYC" -c 'import prometheus_client.parser' 2>/dev/null; then
    echo "python3-prometheus-client is missing: apt-get install python3-prometheus-client" >&2
    exit 77
fi
EP=$(etcd_start m1) || exit 1
SP=$(free_port)
printf 'm-1 web 127.0.0.1 18080\n' > "$H_TMP/m.inst"
cat > "$H_TMP/m.ini" <<EOF
[agent]
node = m
debounce = 20ms
state_dir = $H_TMP/m.state
metrics_per_service = true

[source testsource]
file = $H_TMP/m.inst
interval = 50ms

[store etcd]
endpoints = $EP
ttl = 3
deregister_on_stop = true

[sink stats]
listen = 127.0.0.1:$SP
EOF
h_etcdctl "$EP" put /backends/whoami/0123456789ab 127.0.0.7:32768 >/dev/null
agent_start m
check "the etcd store's op lists agree, the open watch counts, the seed entry has a node label" \
    wait_for --timeout 60 "$PYC" "$REGENT_TEST_DIR/metrics_check.py" "http://127.0.0.1:$SP" store-ops etcd 127.0.0.7
daemon_stop m 20
check "no sanitizer report" bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$H_TMP/m.log'"
harness_summary
