#!/usr/bin/env bash
# tests/etcd/source_afresh_test.sh: a SIGHUP that changes the section of a source whose start
# failed (here: testsource's started() reports an error, confirm_error) starts the section
# afresh; the new instance inherits the local instances the failed one reported, so the
# registry keeps them until the new one has had its chance to report them (core/agent.c,
# source_heir).  Under `etcdctl watch`:
#  1. agent b: the failed source reported c1 c2 c3; the new one lists 1 s after its start
#     (list_after: a source that lists asynchronously, like docker) c1 c2 c4, then is ready:
#     c1 and c2 see no event at all (never deleted, not even rewritten), c3 is deleted, c4
#     put; nothing else happens when the bound (twice start_timeout) has passed.  (A new
#     instance that lists inside start() would hide a drop: the etcd store coalesces a
#     deregister and a register of the same instance in one loop turn.)
#  2. agent d: the failed source reported d1 d2; the new one cannot read its file (it never
#     reports) and fails too: d1 d2 stay past start_timeout and go at the bound, twice
#     start_timeout after the SIGHUP.  Then a new instance reports them again (and fails);
#     the next one inherits them, and a SIGHUP that REMOVES the section deletes them at once,
#     as for any removed source.
#  3. agent e: a running source (not failed) replaced by a new instance proven at once
#     (start() returns 0) that lists 1 s later, as docker does: the instances it lists again
#     see no event (before, the take-over dropped them all until that listing).
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start s1) || exit 1
START_TIMEOUT=2 # s; the bound on inherited instances is twice that

# conf NAME FILE [source lines...]: $H_TMP/NAME.ini with [source testsource] reading FILE
# (FILE "-": no source section), store etcd (the lease revoked at SIGTERM), no sink.
conf() {
    local name=$1 file=$2 line; shift 2
    {
        printf '[agent]\nnode = %s\ndebounce = 20ms\nstop_timeout = 4s\nstart_timeout = %ss\n' \
            "$name" "$START_TIMEOUT"
        printf 'state_dir = %s\n\n' "$H_TMP/$name.state"
        if [[ "$file" != - ]]; then
            printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$file"
            for line in "$@"; do printf '%s\n' "$line"; done
            printf '\n'
        fi
        printf '[store etcd]\nendpoints = %s\nttl = 10\nbackoff_initial = 100ms\n' "$EP"
        printf 'backoff_max = 1s\nderegister_on_stop = true\n'
    } > "$H_TMP/$name.ini"
}
# events FROM TYPE ID: how many TYPE (PUT/DELETE) events for the key of instance ID the watch
# printed after its line FROM (etcdctl watch prints EVENT, KEY, VALUE lines).
events() {
    tail -n +"$(($1 + 1))" "$H_TMP/w.log" |
        awk -v t="$2" -v k="/backends/web/$3" 'p == t && $0 == k { n++ } { p = $0 } END { print n + 0 }'
}
wlines() { wc -l < "$H_TMP/w.log"; }
has_key() { keys "$EP" | grep -qx "/backends/web/$1"; }
lacks_key() { ! has_key "$1"; }
# sleep_until T0 S: sleep until S seconds after T0 (now's format)
sleep_until() { local d; d=$("$PY" -c "import sys,time; print(max(0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))" "$1" "$2"); sleep "$d"; }

daemon_start w etcdctl --endpoints "$EP" watch --prefix /backends/
sleep 0.5

# ---- 1. the new instance is ready: what it reports again never leaves the registry ----------
printf 'b/c1/80 web 127.0.0.2 8080\nb/c2/80 web 127.0.0.3 8080\nb/c3/80 web 127.0.0.4 8080\n' > "$H_TMP/b1.inst"
printf 'b/c1/80 web 127.0.0.2 8080\nb/c2/80 web 127.0.0.3 8080\nb/c4/80 web 127.0.0.5 8080\n' > "$H_TMP/b2.inst"
conf b "$H_TMP/b1.inst" "confirm_after = 300ms" "confirm_error = still listing (test 1)"
agent_start b
check "1: 3 keys registered" wait_for --timeout 15 nkeys_is "$EP" 3
check "1: the source's start failed" \
    wait_for --timeout 10 log_has b "source testsource: failed to start: still listing \\(test 1\\)"
n1=$(wlines)
conf b "$H_TMP/b2.inst" "list_after = 1s" "confirm_after = 1500ms"
t1=$(now)
daemon_kill b HUP
check "1: started afresh, its instances kept for the new instance" \
    wait_for --timeout 10 log_has b "source testsource: 3 local instances kept up for the new instance to report again"
check "1: the new instance is ready" wait_for --timeout 10 log_has b "source testsource: ready"
check "1: c4 registered" wait_for --timeout 10 has_key b/c4/80
check "1: c3 deregistered" wait_for --timeout 10 lacks_key b/c3/80
sleep_until "$t1" $((2 * START_TIMEOUT + 1)) # past the bound: nothing is dropped late either
for id in c1 c2; do
    check_eq "1: $id: no DELETE event (never deregistered)" 0 "$(events "$n1" DELETE b/$id/80)"
    check_eq "1: $id: no PUT event (not even rewritten)" 0 "$(events "$n1" PUT b/$id/80)"
