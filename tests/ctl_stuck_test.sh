#!/usr/bin/env bash
# ctl_stuck_test.sh - `regent ctl` facing an agent that accepts no connection (its loop busy or
# stopped): a listener that never accepts, its backlog full.  The client gives up after its
# --timeout (2 s here; 60 s by default) with an error that says so, exit 1.  It waited in
# connect() forever before (its timeouts were set once connected, and a unix socket's connect
# waits while the backlog is full, for as long as SO_SNDTIMEO says).
set -u
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init
PY=${PYTHON3:-python3}
SOCK=$H_TMP/stuck.sock
# listen(0) and one connection left waiting in the queue: the next connect() waits
daemon_start stuck "$PY" -c '
import os, socket, sys, time
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(p)
s.listen(0)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(p)
print("ready", flush=True)
while True:
    time.sleep(60)
' "$SOCK"
check "the listener that never accepts is up" wait_for --timeout 10 grep -q '^ready' "$H_TMP/stuck.log"
t0=$(date +%s)
out=$(timeout 30 "$REGENT_BIN" ctl -s "$SOCK" --timeout 2s status 2>&1)
rc=$?
dt=$(($(date +%s) - t0))
printf '%s\n' "$out" >&2
check_eq "regent ctl gives up by itself, exit 1 (124: still waiting after 30 s)" 1 "$rc"
check_contains "it says the agent accepted no connection within 2s" "$out" \
    "accepted no connection within 2s"
check "after its timeout, not before (${dt} s)" test "$dt" -ge 1 -a "$dt" -le 10
out=$("$REGENT_BIN" ctl -s "$SOCK" --timeout 0 status 2>&1); rc=$?
check_eq "--timeout 0 is a usage error" 2 "$rc"
check_contains "naming the option" "$out" "--timeout: expected a duration"
daemon_stop stuck
harness_summary
