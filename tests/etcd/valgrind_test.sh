#!/usr/bin/env bash
# tests/etcd/valgrind_test.sh: one short run of an agent (source + etcd + sink) under
# valgrind --leak-check=full: register, discover, watch events, a malformed key, a lost lease,
# a lost watch stream, then SIGTERM (revoke). Valgrind must report no error and no leak.
# Skipped (exit 77, ctest's SKIP_RETURN_CODE) when valgrind is missing; not registered in
# sanitizer builds (valgrind and ASan do not mix), and skipped there too if run by hand.
source "$(dirname "$0")/lib.sh"
if [[ "${REGENT_SANITIZE:-0}" == 1 ]] || ! command -v valgrind >/dev/null; then
    echo "SKIPPED: sanitizer build or no valgrind (apt-get install valgrind)"; echo "0 passed, 0 failed"; exit 77
fi
harness_init
EP=$(etcd_start v1) || exit 1
printf '%s\n' "a/c1/80 web 127.0.0.2 8080 t1" "a/c2/53 dns 127.0.0.3 53 udp" > "$H_TMP/a.inst"
# ttl 30 s: nothing below can be satisfied by a lease expiring on its own.
AGENT_TTL=30 agent_config a "$EP"
VG="$H_TMP/valgrind.txt"
# Not through daemon_start: the test needs valgrind's exit status.
valgrind --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite,indirect,possible \
    --track-fds=no --log-file="$VG" "$REGENT_BIN" -c "$H_TMP/a.ini" -p "$REGENT_PLUGIN_DIR" \
    -L debug > "$H_TMP/a.log" 2>&1 &
vpid=$!
check "under valgrind: registered" wait_for --timeout 60 nkeys_is "$EP" 2
h_etcdctl "$EP" put /backends/web/x/c9/80 '{"address":"127.0.0.9","port":8000,"node":"x","meta":{"k":"v"}}' >/dev/null
h_etcdctl "$EP" put /backends/seed/abc 127.0.0.4:81 >/dev/null
h_etcdctl "$EP" put /backends/seed/port 8000 >/dev/null
h_etcdctl "$EP" put /backends/seed/bad garbage >/dev/null
check "under valgrind: a seed key (address:port) discovered" \
    wait_for --timeout 30 snap_has a '    abc 127.0.0.4:81/tcp node='
check "under valgrind: discovered" snap_has a '    x/c9/80 127.0.0.9:8000/tcp node=x'
lease=$(h_etcdctl "$EP" get --prefix /backends/web/a -w json | ehelp leases | awk '{print $2}' | head -1)
check "under valgrind: the agent's lease found ($lease)" test -n "$lease"
h_etcdctl "$EP" lease revoke "$lease" >/dev/null
check "under valgrind: a new lease granted after the revoke" \
    wait_for --timeout 30 eval '[[ $(grep -c "granted by" "$H_TMP/a.log") -ge 2 ]]'
check "under valgrind: the keys are back" wait_for --timeout 30 eval \
    'key_exists "$EP" /backends/web/a/c1/80 && key_exists "$EP" /backends/dns/a/c2/53'
lease2=$(h_etcdctl "$EP" get --prefix /backends/web/a -w json | ehelp leases | awk '{print $2}' | head -1)
check "under valgrind: lease replaced (the keys are on a new lease: $lease -> $lease2)" \
    test -n "$lease2" -a "$lease2" != "$lease"
h_etcdctl "$EP" del /backends/web/x/c9/80 >/dev/null
check "under valgrind: a delete event applied" wait_for --timeout 30 snap_lacks a '    x/c9/80 .*'
sed -i '/c2/d' "$H_TMP/a.inst"
check "under valgrind: a vanished instance deregistered" \
    wait_for --timeout 30 key_absent "$EP" /backends/dns/a/c2/53
check "under valgrind: the other registration stays" key_exists "$EP" /backends/web/a/c1/80
kill -TERM "$vpid"
wait "$vpid"
rc=$?
check_eq "valgrind exit status (errors or leaks -> 1)" 0 "$rc"
check "SIGTERM under valgrind revoked the lease (logged)" log_has a "lease [0-9a-f]+ revoked at "
check "SIGTERM under valgrind revoked the lease (keys gone, ttl 30 s not elapsed)" nkeys_is "$EP" 0 /backends/web/a
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost' "$VG" | sed 's/^==[0-9]*== /valgrind: /'
if [[ "$rc" != 0 ]]; then tail -n 60 "$VG" >&2; fi
harness_summary
