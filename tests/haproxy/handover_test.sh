#!/usr/bin/env bash
# handover_test.sh - a SIGHUP that changes a [sink haproxy] key replaces the sink instance
# make-before-break: the new instance takes over regent.cfg and the managed haproxy from the
# running one, which must then neither write the file, reload haproxy nor take the new
# instance's writes and reloads for someone else's.  Real etcd and haproxy 2.6 on loopback:
# 40 services of 4 instances in etcd, one instance moving every 20 ms (runtime changes, the
# file patched in place); ROUNDS rounds of 2 s, each adding a service (a reload) and 0.3 s
# later another one (a reload held back by reload_interval), then flipping reload_interval
# (800/900 ms) and SIGHUPing the agent 0.7 s into the round, while that held-back reload of
# the running instance falls due.  A load runs through haproxy to a service of two real
# backends all along.  Checks: no "cannot patch", "another haproxy worker answers", "still
# not worker", failed reload or refused runtime change in the log; every hand-over done; the
# final regent.cfg and haproxy's servers are the registry's; 0 failed requests.  Then an edit
# of regent.cfg and a reload made by someone else are still seen and logged.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../etcd/lib.sh
source "$REGENT_TEST_DIR/etcd/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
command -v haproxy >/dev/null || { harness_skip "haproxy is not installed"; harness_summary; exit 77; }
command -v etcd >/dev/null || { harness_skip "etcd is not installed"; harness_summary; exit 77; }
PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
DRIVE=("$PY" "$REGENT_TEST_DIR/haproxy/handover_drive.py")
ROUNDS=${ROUNDS:-12}
NSVC=40

T=$H_TMP
HX=$T/hx
mkdir -p "$HX" && chmod 0750 "$HX"
EP=$(etcd_start ho) || exit 1
P_A=$(free_port); P_B=$(free_port); HP=$(free_port)
cports=(); for ((k = 0; k < NSVC; k++)); do cports+=("$(free_port)"); done
xports=(); for ((k = 0; k < 8; k++)); do xports+=("$(free_port)"); done
daemon_start web "${TOOL[@]}" backend "$P_A" a "$P_B" b
for p in "$P_A" "$P_B"; do
    wait_for --timeout 20 http_get "http://127.0.0.1:$p/" >/dev/null || { echo "backend $p did not start" >&2; exit 1; }
done
cat > "$T/regent.ini" <<EOF
[agent]
node = handover
debounce = 20ms
state_dir = $T/state

[store etcd]
endpoints = $EP
prefix = /ho/

[sink haproxy]
manage = true
keep_running = false
config_file = $HX/regent.cfg
master_socket = $HX/master.sock
bind_address = 127.0.0.1
reload_interval = 800ms

[service web]
port = $HP
mode = http
check = /
check_interval = 500ms
EOF
check "the config passes --check-config" \
    "$REGENT_BIN" --check-config -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
daemon_start regent "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR" -L debug
LOG=$(daemon_log regent)
spec=$(printf '{"web": [["127.0.0.1", %d], ["127.0.0.1", %d]], "web_port": 0, "churn": %d, "per": 4, "churn_ports": [%s], "extra_ports": [%s], "rounds": %d, "interval_ms": [800, 900], "pending_at": 0.3, "hup_at": 0.7, "round_s": 2.0}' \
    "$P_A" "$P_B" "$NSVC" "$(IFS=,; echo "${cports[*]}")" "$(IFS=,; echo "${xports[*]}")" "$ROUNDS")
