#!/usr/bin/env bash
# tests/etcd/bigvalue_test.sh: oversized registry values never stop discovery.  etcd with
# --max-request-bytes raised holds 15 values of 1.4 MB next to a normal instance: with the
# default limits every page of 1000 keys would exceed the 16 MiB body limit, so the range read
# halves its page size until a page fits (the core then refuses each as an instance: a meta
# value that large is invalid, so each is skipped with a warning naming its key).  An agent with max_response_size = 1 MiB cannot fit
# even one of them: each is looked up by name and skipped with a warning naming its key.  An
# agent with max_value_size = 1000000 skips them as too large.  A big value arriving through
# the watch (larger than the line limit) makes that agent read again and skip it.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start v1 --max-request-bytes 4194304) || exit 1
h_etcdctl "$EP" put /backends/web/n/c1/80 '{"address":"127.0.0.2","port":8080,"node":"n"}' >/dev/null
for i in $(seq -w 1 15); do
    ehelp big-put "$EP" "/backends/big/b/c$i/80" 1400000 80 || { check "put big value $i" false; break; }
done
NORMAL='    n/c1/80 127.0.0.2:8080/tcp node=n'

# Three agents read it at once:
#  d: default limits: pages shrink until they fit (the values are read; the core's instance
#     checks refuse a 1.4 MB meta value, so each is skipped as a bad entry);
#  s: answers limited to 1 MiB: no value fits; each is skipped by name;
#  m: max_value_size below their size.
agent_config d "$EP"
agent_config s "$EP" "max_response_size = 1048576"
agent_config m "$EP" "max_value_size = 1000000"
agent_start d
agent_start s
agent_start m
check "default limits: the normal instance is discovered" wait_for --timeout 90 snap_has d "$NORMAL"
check "default limits: the page size was halved" log_has d "asking [0-9]+ keys a page"
check "default limits: each big value read and skipped with a warning naming its key" \
    test "$(grep -cE 'skipped key /backends/big/b/c[0-9]+/80 ' "$H_TMP/d.log")" -eq 15

check "1 MiB answers: the normal instance is discovered" wait_for --timeout 90 snap_has s "$NORMAL"
check "1 MiB answers: each big key skipped with a warning naming it" \
    test "$(grep -cE 'skipped key /backends/big/b/c[0-9]+/80 .*does not fit' "$H_TMP/s.log")" -eq 15
check "1 MiB answers: no big instance in the catalog" bash -c "! ehelp last '$H_TMP/s.sink' | grep -q '^  big'"

check "max_value_size: the normal instance is discovered" wait_for --timeout 90 snap_has m "$NORMAL"
check "max_value_size: each big key skipped (larger than max_value_size)" \
    test "$(grep -cE 'skipped key /backends/big/b/c[0-9]+/80 .*larger than max_value_size' "$H_TMP/m.log")" -eq 15

# Through the watch: a value larger than agent s's line limit, then a normal put.
ehelp big-put "$EP" /backends/big/b/c99/80 1400000 80
h_etcdctl "$EP" put /backends/web/n/c2/80 '{"address":"127.0.0.3","port":8080,"node":"n"}' >/dev/null
check "watch: a later instance still arrives after an oversized event" \
    wait_for --timeout 30 snap_has s '    n/c2/80 127.0.0.3:8080/tcp node=n'
check "watch: the oversized event made it read again" log_has s "watch event .* is larger than 1048576 bytes"
check "the other agents follow too" wait_for --timeout 30 snap_has d '    n/c2/80 127.0.0.3:8080/tcp node=n'
finish_agents d s m
harness_summary
