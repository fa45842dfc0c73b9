#!/usr/bin/env bash
# tests/etcd/idle_test.sh: an idle agent with its watch open wakes only for its member check
# (the check going out and its answer, once per check_interval), not every 250 ms; and the
# check still goes every check_interval (counted by etcd: its Status calls).  Wakeups are the
# main thread's voluntary context switches (loop_wakeups): a count, whatever the load.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start i1) || exit 1
h_etcdctl "$EP" put /backends/web/x/c1/80 '{"address":"127.0.0.5","port":8000,"node":"x"}' >/dev/null
CHECK_S=2
WINDOW_S=8
agent_config i "$EP" "check_interval = ${CHECK_S}s"
agent_start i
check "waited for: the instance in the first snapshot" \
    wait_for --timeout 10 snap_has i '    x/c1/80 127.0.0.5:8000/tcp node=x'
# status_calls: the Status calls etcd answered (the member check is one)
status_calls() {
    curl -s --noproxy '*' -m 5 "$EP/metrics" |
        awk '/^grpc_server_handled_total/ && /grpc_code="OK"/ && /grpc_method="Status"/ { n += $2 } END { print n + 0 }'
}
sleep 1
c0=$(status_calls)
w=$(loop_wakeups "$(daemon_pid i)" "$WINDOW_S")
c1=$(status_calls)
checks=$((c1 - c0))
# Expected: 2 wakeups a check_interval (1/s); every 250 ms it was 4.5/s.
check "an idle watching agent wakes twice per check_interval, not every 250 ms ($w/s)" lt "$w" 1.6
check "the member check still goes every ${CHECK_S} s ($checks in ${WINDOW_S} s)" \
    eval "(( checks >= WINDOW_S / CHECK_S - 1 && checks <= WINDOW_S / CHECK_S + 1 ))"
finish_agents i
harness_summary
