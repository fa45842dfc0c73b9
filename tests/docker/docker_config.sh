#!/bin/bash
# docker_config.sh: `regent --check-config` on [source docker] sections (no daemon needed):
# host_ip required unless internal, a loopback host_ip refused unless allow_loopback, bad
# socket / api_version, each reported as FILE:LINE: message.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}"
T=$(mktemp -d /tmp/docker-config.XXXXXX)
trap 'rm -rf "$T"' EXIT
PASS=0 FAIL=0
ok()  { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "not ok - $1"; shift; printf '  | %s\n' "$@" >&2; }

# write NAME: stdin -> $T/NAME.ini (a store so that the config has something to register into)
write() { { cat; printf '\n[store teststore]\n'; } > "$T/$1.ini"; }
# expect_ok NAME DESC
expect_ok() {
    local out
    if out=$("$REGENT_BIN" --check-config -c "$T/$1.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1); then
        ok "$2"
    else bad "$2" "$out"; fi
}
# expect_err NAME DESC REGEX: exit 1 and an error line matching REGEX (FILE:LINE: ...)
expect_err() {
    local out rc
    out=$("$REGENT_BIN" --check-config -c "$T/$1.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1)
    rc=$?
    if [[ $rc -eq 1 ]] && grep -qE "$3" <<<"$out"; then ok "$2"
    else bad "$2" "exit $rc" "$out"; fi
}

write missing_hostip <<'EOF'
[agent]
node = n1

[source docker]
socket = /run/docker.sock
EOF
expect_err missing_hostip "host_ip is required unless internal" \
    "missing_hostip\.ini:4: \[source docker\]: \[agent\] host_ip is required"

write internal_no_hostip <<'EOF'
[agent]
node = n1

[source docker]
internal = true
EOF
expect_ok internal_no_hostip "internal = true needs no host_ip"

write loopback <<'EOF'
[agent]
node = n1
host_ip = 127.0.0.1

[source docker]
EOF
expect_err loopback "a loopback host_ip is refused" \
    "loopback\.ini:5: \[source docker\]: \[agent\] host_ip 127\.0\.0\.1 is a loopback address"

write loopback6 <<'EOF'
[agent]
host_ip = ::1
[source docker]
EOF
expect_err loopback6 "an IPv6 loopback host_ip is refused" "host_ip ::1 is a loopback address"

write localhost <<'EOF'
[agent]
host_ip = localhost
[source docker]
EOF
expect_err localhost "host_ip = localhost is refused" "host_ip localhost is a loopback address"

write loopback_allowed <<'EOF'
[agent]
host_ip = 127.0.0.1
[source docker]
allow_loopback = true
EOF
expect_ok loopback_allowed "a loopback host_ip is accepted with allow_loopback = true"

write routable <<'EOF'
[agent]
node = backend-1
host_ip = 10.170.71.10
[source docker]
socket = /var/run/docker.sock
EOF
expect_ok routable "the design's backend example is accepted"

write relsocket <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
socket = docker.sock
EOF
expect_err relsocket "a relative socket path is refused" "relsocket\.ini:4: source docker\.socket: must be an absolute path"

write oldapi <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
api_version = 1.24
EOF
expect_err oldapi "an API version before 1.41 is refused" "oldapi\.ini:4: source docker\.api_version: expected MAJOR\.MINOR, 1\.41 or later"

write signapi <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
api_version = 1.+41
EOF
expect_err signapi "an API version with a sign is refused" "signapi\.ini:4: source docker\.api_version: expected MAJOR\.MINOR, 1\.41 or later"

write blankapi <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
api_version = 1. 41
EOF
expect_err blankapi "an API version with a blank is refused" "blankapi\.ini:4: source docker\.api_version: expected MAJOR\.MINOR, 1\.41 or later"

write badbool <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
internal = maybe
ping_interval = 10x
EOF
expect_err badbool "typed keys are checked by the core" "badbool\.ini:4: .*internal"

write unknown <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
sokcet = /run/docker.sock
EOF
expect_err unknown "an unknown key is refused" "unknown\.ini:4: .*sokcet"

# A socket that does not exist: a warning, not an error (Docker may start later).
write nosock <<'EOF'
[agent]
host_ip = 10.0.0.1
[source docker]
socket = /nonexistent/regent-test/docker.sock
EOF
if out=$("$REGENT_BIN" --check-config -c "$T/nosock.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1); then
    ok "a missing docker socket passes --check-config"
else bad "a missing docker socket passes --check-config" "$out"; fi
if grep -q "warn: source docker: socket /nonexistent/regent-test/docker.sock: No such file or directory (Docker not started yet?" <<<"$out"; then
    ok "... with a warning naming the socket and the cause"
else bad "... with a warning naming the socket and the cause" "$out"; fi

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[[ $FAIL -eq 0 ]]
