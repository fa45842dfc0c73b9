#!/bin/bash
# docker_garbage.sh: the docker source facing a daemon that answers garbage.  dockerd never
# sends malformed JSON, so a real haproxy plays a broken Docker API on a unix socket
# (`http-request return` with fixed bodies):
#  - "broken": the listing has an entry with a bad Id, every inspect is truncated JSON, every
#    other path answers HTTP 500: each is logged with its cause and retried with backoff,
#    nothing is registered, the agent keeps running and stops cleanly;
#  - "noisy": listing and inspect are fine but /events answers a garbage line and ends: the
#    instance is registered once and never flaps while the stream keeps failing and resyncing;
#  - "gone": the listing has a container whose inspect answers 404 (it went away between the
#    listing and the inspect): dropped quietly, not a failure; the other one is registered; its
#    event stream sends two events (one twice) and ends, and every reconnect replays them:
#    regent_docker_events_total counts 2.
set -u
source "$(dirname "$0")/dlib.sh"
harness_init || exit 1
ID=3f2a9c6d8e1b4a5f7c0d2e4b6a8c0e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d
B=$H_TMP/bodies
mkdir -p "$B"
printf '[{"Id":"%s","Names":["/fake1"]},{"Id":"../../etc/passwd"}]' "$ID" > "$B/list.json"
printf '{"Id":"%s","Name":"/fake1","State":{"Running":tru' "$ID" > "$B/truncated.json"
printf '{"Id":"%s","Name":"/fake1","State":{"Running":true,"StartedAt":"2026-01-01T00:00:00Z"},"Config":{"Image":"acme/fake:1","ExposedPorts":{"9999/tcp":{}}},"HostConfig":{"NetworkMode":"host"}}' \
    "$ID" > "$B/inspect.json"
printf 'this is not json\n{"Type":"container","Action":"start","Actor":{"ID":"short"}}\n' > "$B/events.txt"
printf '{"message":"boom"}' > "$B/error.json"
# (the gone daemon's fake1 carries a label with an invalid meta key: refused, counted in
# regent_docker_rejected_total, the container still registered)
printf '{"Id":"%s","Name":"/fake1","State":{"Running":true,"StartedAt":"2026-01-01T00:00:00Z"},"Config":{"Image":"acme/fake:1","ExposedPorts":{"9999/tcp":{}},"Labels":{"regent.meta.bad key!":"x"}},"HostConfig":{"NetworkMode":"host"}}' \
    "$ID" > "$B/inspect_meta.json"
ID2=9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d
printf '[{"Id":"%s","Names":["/fake1"]},{"Id":"%s","Names":["/fake2"]}]' "$ID" "$ID2" > "$B/list2.json"
printf '{"message":"No such container: %s"}' "$ID2" > "$B/nosuch.json"
# the gone daemon's event stream: two events about fake1 (the first one twice), then it ends; the
# reconnect (since is inclusive) gets the same three lines again, every time
ev() { printf '{"Type":"container","Action":"%s","Actor":{"ID":"%s","Attributes":{"name":"fake1"}},"time":1767225600,"timeNano":%s}\n' "$1" "$ID" "$2"; }
{ ev "exec_create: sh -c true" 1767225600000000001; ev "exec_create: sh -c true" 1767225600000000001
  ev "exec_start: sh -c true" 1767225600000000002; } > "$B/events_gone.txt"

cat > "$H_TMP/fake.cfg" <<EOF
global
    maxconn 100
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend broken
    bind unix@$H_TMP/broken.sock mode 600
    http-request return status 200 content-type application/json file $B/list.json if { path /v1.41/containers/json }
    http-request return status 200 content-type application/json file $B/truncated.json if { path_reg ^/v1\.41/containers/[0-9a-f]{64}/json\$ }
    http-request return status 500 content-type application/json file $B/error.json
frontend noisy
    bind unix@$H_TMP/noisy.sock mode 600
    http-request return status 200 content-type application/json file $B/list.json if { path /v1.41/containers/json }
    http-request return status 200 content-type application/json file $B/inspect.json if { path_reg ^/v1\.41/containers/[0-9a-f]{64}/json\$ }
    http-request return status 200 content-type application/json file $B/events.txt if { path_beg /v1.41/events }
    http-request return status 200 content-type text/plain string OK if { path /v1.41/_ping }
    http-request return status 500 content-type application/json file $B/error.json
frontend gone
    bind unix@$H_TMP/gone.sock mode 600
    http-request return status 200 content-type application/json file $B/list2.json if { path /v1.41/containers/json }
    http-request return status 404 content-type application/json file $B/nosuch.json if { path /v1.41/containers/$ID2/json }
    http-request return status 200 content-type application/json file $B/inspect_meta.json if { path_reg ^/v1\.41/containers/[0-9a-f]{64}/json\$ }
    http-request return status 200 content-type application/json file $B/events_gone.txt if { path_beg /v1.41/events }
    http-request return status 200 content-type text/plain string OK if { path /v1.41/_ping }
    http-request return status 500 content-type application/json file $B/error.json
EOF
haproxy -c -q -f "$H_TMP/fake.cfg" || { check "fake API config valid" false; harness_summary; exit 1; }
daemon_start fakeapi haproxy -db -f "$H_TMP/fake.cfg"
wait_for --timeout 10 test -S "$H_TMP/noisy.sock" || { check "fake API up" false; harness_summary; exit 1; }

# ---- broken -----------------------------------------------------------------------------
DK_SOCK=$H_TMP/broken.sock
regent_ini rb
regent_launch rb
L=$(regent_log rb)
check "a listing entry with a bad Id is skipped with a warning" \
    wait_for --timeout 5 grep -q 'listing containers: skipped 1 entry without a valid Id' "$L"
