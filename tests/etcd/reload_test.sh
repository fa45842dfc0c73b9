#!/usr/bin/env bash
# tests/etcd/reload_test.sh: a SIGHUP that replaces [store etcd] is make-before-break and hands
# the lease over through the lease file (no list of live instances in the process).
#  1. a change that keeps ttl and prefix (timeout): the new instance re-attaches to the running
#     one's lease while the old one still runs; the old one then stops without revoking.
#     Under `etcdctl watch` no event at all, the same lease, and a watching client agent
#     applies no catalog change.
#  2. a ttl change: the new instance grants its own lease and writes its keys, and only then
#     is the old lease revoked: the keys move (PUT events) and are never deleted; every
#     snapshot the client applies holds the 3 instances.
#  3. a prefix change: the keys under the new prefix are all written before the first key
#     under the old prefix is deleted.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start s1) || exit 1

cat > "$H_TMP/b.inst" <<'EOT'
b/c1/80 web 127.0.0.2 8080
b/c2/80 web 127.0.0.3 8080
b/c3/53 dns 127.0.0.4 53 udp
EOT
AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP" "reconcile_grace = 1s"
AGENT_TTL=10 agent_config c "$EP"
agent_start b
agent_start c
check "3 keys registered" wait_for --timeout 15 nkeys_is "$EP" 3
check "the client sees the 3 instances" wait_for --timeout 15 snap_has c '    b/c3/53 127.0.0.4:53/udp node=b'
leases() { h_etcdctl "$EP" get --prefix "${1:-/backends/}" -w json | ehelp leases | awk '{print $2}' | sort -u; }
lease0=$(leases)
check_eq "one lease" 1 "$(wc -w <<<"$lease0")"
applies() { grep -c '^apply ' "$H_TMP/c.sink"; }
# every complete snapshot the client applied holds all 3 instances
all_snaps_full() {
    "$PY" - "$H_TMP/c.sink" <<'EOT'
import sys
want = ("b/c1/80 ", "b/c2/80 ", "b/c3/53 ")
block, bad, n = None, 0, 0
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("apply "):
        block = []
    elif line == "end" and block is not None:
        n += 1
        if not all(any(l.startswith(w) for l in block) for w in want):
            bad += 1
        block = None
    elif block is not None:
        block.append(line)
print("%d snapshots, %d without all 3 instances" % (n, bad), file=sys.stderr)
sys.exit(1 if bad else 0)
EOT
}
daemon_start w etcdctl --endpoints "$EP" watch --prefix /
sleep 0.5
a0=$(applies)

# ---- 1. a change that keeps the lease ------------------------------------------------------
AGENT_TTL=10 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP" "reconcile_grace = 1s" "timeout = 2s"
daemon_kill b HUP
check "1: the old instance hands its lease over without revoking" \
    wait_for --timeout 20 log_has b "lease $lease0 and its 3 keys are the new instance's now"
check "1: the new instance re-attached to the running one's lease" \
    log_has b "re-attached to lease $lease0"
sleep 1.5 # past reconcile_grace: nothing deleted later either
check_eq "1: no event at all under etcdctl watch" 0 "$(grep -cE '^(PUT|DELETE)$' "$H_TMP/w.log")"
check_eq "1: the same lease" "$lease0" "$(leases)"
check "1: 3 keys" nkeys_is "$EP" 3
check "1: the lease file names it" grep -q "^lease=$lease0\$" "$H_TMP/b.state/etcd.lease"
check_eq "1: the client applied no catalog change" "$a0" "$(applies)"
check "1: nothing revoked" bash -c "! grep -q 'revoked at' '$H_TMP/b.log'"

# ---- 2. a ttl change: a new lease, the old revoked after ----------------------------------
AGENT_TTL=11 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP" "reconcile_grace = 1s" "timeout = 2s"
daemon_kill b HUP
check "2: the old lease is revoked once the new instance took over" \
    wait_for --timeout 20 log_has b "lease $lease0 revoked at"
lease1=$(leases)
one_new_lease() { [[ -n "$lease1" && "$lease1" != "$lease0" && $(wc -w <<<"$lease1") == 1 ]]; }
check "2: one new lease holds the keys" one_new_lease
check "2: the new lease is granted for 11 s" log_has b "lease $lease1 granted by .* \\(TTL 11 s\\)"
check "2: no DELETE event: the keys were never absent" bash -c "! grep -q '^DELETE$' '$H_TMP/w.log'"
check_eq "2: the 3 keys moved to the new lease (3 PUT events)" 3 "$(grep -c '^PUT$' "$H_TMP/w.log")"
check "2: 3 keys" nkeys_is "$EP" 3
check "2: the lease file names the new lease" grep -q "^lease=$lease1\$" "$H_TMP/b.state/etcd.lease"
check "2: every snapshot the client applied holds the 3 instances" all_snaps_full
lease_gone() { h_etcdctl "$EP" lease timetolive "$1" | grep -q 'already expired'; }
check "2: the old lease is gone" lease_gone "$lease0"

# ---- 3. a prefix change: new keys written before the old are deleted ------------------------
AGENT_TTL=11 AGENT_KEEP=1 AGENT_NO_SINK=1 agent_config b "$EP" "reconcile_grace = 1s" "timeout = 2s" "prefix = /moved"
n0=$(wc -l < "$H_TMP/w.log")
daemon_kill b HUP
check "3: the old lease is revoked" wait_for --timeout 20 log_has b "lease $lease1 revoked at"
check "3: 3 keys under the new prefix" wait_for --timeout 10 nkeys_is "$EP" 3 /moved/
check "3: none left under the old prefix" wait_for --timeout 10 nkeys_is "$EP" 0 /backends/
# etcdctl watch prints EVENT, KEY, VALUE lines.
tail -n +"$((n0 + 1))" "$H_TMP/w.log" > "$H_TMP/w3.log"
order_ok() {
    "$PY" - "$H_TMP/w3.log" <<'EOT'
import sys
lines = [l.rstrip("\n") for l in open(sys.argv[1])]
ev = [(lines[i], lines[i + 1]) for i in range(len(lines) - 1) if lines[i] in ("PUT", "DELETE")]
puts = [i for i, (e, k) in enumerate(ev) if e == "PUT" and k.startswith("/moved/")]
dels = [i for i, (e, k) in enumerate(ev) if e == "DELETE" and k.startswith("/backends/")]
print("new-prefix PUTs at %s, old-prefix DELETEs at %s" % (puts, dels), file=sys.stderr)
sys.exit(0 if len(puts) == 3 and len(dels) == 3 and max(puts) < min(dels) else 1)
EOT
}
check "3: all 3 new keys were written before the first old one was deleted" order_ok

check "no sanitizer report or crash in the log" \
    bash -c "! grep -qE 'Sanitizer|runtime error:|Segmentation|Aborted' '$H_TMP/b.log'"
daemon_stop w
finish_agents b c
harness_summary
