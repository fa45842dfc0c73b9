#!/bin/bash
# docker_garbage.sh: the docker source facing a daemon that answers garbage.  dockerd never
# sends malformed JSON, so a real haproxy plays a broken Docker API on a unix socket
# (`http-request return` with fixed bodies):
#  - "broken": the listing has an entry with a bad Id, every inspect is truncated JSON, every
#    other path answers HTTP 500: each is logged with its cause and retried with backoff,
#    nothing is registered, the agent keeps running and stops cleanly;
#  - "noisy": listing and inspect are fine but /events answers a garbage line and ends: the
#    instance is registered once and never flaps while the stream keeps failing and resyncing.
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
check "and retried" wait_for --timeout 5 bash -c "[[ \$(grep -c 'warn: source docker: inspecting container.*malformed JSON' '$L') -ge 3 ]]"
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

DL_REGENTS=" rb rn"
dl_finish
