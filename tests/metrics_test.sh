#!/usr/bin/env bash
# metrics_test.sh - /metrics of a real regent with 1,000 services (issue 17),
# parsed by python3-prometheus-client (tests/metrics_check.py):
#  - by default the catalog's series are bounded: no series per service or
#    per node, the sample count does not grow with the fleet;
#  - the process_* metrics are there;
#  - regent_config_last_reload_successful is 1 after the start, 0 after a
#    refused SIGHUP reload, 1 again after a good one, whose timestamp moves;
#  - with [agent] metrics_per_service = true, one series per service and a
#    per-node series named after the node (never node="").
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# Debian's python3 has python3-prometheus-client; another python3 on PATH may not.
PY=/usr/bin/python3
[[ -x $PY ]] || PY=${PYTHON3:-python3}
if ! "$PY" -c 'import prometheus_client.parser' 2>/dev/null; then
    echo "python3-prometheus-client is missing: apt-get install python3-prometheus-client" >&2
    exit 77
fi
CHECK=("$PY" "$REGENT_TEST_DIR/metrics_check.py")

T=$H_TMP
N=1000
NODE=metrics-node
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
CFG=$T/regent.ini
mkdir -p "$T/state"
for ((i = 0; i < N; i++)); do
    printf 'i%d svc%04d 127.0.0.1 %d\n' "$i" "$i" $((20000 + i))
done > "$T/instances"

AGENT_X=""
mkcfg() {
    cat > "$CFG" <<EOF
[agent]
node = $NODE
debounce = 20ms
state_dir = $T/state
$AGENT_X

[source testsource]
file = $T/instances
interval = 200ms

[store teststore]

[sink stats]
listen = 127.0.0.1:$PORT
EOF
}
mkcfg
START=$(date +%s)
daemon_start regent "$REGENT_BIN" -c "$CFG" -p "$REGENT_PLUGIN_DIR"
LOG=$(daemon_log regent)

check "default: bounded catalog series with $N services, process_* present, last reload ok" \
    wait_for --timeout 240 "${CHECK[@]}" "$BASE" bounded "$N" "$NODE" "$((START - 1))"

AGENT_X="bogus_key = 1"
mkcfg
kill -HUP "$(daemon_pid regent)"
check "a refused reload sets regent_config_last_reload_successful to 0" \
    wait_for --timeout 30 "${CHECK[@]}" "$BASE" reload-failed "$N" "$NODE"
check "the refused reload is logged at its line" grep -q "regent.ini:5: agent.bogus_key: unknown key" "$LOG"

sleep 1.1 # the success timestamp has whole seconds to move by
RELOAD=$(date +%s)
AGENT_X="metrics_per_service = true"
mkcfg
kill -HUP "$(daemon_pid regent)"
check "metrics_per_service: one series per service and per node, reload ok with a new timestamp" \
    wait_for --timeout 240 "${CHECK[@]}" "$BASE" per-service "$N" "$NODE" "$RELOAD"

daemon_stop regent 20
check "no sanitizer report" bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$LOG'"
harness_summary