daemon_start drive "${DRIVE[@]}" run "$EP" /ho/ "$(daemon_pid regent)" "$T/regent.ini" "$spec"
up() { [[ "$(http_code "http://127.0.0.1:$HP/")" == 200 ]]; }
check "haproxy routes web" wait_for --timeout 30 up
check "haproxy runs" wait_for --timeout 10 hx_track_master "$HX/master.sock"
# both web servers up in haproxy's checks (status UP, last check passed: was a fixed 1 s sleep)
web_checked() {
    [[ $(haproxy_admin_cmd "$HX/haproxy-admin.sock" "show stat web 4 -1" |
         awk -F, '$18 == "UP" && $37 == "L7OK"' | wc -l) -eq 2 ]]
}
check "both web servers up in haproxy's checks" wait_for --timeout 10 web_checked
daemon_start load "$PY" "$REGENT_TEST_DIR/e2e/loadgen.py" --url "http://127.0.0.1:$HP/" \
    --out "$T/load.jsonl" --duration 120 --stop-file "$T/load.stop" --threads 2 --interval 0.01
check "the driver ends its $ROUNDS rounds" daemon_wait_exit drive $((ROUNDS * 2 + 40))
check "the driver succeeded" eval '[[ "$(daemon_status drive)" == "exit 0" ]]'
took() { grep -c 'sink haproxy: the new configuration took over' "$LOG"; }
check "every SIGHUP's new sink instance took over ($ROUNDS)" \
    wait_for --timeout 15 eval "[[ \$(took) -ge $ROUNDS ]]"
touch "$T/load.stop"
daemon_wait_exit load 15 >/dev/null
read -r total failed < <("$PY" -c '
import json, sys
n = f = 0
for line in open(sys.argv[1]):
    n += 1
    f += json.loads(line).get("status") != 200
print(n, f)' "$T/load.jsonl")
check "requests through haproxy during the hand-overs: $total, 0 failed ($failed)" \
    eval "[[ $total -gt 0 && $failed -eq 0 ]]"

# The end state, once the last changes are in: the file and haproxy's servers say what the
# registry holds (every instance of every service routed).
"${DRIVE[@]}" expect "$EP" /ho/ > "$T/want"
# file_servers: "SVC ADDR:PORT" for every enabled server line of regent.cfg
file_servers() {
    awk '$1 == "listen" || $1 == "backend" { s = $2 } $1 == "server" && $0 !~ / disabled/ { print s, $3 }' \
        "$HX/regent.cfg" | sort
}
file_is_registry() { [[ "$(file_servers)" == "$(cat "$T/want")" ]]; }
check "regent.cfg routes exactly the registry's $(wc -l < "$T/want") instances" \
    wait_for --timeout 20 file_is_registry
file_is_registry || diff <(file_servers) "$T/want" | head -20 >&2
# run_servers: the same from haproxy's `show servers state` (the servers in use)
run_servers() {
    haproxy_admin_cmd "$HX/haproxy-admin.sock" "show servers state" |
        awk 'NF > 18 && $1 ~ /^[0-9]+$/ && $7 == 0 { print $2, $5 ":" $19 }' | sort
}
run_is_registry() { [[ "$(run_servers)" == "$(cat "$T/want")" ]]; }
check "haproxy's servers in use are the registry's" wait_for --timeout 20 run_is_registry
run_is_registry || diff <(run_servers) "$T/want" | head -20 >&2
check "web answers from both backends" \
    eval '[[ "$("${TOOL[@]}" rr "http://127.0.0.1:$HP/" 20 | grep -c "^[ab] ")" == 2 ]]'

BAD='cannot patch|another haproxy worker answers|still not worker|reload failed|refused a runtime change|unhealthy'
check "no hand-over warning in the log (cannot patch, another worker, failed reload)" \
    eval "! grep -Eq '$BAD' '$LOG'"
grep -E "$BAD" "$LOG" | head -10 >&2

# A change made by someone else is still seen after the hand-overs: regent.cfg edited (another
# length), then an instance moved (the mirror's patch finds the edit and writes the file whole);
# a reload an operator made on the master CLI (the new worker is logged and its states read).
echo "# an operator's line" >> "$HX/regent.cfg"
h_etcdctl "$EP" put /ho/c000/handover/i0/80 \
    "{\"address\":\"127.0.9.1\",\"port\":21999,\"proto\":\"tcp\",\"node\":\"handover\",\"tags\":[],\"meta\":{},\"service_port\":${cports[0]}}" >/dev/null
check "an edit of regent.cfg by someone else is still seen (cannot patch ... writing it whole)" \
    wait_for --timeout 10 grep -q "cannot patch $HX/regent.cfg: it is another length.*writing it whole" "$LOG"
check "... and the file is regent's again" \
    wait_for --timeout 10 eval "! grep -q \"an operator's line\" '$HX/regent.cfg'"
check "an operator's reload of haproxy" haproxy_master_cmd --sock "$HX/master.sock" reload
h_etcdctl "$EP" put /ho/c000/handover/i0/80 \
    "{\"address\":\"127.0.9.1\",\"port\":21998,\"proto\":\"tcp\",\"node\":\"handover\",\"tags\":[],\"meta\":{},\"service_port\":${cports[0]}}" >/dev/null
check "... is still seen (another haproxy worker answers)" \
    wait_for --timeout 20 grep -q "another haproxy worker answers (pid [0-9]*, was [0-9]*) without a reload by regent" "$LOG"
finish_agents regent
if [[ -n "${HANDOVER_KEEP_LOG:-}" ]]; then cp "$LOG" "$HANDOVER_KEEP_LOG"; fi
harness_summary
