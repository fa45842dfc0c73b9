#!/usr/bin/env bash
# tests/docker/docker_shutdown.sh: a host shutting down leaves clients' catalogs promptly.
# The unit is ordered Before=docker.service, so systemd stops Docker first while regent still
# runs (the unit's lines are checked by tests/packaging/systemd_test.sh, a real shutdown and boot
# under systemd by tests/packaging/systemd_shutdown.sh; this test plays the same sequence without
# systemd).  A real dockerd and etcd; regent with [source docker] and
# [store etcd] (the default stop: keep the lease; ttl 60 s):
#  1. dockerd SIGTERMed: it stops its 3 containers; each instance's key is deleted while
#     regent still runs, well before the TTL, and the lease is still alive (deregistered, not
#     expired or revoked);
#  2. dockerd started again: its containers (--restart always) come back; the docker source
#     reconnects on its own and registers them again;
#  3. boot order: Docker down, regent started first, then Docker: the containers registered;
#  4. dockerd SIGKILLed (its containers keep running under their shims: keys kept), then w2's
#     main process killed while dockerd is down: its key is deleted (the docker source watches
#     the processes of the containers it knows while the daemon is unreachable, pidwatch.c),
#     w1's and w3's are kept; dockerd started again: the normal listing takes over.
source "$(dirname "$0")/dlib.sh"
dl_init
EP=$(etcd_start e1) || { dl_finish; exit 1; }
TTL=60

