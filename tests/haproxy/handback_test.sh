#!/usr/bin/env bash
# handback_test.sh - the two ends of a [sink haproxy] hand-over that handover_test.sh does not
# reach (plugins/haproxy/handover.c).  Real etcd and haproxy 2.6 on loopback; 20 services of 4
# instances in etcd with one instance moving every 20 ms while the first part runs, and a load
# through haproxy to a service of two real backends all along.
#  1. A new sink instance that fails its trial hands the file and haproxy back: the SIGHUP's
#     configuration names a `haproxy` binary (a wrapper) that passes --check-config's check of the
#     binary but refuses every configuration of regent.cfg (`haproxy -c` exits 1), and sets a
#     global `maxconn` the running instance does not write.  The new instance adopts haproxy,
#     learns its servers, and fails at its first `haproxy -c`; the running one drives again (the
#     file written whole, the states read back, one reload).  Checks: the refusal and the hand-
#     back are logged; the file and haproxy's servers in use are the registry's afterwards (the
#     moves made after the hand-back were applied by the instance that resumed); the file has no
#     line of the refused configuration; a later change of a moving instance is applied.
#  2. A service removed just before a SIGHUP keeps its empty grace across the hand-over: gz
#     (`empty_grace = 6s`) loses its only instance, answers 503, the configuration changes
#     (reload_interval) and the new instance takes over; gz keeps answering 503 (its listener
#     open) until its grace ends, counted from its removal, not from the hand-over, then its port
#     is closed.
#  3. A rename of a new instance in flight when a newer SIGHUP abandons it (every rename held
#     1.5 s on the loop by the plugin's test knob REGENT_HX_TEST_RENAME_DELAY_MS) does not land
#     over the file the running instance wrote whole when it resumed: regent.cfg and haproxy
#     run the running configuration (not the abandoned one's global maxconn), and the next
#     change patches the file in place.
# All parts: 0 failed requests through haproxy, no "cannot patch", "another haproxy worker
# answers", "still not worker", failed reload or refused runtime change in the log.
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
NSVC=20
CHURN_S=${CHURN_S:-7}
GRACE_S=6
RENAME_DELAY_MS=${RENAME_DELAY_MS:-1500}

T=$H_TMP
HX=$T/hx
mkdir -p "$HX" && chmod 0750 "$HX"
EP=$(etcd_start hb) || exit 1
P_A=$(free_port); P_B=$(free_port); HP=$(free_port); GP=$(free_port)
cports=(); for ((k = 0; k < NSVC; k++)); do cports+=("$(free_port)"); done
daemon_start web "${TOOL[@]}" backend "$P_A" a "$P_B" b
for p in "$P_A" "$P_B"; do
    wait_for --timeout 20 http_get "http://127.0.0.1:$p/" >/dev/null || { echo "backend $p did not start" >&2; exit 1; }
done
# The binary of the configuration that fails: haproxy itself for anything but regent.cfg (the
# check of the binary and the includes passes), an [ALERT] that names no line nor proxy and
# exit 1 for regent.cfg and its candidates.
REAL_HAPROXY=$(command -v haproxy)
cat > "$T/refusing-haproxy" <<EOF
#!/bin/sh
for a in "\$@"; do
    case "\$a" in
    "$HX/regent.cfg"*) echo "[ALERT]    (1) : handback test: this binary refuses every configuration of regent"; exit 1 ;;
    esac
done
exec "$REAL_HAPROXY" "\$@"
EOF
chmod 0755 "$T/refusing-haproxy"
# write_ini INTERVAL_MS [EXTRA_SINK_LINES]: regent.ini, renamed into place
write_ini() {
    cat > "$T/regent.ini.tmp" <<EOF
[agent]
node = handback
debounce = 20ms
state_dir = $T/state

[store etcd]
endpoints = $EP
prefix = /hb/

[sink haproxy]
manage = true
keep_running = false
config_file = $HX/regent.cfg
master_socket = $HX/master.sock
bind_address = 127.0.0.1
reload_interval = $1ms
${2:-}

[service web]
port = $HP
mode = http
check = /
check_interval = 500ms

[service gz]
port = $GP
mode = http
empty_grace = ${GRACE_S}s
EOF
    mv "$T/regent.ini.tmp" "$T/regent.ini"
}
write_ini 800
check "the config passes --check-config" \
    "$REGENT_BIN" --check-config -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR"
daemon_start regent env REGENT_HX_TEST_RENAME_DELAY_MS="$RENAME_DELAY_MS" "$REGENT_BIN" -c "$T/regent.ini" -p "$REGENT_PLUGIN_DIR" -L debug
LOG=$(daemon_log regent)
RPID=$(daemon_pid regent)
spec=$(printf '{"web": [], "web_port": 0, "churn": %d, "per": 4, "churn_ports": [%s], "seconds": %d}' \
    "$NSVC" "$(IFS=,; echo "${cports[*]}")" "$CHURN_S")
