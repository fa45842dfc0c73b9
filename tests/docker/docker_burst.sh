#!/bin/bash
# docker_burst.sh: inspects queued behind a burst of events are not forgotten.  The docker
# source inspects at most MAX_INFLIGHT (8) containers at a time; the others wait in its queue
# until an inspect answer frees a slot.  A fake API (fakeapi.py, no dockerd needed) sends, in
# one write, "start" for 12 containers and then "die" for the 8 whose inspects are in flight:
# their removal frees every slot, no answer will come to free one, and the 4 queued
# containers must still be inspected and registered (they waited silently forever before:
# nothing pumped the queue when a removal cancelled an in-flight inspect).
set -u
source "$(dirname "$0")/dlib.sh"
harness_init || exit 1
N=12 K=8
DK_SOCK=$H_TMP/fake.sock
daemon_start fakeapi "$PY" "$DL_DIR/fakeapi.py" "$DK_SOCK" burst "$N" "$K"
wait_for --timeout 10 test -S "$DK_SOCK" || { check "fake API up" false; harness_summary; exit 1; }
cid() { local i; for ((i = 0; i < 32; i++)); do printf '%02x' "$1"; done; }

regent_ini rb
regent_launch rb
L=$(regent_log rb)
check "synced with the (empty) fake daemon" wait_for --timeout 10 grep -q 'synced with docker' "$L"
check "the fake daemon sent the burst (the stream asked for)" \
    wait_for --timeout 10 grep -q 'GET /v1.41/events' "$H_TMP/fakeapi.log"
for ((i = K + 1; i <= N; i++)); do
    id=$(cid "$i"); port=$((20000 + i))
    check "c$i, queued behind 8 inspects whose containers died, is registered" \
        wait_for --timeout 10 store_has rb "^register $NODE/${id:0:12}/$port fake 127\.0\.0\.1:$port$"
done
for ((i = 1; i <= K; i++)); do
    id=$(cid "$i")
    check "c$i (died) is never registered" bash -c "! grep -q '/${id:0:12}/' '$H_TMP/rb.store'"
done
check "the agent keeps running" daemon_alive rb
DL_REGENTS=" rb"
dl_finish