nkeys() { h_etcdctl "$EP" get --prefix /backends/ --keys-only | sed '/^$/d' | wc -l; }
nkeys_is() { [[ "$(nkeys)" == "$1" ]]; }
lease_alive() {
    local id
    id=$(sed -n 's/^lease=//p' "$H_TMP/r.state/etcd.lease")
    [[ -n "$id" ]] && h_etcdctl "$EP" lease timetolive "$id" | grep -q 'remaining('
}
now() { date +%s.%3N; }
elapsed() { "$PY" -c "import sys,time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$1"; }
lt() { "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

P=() ID=()
for i in 1 2 3; do
    P[i]=$(free_port 127.0.0.1)
    if ! ID[i]=$(run_whoami "w$i" "${P[i]}" --restart always); then
        check "container w$i started" false
        dl_finish; exit 1
    fi
done
cat > "$H_TMP/r.ini" <<EOF
[agent]
node = $NODE
host_ip = 127.0.0.1
debounce = 10ms
stop_timeout = 4s
state_dir = $H_TMP/r.state

[source docker]
socket = $DK_SOCK
allow_loopback = true
ping_interval = 1s
ping_timeout = 1s
request_timeout = 3s
retry_max = 1s

[store etcd]
endpoints = $EP
ttl = ${TTL}s
backoff_initial = 100ms
backoff_max = 1s
EOF
regent_launch r
check "the 3 containers are registered" wait_for --timeout 30 nkeys_is 3

# ---- 1. Docker stops first (what the unit ordering makes systemd do at shutdown) ----------
t0=$(now)
dockerd_stop d1
dead() { ! daemon_alive "$1"; }
check "dockerd stopped" dead dockerd-d1
if wait_for --timeout 30 nkeys_is 0; then
    took=$(elapsed "$t0")
    check "1: every instance deregistered ${took} s after dockerd's SIGTERM, well before the TTL (${TTL} s)" lt "$took" 30
else
    check "1: every instance deregistered after dockerd's SIGTERM" false
fi
check "1: regent still runs" daemon_alive r
check "1: the keys were deleted, not expired or revoked (the lease is alive)" lease_alive
check "1: regent logged each deletion" test "$(grep -c 'deleted /backends/' "$H_TMP/r.log")" -ge 3
# per container: its die event (docker events) -> its key deleted (regent's log)
t0ns=$("$PY" -c "import sys; print(int(float(sys.argv[1]) * 1e9))" "$t0")
for i in 1 2 3; do
    id=${ID[i]:0:12}
    if ev=$(event_ns '^die$' "$id" "$t0ns") &&
        del=$(dtool logtime "$H_TMP/r.log" "deleted /backends/.*/$id/" "$t0ns"); then
        ms=$(( (del - ev) / 1000000 )); [[ $ms -lt 0 ]] && ms=0
        check "1: w$i's key deleted ${ms} ms after it died (bound 5 s)" test "$ms" -lt 5000
    else
        check "1: w$i's die event and key deletion both seen" false
    fi
done

# ---- 2. Docker comes back: the source reconnects, the restarted containers register --------
t0=$(now)
if ! dockerd_restart d1; then
    check "2: dockerd restarted" false
    dl_finish; exit 1
fi
if wait_for --timeout 60 nkeys_is 3; then
    echo "measured: dockerd restart -> 3 restarted containers registered in $(elapsed "$t0") s"
    check "2: the restarted containers are registered again (regent kept running)" true
else
    check "2: the restarted containers are registered again (regent kept running)" false
fi
check "2: regent still the same process" daemon_alive r

# ---- 3. boot: regent first, then Docker ------------------------------------------------------
dockerd_stop d1
check "3: deregistered again" wait_for --timeout 30 nkeys_is 0
daemon_stop r
check "3: regent stopped" dead r
cp "$H_TMP/r.ini" "$H_TMP/r2.ini"
regent_launch r2
sleep 3
check "3: regent runs while Docker is down" daemon_alive r2
check "3: nothing registered while Docker is down" nkeys_is 0
if ! dockerd_restart d1; then
    check "3: dockerd started" false
    dl_finish; exit 1
fi
check "3: Docker started after regent: the containers are registered" wait_for --timeout 60 nkeys_is 3

# ---- 4. dockerd killed: containers that keep running stay, one whose process ends goes -------
key_of() { h_etcdctl "$EP" get --prefix /backends/ --keys-only | grep -c "/${ID[$1]:0:12}/"; }
has_key() { [[ "$(key_of "$1")" -ge 1 ]]; }
no_key() { [[ "$(key_of "$1")" == 0 ]]; }
check "4: w2 registered before the fault" wait_for --timeout 30 has_key 2
pid2=$(dk inspect -f '{{.State.Pid}}' "${ID[2]}")
check "4: w2's process $pid2 is in w2's cgroup" grep -q "${ID[2]}" "/proc/$pid2/cgroup"
start2=$(h__starttime "$pid2")
# The loss is noticed as the stream's end or, when a /_ping was in flight at the kill and its
# failure is handled first (it cancels the stream), by the /_ping: either is right.
LOST_RE='event stream lost|did not answer /_ping'
nlost=$(grep -cE "$LOST_RE" "$(regent_log r2)")
dockerd_kill d1
check "4: dockerd killed" dead dockerd-d1
check "4: regent saw the stream end" wait_for --timeout 15 \
    bash -c "[[ \$(grep -cE '$LOST_RE' '$(regent_log r2)') -gt $nlost ]]"
sleep 2
check "4: w2's process still runs without dockerd" h__proc_alive "$pid2" "$start2"
check "4: the 3 keys are kept while dockerd is down (the containers still run)" nkeys_is 3
t0=$(now) t0ns=$(now_ns)
if h__proc_alive "$pid2" "$start2" && grep -q "${ID[2]}" "/proc/$pid2/cgroup"; then
    kill -KILL "$pid2"
fi
if wait_for --timeout 15 no_key 2; then
    took=$(elapsed "$t0")
    echo "measured: w2's process killed -> its key deleted in $took s (dockerd down)"
    check "4: w2's key deleted ${took} s after its process was killed (bound 10 s)" lt "$took" 10
else
    check "4: w2's key deleted while dockerd is down" false
fi
echo "regent: $(grep -o 'watching the processes of .*' "$(regent_log r2)" | tail -n 1)"
if ms=$(latency_ms r2 "is gone: its process $pid2 exited" "$t0ns"); then
    echo "measured: w2's process killed -> regent's deregistration logged in $ms ms"
fi
check "4: regent logged why" grep -q "its process $pid2 exited while the docker daemon was unreachable" \
    "$(regent_log r2)"
check "4: w1's key kept" has_key 1
check "4: w3's key kept" has_key 3
nsync=$(grep -c 'resynced with docker' "$(regent_log r2)")
if ! dockerd_restart d1; then
    check "4: dockerd restarted" false
    dl_finish; exit 1
fi
check "4: dockerd back: the listing takes over (resynced)" wait_for --timeout 60 \
    bash -c "[[ \$(grep -c 'resynced with docker' '$(regent_log r2)') -gt $nsync ]]"
check "4: dockerd back: w2 (--restart always) registered again, 3 keys" wait_for --timeout 60 nkeys_is 3
dl_finish
