#!/usr/bin/env bash
# tests/etcd/discover_test.sh: the catalog follows etcd (puts and deletes done with etcdctl),
# the seed's ip:port values and <prefix>/<svc>/port, malformed keys skipped with a warning,
# a compaction past the watch's revision survived, and an agent's own key deleted by someone
# else written again.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start d1) || exit 1
ETCD_PORT=${EP##*:}

# Agent b watches through a proxy the test can cut (to lose the stream while etcd runs on).
PP=$(free_port)
daemon_start proxy "$PY" "$E_DIR/ehelp.py" proxy "$PP" "$ETCD_PORT"
check "waited for: grep -q ready H_TMP/proxy.log" wait_for --timeout 10 grep -q ready "$H_TMP/proxy.log"
# ... with a stats sink when it is built: regent_store_compactions_total is asserted below
SP=""
if [[ -f "$REGENT_PLUGIN_DIR/stats.so" ]]; then
    SP=$(free_port)
    agent_config b "http://127.0.0.1:$PP" "" "[sink stats]" "listen = 127.0.0.1:$SP"
else
    agent_config b "http://127.0.0.1:$PP"
fi
agent_start b
wait_for --timeout 10 grep -q '^end$' "$H_TMP/b.sink"
check "first snapshot (empty registry) reaches the sink" grep -q '^end$' "$H_TMP/b.sink"

put() { h_etcdctl "$EP" put "$1" "$2" >/dev/null; }
del() { h_etcdctl "$EP" del "$1" >/dev/null; }

t0=$(now)
put /backends/web/x/c1/80 '{"address":"127.0.0.5","port":8000,"proto":"tcp","node":"x","tags":["a"]}'
check "waited for: snap_has b ' x/c1/80 127.0.0.5:8000/tcp node=x'" wait_for --timeout 5 snap_has b '    x/c1/80 127.0.0.5:8000/tcp node=x'
check "a JSON value put with etcdctl reaches the catalog ($(elapsed "$t0") s)" \
    snap_has b '    x/c1/80 127.0.0.5:8000/tcp node=x'
put /backends/web/x/c1/80 '{"address":"127.0.0.5","port":8002,"node":"x"}'
wait_for --timeout 5 snap_has b '    x/c1/80 127.0.0.5:8002/tcp node=x'
check "a changed value updates the instance" snap_has b '    x/c1/80 127.0.0.5:8002/tcp node=x'
put /backends/web/y/c2/80 '{"address":"127.0.0.6","port":8000,"proto":"udp","node":"y"}'
check "waited for: snap_has b ' web (2)'" wait_for --timeout 5 snap_has b '  web \(2\)'
check "a second instance joins the service" snap_has b '    y/c2/80 127.0.0.6:8000/udp node=y'

# The seed's layout: <prefix>/<svc>/<container> = ip:port, <prefix>/<svc>/port = listen port.
put /backends/whoami/0123456789ab 127.0.0.7:32768
put /backends/whoami/port 8000
put /backends/whoami/fedcba987654 '[::1]:32769'
check "waited for: snap_has b ' whoami (2)'" wait_for --timeout 5 snap_has b '  whoami \(2\)'
check "seed ip:port values reach the catalog" snap_has b '    0123456789ab 127.0.0.7:32768/tcp node='
check "seed [v6]:port values too" snap_has b '    fedcba987654 ::1:32769/tcp node='
check "<prefix>/<svc>/port is not an instance" snap_lacks b '    port .*'
# (reported whole when the port key came, then the next instance alone, ABI 1.3)
check "the seed's listen port is attached to the service's instances" \
    log_has b 'service whoami: (1 instance|2 instances), listen port 8000'
check "and to an instance that came after it" \
    log_has b 'service whoami: (1 instance set, 0 removed|2 instances), listen port 8000'

# Malformed keys and values: one warning naming the key, nothing else changes.
applies=$(grep -c '^apply' "$H_TMP/b.sink")
put /backends/web/z/c3/80 'not-an-address'
put '/backends/bad!name/x' 127.0.0.8:80
put /backends/noinstance x
put /backends/web/z/c4/80 '{"address":"127.0.0.9","port":70000}'
check "waited for: log_has b 'skipped key /backends/web/z/c4/80'" wait_for --timeout 5 log_has b 'skipped key /backends/web/z/c4/80'
sleep 0.3
check_eq "malformed keys changed nothing downstream (no snapshot sent)" \
    "$applies" "$(grep -c '^apply' "$H_TMP/b.sink")"
put /backends/whoami/port eighty
check "waited for: log_has b 'skipped key /backends/whoami/port'" wait_for --timeout 5 log_has b 'skipped key /backends/whoami/port'
check "warning names a malformed value's key" log_has b 'warn: store etcd: skipped key /backends/web/z/c3/80 .*neither'
check "warning names a key with an invalid service" log_has b 'skipped key /backends/bad!name/x .*invalid service name'
check "warning names a key without an id" log_has b 'skipped key /backends/noinstance .*not of the form'
check "warning for an out-of-range port" log_has b 'skipped key /backends/web/z/c4/80'
check "warning for a bad listen port" log_has b 'skipped key /backends/whoami/port .*listen port'
check_eq "each bad key warned once" 1 "$(grep -c 'skipped key /backends/web/z/c3/80' "$H_TMP/b.log")"
sleep 0.3
check "the catalog keeps its valid instances" snap_has b '  web \(2\)'
check "agent alive after malformed input" daemon_alive b
whole=$(grep -c 'service whoami: 2 instances, listen port 8000' "$H_TMP/b.log")
put /backends/whoami/port 8000
check "the listen port restored is attached to the whole service again" \
    wait_for --timeout 5 eval '[[ $(grep -c "service whoami: 2 instances, listen port 8000" "$H_TMP/b.log") -gt $whole ]]'

del /backends/web/y/c2/80
check "waited for: snap_has b ' web (1)'" wait_for --timeout 5 snap_has b '  web \(1\)'
check "a delete done with etcdctl leaves the catalog" snap_lacks b '    y/c2/80 .*'
del /backends/web/x/c1/80
wait_for --timeout 5 snap_lacks b '  web .*'
check "deleting the last instance removes the service" snap_lacks b '  web .*'

# A valid instance whose value turns bad leaves the catalog (its id reported removed), and
# comes back when valid again. Then a burst on one connection (read by the agent at once, so
# its keys are reported together): a key put, deleted and put again ends put with its last
# value; one put then deleted ends absent; a reported key deleted next to a new one.
put /backends/turn/n1/80 127.0.0.12:80
check "waited for: snap_has b ' n1/80 127.0.0.12:80'" \
    wait_for --timeout 5 snap_has b '    n1/80 127\.0\.0\.12:80/tcp node=.*'
put /backends/turn/n1/80 'not-an-address'
check "a value turned bad takes its instance out of the catalog" \
    wait_for --timeout 5 snap_lacks b '  turn .*'
put /backends/turn/n1/80 127.0.0.13:80
check "valid again, it is back" wait_for --timeout 5 snap_has b '    n1/80 127\.0\.0\.13:80/tcp node=.*'
check "the burst is written" "$PY" "$E_DIR/ehelp.py" seq "$EP" \
    put /backends/burst/a/80 127.0.0.14:80 del /backends/burst/a/80 \
    put /backends/burst/a/80 127.0.0.15:80 put /backends/burst/b/80 127.0.0.16:80 \
    del /backends/burst/b/80 del /backends/turn/n1/80 put /backends/turn/n2/80 127.0.0.17:80
check "waited for: snap_has b ' n2/80 127.0.0.17:80'" \
    wait_for --timeout 5 snap_has b '    n2/80 127\.0\.0\.17:80/tcp node=.*'
check "put, deleted, put again: the last value" snap_has b '    a/80 127\.0\.0\.15:80/tcp node=.*'
check "put, then deleted: absent" snap_lacks b '    b/80 .*'
check "a reported key deleted in the burst is gone" snap_lacks b '    n1/80 .*'
check "one instance left in each service" eval "snap_has b '  burst \(1\)' && snap_has b '  turn \(1\)'"
del /backends/burst/a/80
del /backends/turn/n2/80
check "their deletes remove both services" \
    wait_for --timeout 5 eval "snap_lacks b '  burst .*' && snap_lacks b '  turn .*'"

# A key that needs an escape (a backslash: held as \x5c) takes the view's copying path; an id
# never holds one, so it is warned, printable; a sane key of the same service is split in place.
put '/backends/esc/n\1/80' 127.0.0.11:80
check "a key with a backslash is warned, escaped" \
    wait_for --timeout 5 log_has b 'skipped key /backends/esc/n\\x5c1/80 .*neither'
del '/backends/esc/n\1/80'
put /backends/esc/n1/80 127.0.0.11:80
check "a sane key next to it: the instance id is its tail" \
    wait_for --timeout 5 snap_has b '    n1/80 127\.0\.0\.11:80/tcp node=.*'
del /backends/esc/n1/80
check "its delete removes the service" wait_for --timeout 5 snap_lacks b '  esc .*'

# Compaction past the watch's revision: cut b's stream, change things, compact, restore.
kill -USR1 "$(daemon_pid proxy)"
wait_for --timeout 10 log_has b 'watch of /backends/ lost'
check "the agent notices the lost stream" log_has b 'watch of /backends/ lost'
put /backends/web/w/c5/80 '{"address":"127.0.0.10","port":8000,"node":"w"}'
del /backends/whoami/0123456789ab
rev=$(h_etcdctl "$EP" get /backends/ -w json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
h_etcdctl "$EP" compact "$rev" >/dev/null
sleep 1
check "while the registry is unreachable the catalog keeps its last state" \
    snap_has b '    0123456789ab 127.0.0.7:32768/tcp node='
kill -USR2 "$(daemon_pid proxy)"
t0=$(now)
check "waited for: snap_has b ' w/c5/80 127.0.0.10:8000/tcp node=w'" wait_for --timeout 15 snap_has b '    w/c5/80 127.0.0.10:8000/tcp node=w'
check "after the compaction the catalog is complete again ($(elapsed "$t0") s)" \
    snap_has b '    w/c5/80 127.0.0.10:8000/tcp node=w'
check "and the deletion made meanwhile is seen" snap_lacks b '    0123456789ab .*'
check "the watch was canceled by the compaction and the prefix read again" \
    log_has b 'canceled: compacted up to'
check "watching again afterwards" bash -c "grep -A8 'canceled: compacted' '$H_TMP/b.log' | grep -q 'watching /backends/'"
if [[ -n "$SP" ]]; then
    compactions() { http_get "http://127.0.0.1:$SP/metrics" | awk '$1 ~ /^regent_store_compactions_total\{.*plugin="etcd"/ { print $2 }'; }
    check "metrics: regent_store_compactions_total counts the watch canceled by the compaction ($(compactions))" \
        eval '[[ "$(compactions)" =~ ^[1-9][0-9]*(\.0+)?$ ]]'
else
    harness_skip "regent_store_compactions_total: the stats sink is not built here"
fi
put /backends/web/v/c6/80 '{"address":"127.0.0.11","port":8000,"node":"v"}'
wait_for --timeout 5 snap_has b '    v/c6/80 127.0.0.11:8000/tcp node=v'
check "events flow after the re-read" snap_has b '    v/c6/80 127.0.0.11:8000/tcp node=v'

# An agent with a source and a sink: someone deletes its key -> written again.
echo "c/c1/80 own 127.0.0.12 8080" > "$H_TMP/c.inst"
agent_config c "$EP"
agent_start c
check "waited for: key_exists EP /backends/own/c/c1/80" wait_for --timeout 10 key_exists "$EP" /backends/own/c/c1/80
wait_for --timeout 10 snap_has c '    c/c1/80 127.0.0.12:8080/tcp node=c'
check "an agent sees its own instance in its catalog" snap_has c '    c/c1/80 127.0.0.12:8080/tcp node=c'
check "and the others'" snap_has c '    w/c5/80 127.0.0.10:8000/tcp node=w'
del /backends/own/c/c1/80
wait_for --timeout 5 key_exists "$EP" /backends/own/c/c1/80
check "its key deleted by someone else is written again" key_exists "$EP" /backends/own/c/c1/80
wait_for --timeout 5 snap_has b '    c/c1/80 127.0.0.12:8080/tcp node=c'
check "and the other agent sees it" snap_has b '    c/c1/80 127.0.0.12:8080/tcp node=c'
daemon_stop c
wait_for --timeout 5 snap_lacks b '    c/c1/80 .*'
check "stopped agent's instance leaves the other's catalog" snap_lacks b '    c/c1/80 .*'
check "no agent crashed" daemon_alive b
# A read larger than one page (1000 keys): 2500 instances, all of them in the catalog.
ehelp bulk-put "$EP" bulk 2500
agent_config d "$EP"
agent_start d
wait_for --timeout 20 snap_has d '  bulk \(2500\)'
check "a 2500-key registry is read completely (paged range)" snap_has d '  bulk \(2500\)'
check "read in pages at one revision" log_has d 'read /backends/ at revision [0-9]+ .*: [0-9]+ services, 25[0-9][0-9] keys'
check "the watching agent followed the bulk writes" snap_has b '  bulk \(2500\)'
finish_agents b c d
harness_summary