done
check_eq "1: c3 (not reported again): one DELETE" 1 "$(events "$n1" DELETE b/c3/80)"
check_eq "1: c4 (new): one PUT" 1 "$(events "$n1" PUT b/c4/80)"
check "1: 3 keys, after the bound" nkeys_is "$EP" 3
check "1: nothing dropped at the bound" bash -c "! grep -q 'did not report again' '$H_TMP/b.log'"
# the new instance owns them: a line gone from its file takes that instance down
sed -i '/c2/d' "$H_TMP/b2.inst"
check "1: the new instance's own resync deregisters c2" wait_for --timeout 10 lacks_key b/c2/80
finish_agents b
check "1: the lease is revoked at the stop (deregister_on_stop)" wait_for --timeout 10 nkeys_is "$EP" 0

# ---- 2. the new instance never reports: kept until the bound, then dropped; removal ----------
printf 'd/d1/80 web 127.0.0.6 8080\nd/d2/80 web 127.0.0.7 8080\n' > "$H_TMP/d.inst"
conf d "$H_TMP/d.inst" "confirm_after = 300ms" "confirm_error = still listing (test 2)"
agent_start d
check "2: 2 keys registered" wait_for --timeout 15 nkeys_is "$EP" 2
check "2: the source's start failed" \
    wait_for --timeout 10 log_has d "failed to start: still listing \\(test 2\\)"
n2=$(wlines)
conf d "$H_TMP/missing.inst" "confirm_after = 300ms" "confirm_error = cannot list (test 2)"
t2=$(now)
daemon_kill d HUP
check "2: its instances kept for the new instance" \
    wait_for --timeout 10 log_has d "2 local instances kept up for the new instance to report again"
check "2: the new instance fails too" \
    wait_for --timeout 10 log_has d "failed to start: cannot list \\(test 2\\)"
sleep_until "$t2" $((START_TIMEOUT + 1)) # past start_timeout, before the bound
check_eq "2: no DELETE event before the bound" 0 "$(tail -n +"$((n2 + 1))" "$H_TMP/w.log" | grep -c '^DELETE$')"
check "2: 2 keys before the bound" nkeys_is "$EP" 2
check "2: dropped at the bound" wait_for --timeout 10 log_has d \
    "2 local instances the previous instance reported and this one did not report again within 4.0 s \\(twice start_timeout\\): down"
check "2: both deregistered" wait_for --timeout 10 nkeys_is "$EP" 0
check "2: not before the bound (the keys went at least $((2 * START_TIMEOUT)) s after the SIGHUP)" \
    lt "$((2 * START_TIMEOUT)).0" "$(elapsed "$t2")"
conf d "$H_TMP/d.inst" "confirm_after = 300ms" "confirm_error = still listing (test 2b)"
daemon_kill d HUP
check "2: reported again by the next instance" wait_for --timeout 10 nkeys_is "$EP" 2
check "2: which fails" wait_for --timeout 10 log_has d "failed to start: still listing \\(test 2b\\)"
conf d "$H_TMP/missing.inst" "confirm_after = 300ms" "confirm_error = cannot list (test 2c)"
daemon_kill d HUP
check "2: handed on again" wait_for --timeout 10 bash -c \
    "[[ \$(grep -c '2 local instances kept up' '$H_TMP/d.log') == 2 ]]"
n3=$(wlines)
conf d -
t3=$(now)
daemon_kill d HUP
check "2: a removed section: stopped as removed" wait_for --timeout 10 log_has d "stopping \\(section removed\\)"
check "2: a removed section deregisters its inherited instances" wait_for --timeout 10 nkeys_is "$EP" 0
check "2: at once, not at the bound" lt "$(elapsed "$t3")" "$((2 * START_TIMEOUT)).0"
check_eq "2: 2 DELETE events for the removal" 2 "$(tail -n +"$((n3 + 1))" "$H_TMP/w.log" | grep -c '^DELETE$')"
finish_agents d

# ---- 3. a candidate proven at once, before its first listing --------------------------------
printf 'e/e1/80 web 127.0.0.8 8080\ne/e2/80 web 127.0.0.9 8080\ne/e3/80 web 127.0.0.10 8080\n' > "$H_TMP/e1.inst"
printf 'e/e1/80 web 127.0.0.8 8080\ne/e2/80 web 127.0.0.9 8080\ne/e5/80 web 127.0.0.11 8080\n' > "$H_TMP/e2.inst"
conf e "$H_TMP/e1.inst"
agent_start e
check "3: 3 keys registered" wait_for --timeout 15 nkeys_is "$EP" 3
n4=$(wlines)
conf e "$H_TMP/e2.inst" "list_after = 1s"
daemon_kill e HUP
check "3: the new instance took over at once" \
    wait_for --timeout 10 log_has e "the new configuration took over; stopping the previous instance"
check "3: its instances kept for the new instance" \
    wait_for --timeout 10 log_has e "3 local instances kept up for the new instance to report again"
check "3: e5 registered (the new instance listed)" wait_for --timeout 10 has_key e/e5/80
check "3: e3 deregistered" wait_for --timeout 10 lacks_key e/e3/80
for id in e1 e2; do
    check_eq "3: $id: no DELETE event (never deregistered)" 0 "$(events "$n4" DELETE e/$id/80)"
    check_eq "3: $id: no PUT event (not even rewritten)" 0 "$(events "$n4" PUT e/$id/80)"
done
check_eq "3: e3 (not listed again): one DELETE" 1 "$(events "$n4" DELETE e/e3/80)"

daemon_stop w
finish_agents e
harness_summary
