#!/bin/bash
# docker_bigevent.sh: an event longer than the docker source's line limit (EVENT_LINE_MAX,
# 4 MiB: a container with megabytes of labels) neither stops discovery nor loops.  A scripted
# fake API (fakeapi.py huge): when the first event stream opens, c1 starts (a normal event) and
# then c2 (an event carrying a 5 MiB label).  The source drops the stream, lists the
# containers again (c1 and c2 are running: both registered) and follows events from that
# listing: c3, started 0.3 s after the second stream opened, arrives through it.  Before
# session 20's fix the stream was resumed from the last event seen (c1's), so every reconnect
# was sent c2's event again and failed: the source reconnected for good (health failing,
# events seen only through the listing of each retry).
set -u
source "$(dirname "$0")/dlib.sh"
harness_init || exit 1
DK_SOCK=$H_TMP/fake.sock
daemon_start fakeapi "$PY" "$DL_DIR/fakeapi.py" "$DK_SOCK" huge
wait_for --timeout 10 test -S "$DK_SOCK" || { check "fake API up" false; harness_summary; exit 1; }
cid() { local i; for ((i = 0; i < 32; i++)); do printf '%02x' "$1"; done; }
streams() { grep -c 'GET /v1.41/events' "$H_TMP/fakeapi.log"; }

regent_ini rb
regent_launch rb
L=$(regent_log rb)
check "synced with the fake daemon" wait_for --timeout 10 grep -q 'synced with docker' "$L"
for i in 1 2 3; do
    id=$(cid "$i"); port=$((20000 + i))
    check "c$i is registered" \
        wait_for --timeout 15 store_has rb "^register $NODE/${id:0:12}/$port fake 127\.0\.0\.1:$port$"
done
check "the oversized event is named in a warning" \
    grep -q 'event stream lost: an event longer than 4194304 bytes' "$L"
check "c3 arrived through the second stream (started after it opened)" \
    wait_for --timeout 5 test "$(streams)" -ge 2
sleep 3 # time for reconnects, if the stream were sent the oversized event again
n=$(streams)
check "the stream was opened twice in all, not again and again ($n)" test "$n" -eq 2
lost=$(grep -c 'warn: source docker: event stream lost' "$L")
check "the stream was lost once ($lost)" test "$lost" -eq 1
check "the agent keeps running" daemon_alive rb
DL_REGENTS=" rb"
dl_finish
