#!/usr/bin/env bash
# tests/etcd/bigservice_test.sh: bounded work per registry input (issue 14 point 2), scaled down
# from `bench/run hostile` so it runs in seconds.  A running agent (store etcd + sink stats)
# whose /healthz is sampled every 50 ms while 10,000 instances of one service are written (txns
# of 500: 20 watch responses, each of which used to re-report the whole service) and a value
# with 60,000 meta pairs is put twice: /healthz answers throughout, within a generous bound
# (the paths this guards against stalled for minutes at 100,000); the catalog holds every instance; the big value is skipped with a warning naming its key and
# the limit.  A fresh agent started with all of it in etcd is sent SIGTERM while it reads and
# exits within stop_timeout.  Last, the whole service is deleted in one request and one key put
# again at once: the deletes (one watch response, applied a slice a loop turn) keep their order.
source "$(dirname "$0")/lib.sh"
harness_init
N=10000
EP=$(etcd_start v1 --max-txn-ops 1000) || exit 1
STATS=$(free_port)
AGENT_NO_SINK=1 agent_config a "$EP"
printf '\n[sink stats]\nlisten = 127.0.0.1:%s\n' "$STATS" >> "$H_TMP/a.ini"
# The per-service count below is opt-in (bounded /metrics by default).
sed -i 's/^\[agent\]$/[agent]\nmetrics_per_service = true/' "$H_TMP/a.ini"
agent_start a -L info
check "agent a: /healthz answers" wait_for --timeout 30 http_get "http://127.0.0.1:$STATS/healthz"
daemon_start sampler "$PY" "$E_DIR/ehelp.py" sample "http://127.0.0.1:$STATS/healthz" "$H_TMP/samples"

catalog_has() { # SERVICE N: /metrics says the catalog holds N instances of SERVICE
    http_get "http://127.0.0.1:$STATS/metrics" | grep -qxF "regent_catalog_instances{service=\"$1\"} $2"
}
ehelp bulk-put "$EP" big "$N" 500
check "the catalog holds all $N instances of one service" \
    wait_for --timeout 120 catalog_has big "$N"
ehelp meta-put "$EP" /backends/meta/n/m1 60000
ehelp meta-put "$EP" /backends/meta/n/m1 60000
check "a value with 60,000 meta pairs: skipped twice (once per revision) with a warning naming its key and the limit" \
    wait_for --timeout 30 eval "[[ \$(grep -cE 'skipped key /backends/meta/n/m1 .*over a per-instance limit' '$H_TMP/a.log') -eq 2 ]]"
sleep 1
daemon_stop sampler
read -r MAXMS FAILED NS < <(ehelp stall "$H_TMP/samples")
h_log "/healthz during the writes: $NS samples, max ${MAXMS} ms, $FAILED unanswered"
check "/healthz was sampled throughout ($NS samples)" test "$NS" -ge 20
check "/healthz answered every sample ($FAILED unanswered)" test "$FAILED" -eq 0
check "/healthz answered within 5 s throughout (max ${MAXMS} ms)" test "$MAXMS" -lt 5000

# A fresh agent reading all of it, stopped at the first sign of its read.
STATS_B=$(free_port)
AGENT_NO_SINK=1 agent_config b "$EP"
printf '\n[sink stats]\nlisten = 127.0.0.1:%s\n' "$STATS_B" >> "$H_TMP/b.ini"
agent_start b -L debug
check "agent b starts reading" wait_for --timeout 30 log_has b 'store etcd: (starting|read)'
T0=$(now)
kill -TERM "$(daemon_pid b)"
check "agent b: SIGTERM during its first read honoured within stop_timeout (4 s) + 2 s" \
    wait_for --timeout 6 agent_gone b
h_log "agent b exited $(elapsed "$T0") s after SIGTERM ($(daemon_status b))"
check "agent b: every plugin stopped by itself (none 'did not stop in time')" \
    bash -c "! grep -q 'did not stop in time' '$H_TMP/b.log'"
# The whole service deleted in one request (one watch response of N events, applied a slice a
# loop turn), one of its keys put again right after: events keep their order across the slices
# (that key survives), /healthz answers meanwhile.
daemon_start sampler2 "$PY" "$E_DIR/ehelp.py" sample "http://127.0.0.1:$STATS/healthz" "$H_TMP/samples2"
sleep 0.5
h_etcdctl "$EP" del --prefix /backends/big/ >/dev/null
h_etcdctl "$EP" put /backends/big/bulk/00042 '{"address":"127.1.9.9","port":8000,"node":"bulk"}' >/dev/null
check "a delete of all $N in one request is applied over several loop turns (log)" \
    wait_for --timeout 30 log_has a "watch of /backends/: a response of $N events is applied over several loop turns"
check "then the catalog holds the one key put again after the delete" \
    wait_for --timeout 60 catalog_has big 1
sleep 1
check "and still that one a second later (the delete applied before it, not after)" catalog_has big 1
daemon_stop sampler2
read -r MAXMS FAILED NS < <(ehelp stall "$H_TMP/samples2")
h_log "/healthz during the delete: $NS samples, max ${MAXMS} ms, $FAILED unanswered"
check "/healthz answered every sample during the delete ($FAILED unanswered of $NS)" test "$FAILED" -eq 0
check "/healthz answered within 5 s during the delete (max ${MAXMS} ms)" test "$MAXMS" -lt 5000

finish_agents a b
harness_summary