check "truncated inspect JSON is logged with its cause" wait_for --timeout 5 grep -qE \
    "warn: source docker: inspecting container .*\(${ID:0:12}\): malformed JSON .*retrying in [0-9]+ ms" "$L"
check "and retried, the retries at debug level" wait_for --timeout 5 bash -c "[[ \$(grep -c 'debug: source docker: inspecting container.*malformed JSON' '$L') -ge 2 ]]"
check "one warning for the outage, not one per retry" \
    bash -c "[[ \$(grep -c 'warn: source docker: inspecting container.*malformed JSON' '$L') -eq 1 ]]"
check "the source reports itself unhealthy" grep -q 'unhealthy: docker at' "$L"
check "the backoff grows (200 ms doubling)" wait_for --timeout 5 bash -c "[[ \$(grep -o 'retrying in [0-9]* ms' '$L' | awk '{print \$3}' | sort -n | tail -1) -ge 600 ]]"
check "nothing registered" bash -c "! grep -q '^register' '$H_TMP/rb.store'"
check "the agent keeps running" daemon_alive rb

# ---- noisy --------------------------------------------------------------------------------
DK_SOCK=$H_TMP/noisy.sock
regent_ini rn
regent_launch rn
L=$(regent_log rn)
check "a good listing is reported" wait_for --timeout 5 store_has rn "^register $NODE/${ID:0:12}/9999 fake 127\.0\.0\.1:9999$"
check "a garbage event line is logged with its cause" wait_for --timeout 5 \
    grep -qE 'warn: source docker: event stream: malformed JSON' "$L"
check "the stream is retried" wait_for --timeout 5 bash -c "[[ \$(grep -c 'resynced with docker' '$L') -ge 2 ]]"
check "the backoff grows while the stream keeps failing right after each listing" \
    wait_for --timeout 5 bash -c "[[ \$(grep -o 'retrying in [0-9]* ms' '$L' | awk '{print \$3}' | sort -n | tail -1) -ge 600 ]]"
check "the instance never flaps while the stream keeps failing" bash -c \
    "[[ \$(grep -c '^register' '$H_TMP/rn.store') -eq 1 ]] && ! grep -q '^deregister' '$H_TMP/rn.store'"
check "the agent keeps running" daemon_alive rn
check "no crash: rb still running" daemon_alive rb

# ---- gone: 404 between the listing and the inspect ------------------------------------------------
DK_SOCK=$H_TMP/gone.sock
regent_ini rg
# with the stats sink: the docker source's metrics are asserted too
PM=$(free_port)
[[ -f "$REGENT_PLUGIN_DIR/stats.so" ]] && printf '\n[sink stats]\nlisten = 127.0.0.1:%s\n' "$PM" >> "$H_TMP/rg.ini"
regent_launch rg
L=$(regent_log rg)
check "404: the other container is registered" \
    wait_for --timeout 5 store_has rg "^register $NODE/${ID:0:12}/9999 fake 127\.0\.0\.1:9999$"
check "404: the container gone since the listing is dropped (logged at debug, naming its id)" \
    wait_for --timeout 5 grep -qE "debug: source docker: container .*\(${ID2:0:12}\) is gone: HTTP 404" "$L"
check "404: not treated as a failure (no 'inspecting container' warning for it)" \
    bash -c "! grep -qE 'warn: source docker: inspecting container .*\(${ID2:0:12}\)' '$L'"
check "a label with an invalid meta key is refused with a warning naming it" \
    grep -qE "warn: source docker: container .*: label \"regent.meta.bad key!\": invalid meta key" "$L"
check "404: the gone container is never registered" bash -c "! grep -q '/${ID2:0:12}/' '$H_TMP/rg.store'"
check "the agent keeps running" daemon_alive rg
# metric NAME: the value of the sample NAME{plugin="docker"} (or NAME{...,plugin="docker",...})
metric() { http_get "http://127.0.0.1:$PM/metrics" | awk -v m="$1" 'index($1, m "{") == 1 && $1 ~ /plugin="docker"/ { s += $2; n++ } END { if (n) print s + 0 }'; }
metric_ge() { local v; v=$(metric "$1"); [[ -n "$v" ]] && awk -v v="$v" -v m="$2" 'BEGIN { exit !(v >= m) }'; }
if [[ -f "$REGENT_PLUGIN_DIR/stats.so" ]]; then
    check_eq "metrics: regent_docker_containers is 1 (the gone one not counted)" 1 \
        "$(wait_for --timeout 15 metric_ge regent_docker_containers 1 >/dev/null 2>&1; metric regent_docker_containers)"  # lint: ok (the check_eq asserts the value)
    check "metrics: regent_docker_resyncs_total counts the listings" metric_ge regent_docker_resyncs_total 1
    check "metrics: regent_docker_errors_total counts the event stream the daemon closes" \
        wait_for --timeout 10 metric_ge regent_docker_errors_total 1
    # each reconnect replays the same three lines: once at least 3 listings (2 replays) are in,
    # the events counted are the 2 distinct ones (the repeats dropped, never handled twice)
    check "metrics: the event stream was replayed at least twice (resyncs >= 3)" \
        wait_for --timeout 10 metric_ge regent_docker_resyncs_total 3
    check_eq "metrics: regent_docker_events_total counts the 2 distinct events, not their repeats" 2 \
        "$(metric regent_docker_events_total)"
    check "metrics: regent_docker_rejected_total counts the refused label" metric_ge regent_docker_rejected_total 1
else
    harness_skip "docker metrics: the stats sink is not built"
fi

DL_REGENTS=" rb rn rg"
dl_finish