up() { [[ "$(http_code "http://127.0.0.1:$HP/")" == 200 ]]; }
# The registry's web service first (the churn services come with the driver below).
for i in 0 1; do
    p=$([[ $i == 0 ]] && echo "$P_A" || echo "$P_B")
    h_etcdctl "$EP" put "/hb/web/handback/w$i/80" \
        "{\"address\":\"127.0.0.1\",\"port\":$p,\"proto\":\"tcp\",\"node\":\"handback\",\"tags\":[],\"meta\":{}}" >/dev/null
done
check "haproxy routes web" wait_for --timeout 30 up
check "haproxy runs" wait_for --timeout 10 hx_track_master "$HX/master.sock"
# both web servers up in haproxy's checks (status UP, last check passed: was a fixed 1 s sleep)
web_checked() {
    [[ $(haproxy_admin_cmd "$HX/haproxy-admin.sock" "show stat web 4 -1" |
         awk -F, '$18 == "UP" && $37 == "L7OK"' | wc -l) -eq 2 ]]
}
check "both web servers up in haproxy's checks" wait_for --timeout 10 web_checked
daemon_start load "$PY" "$REGENT_TEST_DIR/e2e/loadgen.py" --url "http://127.0.0.1:$HP/" \
    --out "$T/load.jsonl" --duration 90 --stop-file "$T/load.stop" --threads 2 --interval 0.01

# ---- 1. a new instance that fails its trial hands back ----
daemon_start drive "${DRIVE[@]}" churn "$EP" /hb/ "$spec"
sleep 2 # the churn services in haproxy, their instances moving
write_ini 900 "haproxy = $T/refusing-haproxy
maxconn = 4321"
kill -HUP "$RPID"
check "the refusing binary's configuration is refused (the previous one runs)" \
    wait_for --timeout 20 grep -q "new configuration refused: .*haproxy -c rejected" "$LOG"
check "the running instance drives again, the file and haproxy taken as unknown" \
    wait_for --timeout 10 grep -q "the new instance did not take over: this one drives .* again (the file written whole" "$LOG"
write_ini 800 # the configuration that runs
check "the driver ends its moves" daemon_wait_exit drive $((CHURN_S + 20))
check "the driver succeeded" eval '[[ "$(daemon_status drive)" == "exit 0" ]]'
"${DRIVE[@]}" expect "$EP" /hb/ > "$T/want"
file_servers() {
    awk '$1 == "listen" || $1 == "backend" { s = $2 } $1 == "server" && $0 !~ / disabled/ { print s, $3 }' \
        "$HX/regent.cfg" | sort
}
file_is_registry() { [[ "$(file_servers)" == "$(cat "$T/want")" ]]; }
run_servers() {
    haproxy_admin_cmd "$HX/haproxy-admin.sock" "show servers state" |
        awk 'NF > 18 && $1 ~ /^[0-9]+$/ && $7 == 0 { print $2, $5 ":" $19 }' | sort
}
run_is_registry() { [[ "$(run_servers)" == "$(cat "$T/want")" ]]; }
check "after the hand-back regent.cfg routes exactly the registry's $(wc -l < "$T/want") instances" \
    wait_for --timeout 20 file_is_registry
file_is_registry || diff <(file_servers) "$T/want" | head -20 >&2
check "... and haproxy's servers in use are the registry's" wait_for --timeout 20 run_is_registry
run_is_registry || diff <(run_servers) "$T/want" | head -20 >&2
check "regent.cfg has nothing of the refused configuration (maxconn 4321)" \
    eval "! grep -q 'maxconn 4321' '$HX/regent.cfg'"
# A change after the hand-back: applied by the instance that resumed (runtime API, file).
h_etcdctl "$EP" put /hb/c000/handover/i0/80 \
    "{\"address\":\"127.0.9.1\",\"port\":21999,\"proto\":\"tcp\",\"node\":\"handover\",\"tags\":[],\"meta\":{},\"service_port\":${cports[0]}}" >/dev/null
"${DRIVE[@]}" expect "$EP" /hb/ > "$T/want"
check "a change after the hand-back is in regent.cfg" wait_for --timeout 10 file_is_registry
check "... and in haproxy" wait_for --timeout 10 run_is_registry

# ---- 2. a service's empty grace across a hand-over ----
gz_code() { http_code "http://127.0.0.1:$GP/"; }
h_etcdctl "$EP" put /hb/gz/handback/g0/80 \
    "{\"address\":\"127.0.0.1\",\"port\":$P_A,\"proto\":\"tcp\",\"node\":\"handback\",\"tags\":[],\"meta\":{}}" >/dev/null
check "gz is routed" wait_for --timeout 20 eval '[[ "$(gz_code)" == 200 ]]'
took0=$(grep -c 'sink haproxy: the new configuration took over' "$LOG")
h_etcdctl "$EP" del /hb/gz/handback/g0/80 >/dev/null
t0=$SECONDS
check "gz, empty, answers 503 (its grace)" wait_for --timeout 5 eval '[[ "$(gz_code)" == 503 ]]'
write_ini 900
kill -HUP "$RPID"
check "the new instance takes over" \
    wait_for --timeout 15 eval "[[ \$(grep -c 'sink haproxy: the new configuration took over' '$LOG') -gt $took0 ]]"
t_took=$((SECONDS - t0))
check "... inside the grace, early enough to be seen (at +$t_took s, before +$((GRACE_S - 2)) s)" \
    eval "(( t_took <= GRACE_S - 2 ))"
# Until 1 s before its grace ends (counted from its removal): its listener stays (503).
codes=""
while ((SECONDS < t0 + GRACE_S - 1)); do codes+=" $(gz_code)"; sleep 0.2; done
check "gz keeps its listener across the hand-over until its grace ends (503 all along:$(tr ' ' '\n' <<<"$codes" | grep . | sort | uniq -c | awk '{ printf " %s x%s", $2, $1 }'))" \
    eval "[[ -n '$codes' && -z \"\$(tr ' ' '\n' <<<'$codes' | grep -v '^503$' | grep -v '^$')\" ]]"
check "then its port closes (the grace was not started again by the new instance)" \
    wait_for --timeout 6 eval '[[ "$(gz_code)" == 000 ]]'
check "... at the end of the grace (removed $((SECONDS - t0)) s ago, the grace is $GRACE_S s)" \
    eval "(( SECONDS - t0 <= GRACE_S + 4 ))"

# ---- 3. a write of a new instance in flight when it is abandoned ----
# Every rename of a candidate over regent.cfg is held RENAME_DELAY_MS on the loop (the plugin's
# test knob: a slow disk or a busy threadpool).  A configuration with a global `maxconn` (a
# candidate that differs: haproxy -c, then the rename) starts a new instance; once its rename is
# under way a newer SIGHUP restores the running configuration: the new instance is abandoned
# and the running one resumes (the file written whole, one reload).  The abandoned rename must
# not land over that file: the running one waits for it.
renames() { grep -c "sink haproxy (new): renaming the candidate over .* in $RENAME_DELAY_MS ms" "$LOG"; }
r0=$(renames)
write_ini 900 "maxconn = 4321"
kill -HUP "$RPID"
check "the new instance's rename is under way (held $RENAME_DELAY_MS ms)" \
    wait_for --timeout 20 eval "[[ \$(renames) -gt $r0 ]]"
write_ini 900
kill -HUP "$RPID"
check "a newer reload abandons the new instance" \
    wait_for --timeout 10 grep -q "abandoned: a newer reload superseded its configuration" "$LOG"
# ms_of PATTERN: the time of day (ms) of the last log line matching PATTERN
ms_of() {
    grep "$1" "$LOG" | tail -1 |
        awk '{ split(substr($1, 12), a, ":"); printf "%d\n", (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }'
}
held=$(( $(ms_of "abandoned: a newer reload") - $(ms_of "(new): renaming the candidate over") ))
check "... while its rename was still held ($held ms after it began, of $RENAME_DELAY_MS)" \
    eval "(( held >= 0 && held < RENAME_DELAY_MS ))"
check "the running instance drives again, the file written whole" \
    wait_for --timeout 10 eval "[[ \$(grep -c 'the new instance did not take over: this one drives .* again (the file written whole' '$LOG') -ge 2 ]]"
sleep "$(awk -v ms="$RENAME_DELAY_MS" 'BEGIN { print ms / 1000 + 1.5 }')" # the abandoned rename has landed
check "regent.cfg is the running configuration's (no maxconn 4321 of the abandoned one)" \
    eval "! grep -q 'maxconn 4321' '$HX/regent.cfg'"
check "... and so is haproxy's (show info: no Maxconn 4321)" \
    eval "! haproxy_admin_cmd '$HX/haproxy-admin.sock' 'show info' | grep -q '^Maxconn: 4321'"
h_etcdctl "$EP" put /hb/c001/handover/i0/80 \
    "{\"address\":\"127.0.9.2\",\"port\":21999,\"proto\":\"tcp\",\"node\":\"handover\",\"tags\":[],\"meta\":{},\"service_port\":${cports[1]}}" >/dev/null
"${DRIVE[@]}" expect "$EP" /hb/ > "$T/want"
check "a change after it is in regent.cfg (patched in place: no 'cannot patch' below)" \
    wait_for --timeout 10 file_is_registry
check "... and in haproxy" wait_for --timeout 10 run_is_registry

touch "$T/load.stop"
daemon_wait_exit load 15 >/dev/null
read -r total failed < <("$PY" -c '
import json, sys
n = f = 0
for line in open(sys.argv[1]):
    n += 1
    f += json.loads(line).get("status") != 200
print(n, f)' "$T/load.jsonl")
check "requests through haproxy during the hand-back and the hand-over: $total, 0 failed ($failed)" \
    eval "[[ $total -gt 0 && $failed -eq 0 ]]"
BAD='cannot patch|another haproxy worker answers|still not worker|reload failed|refused a runtime change'
check "no warning of a foreign edit or reload, no failed reload in the log" \
    eval "! grep -Eq '$BAD' '$LOG'"
grep -E "$BAD" "$LOG" | head -10 >&2
finish_agents regent
if [[ -n "${HANDBACK_KEEP_LOG:-}" ]]; then cp "$LOG" "$HANDBACK_KEEP_LOG"; fi
harness_summary
