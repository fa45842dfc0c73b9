#!/usr/bin/env bash
# tests/etcd/members_test.sh: the watch against members that are not what it saw before
# (docs/etcd.md, "Stream lost"), and watch_idle_timeout:
#   A. watch_idle_timeout = 1500ms on a registry where nothing happens (etcd's progress
#      notifications come every 10 min): the silent stream is given up and resumed, and events
#      still reach the catalog;
#   B. the member restored from a snapshot (same cluster id, an older revision): "behind the
#      revision already seen" is logged, the prefix is read again, and the catalog follows the
#      restored store (a key written after the snapshot leaves it);
#   C. the next endpoint belongs to another cluster: logged, the prefix read again from it, the
#      catalog follows that cluster.
# Agents here have no source (no lease): each claim rests on the watch and the read alone.
source "$(dirname "$0")/lib.sh"
harness_init
E1=$(etcd_start m1) || exit 1
E2=$(etcd_start m2) || exit 1
put() { h_etcdctl "$1" put "$2" "$3" >/dev/null; }
revision() { h_etcdctl "$1" get /backends/ -w json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])'; }

# ---- A. watch_idle_timeout ---------------------------------------------------------------------
put "$E1" /backends/web/x/early/80 '{"address":"127.0.0.5","port":8000,"node":"x"}'
agent_config a "$E1" "watch_idle_timeout = 1500ms"
agent_start a
check "A: the agent reads the registry" wait_for --timeout 20 snap_has a '    x/early/80 127.0.0.5:8000/tcp node=x'
t0=$(now)
check "A: a watch silent for watch_idle_timeout is given up and resumed (logged)" wait_for --timeout 10 \
    log_has a 'watch of /backends/ lost \(.*no data received for 1500 ms.*\); resuming from revision [0-9]+ on '
check "A: ... and again at the next silence (2 idle reconnects $(elapsed "$t0") s after the first read)" \
    wait_for --timeout 10 eval '[[ $(grep -c "no data received for 1500 ms" "$H_TMP/a.log") -ge 2 ]]'
check "A: the idle stream is not a reason to read the prefix again (one read so far)" \
    test "$(grep -c 'read /backends/ at revision' "$H_TMP/a.log")" -eq 1
put "$E1" /backends/web/x/late/80 '{"address":"127.0.0.6","port":8000,"node":"x"}'
check "A: events still reach the catalog across idle reconnects" \
    wait_for --timeout 10 snap_has a '    x/late/80 127.0.0.6:8000/tcp node=x'

# ---- B. a member behind the revision already seen (restored from a backup) ---------------------
# The snapshot is taken before "late2" is written: the restored member lacks it and is at an
# older revision; its cluster id is the same (same name, peer URL and cluster token).
SNAP="$H_TMP/m1.snap"
check "B: snapshot saved" bash -c "ETCDCTL_API=3 etcdctl --endpoints='$E1' snapshot save '$SNAP' >'$H_TMP/snap.log' 2>&1"
rev_snap=$(revision "$E1")
put "$E1" /backends/web/x/late2/80 '{"address":"127.0.0.7","port":8000,"node":"x"}'
put "$E1" /backends/web/x/late2/80 '{"address":"127.0.0.7","port":8001,"node":"x"}'
check "B: the agent sees the key written after the snapshot" \
    wait_for --timeout 10 snap_has a '    x/late2/80 127.0.0.7:8001/tcp node=x'
etcd_stop m1
PEER=$(cat "$H_TMP/.h/etcd/m1.peer")
mv "$H_TMP/etcd-m1" "$H_TMP/etcd-m1.before"
check "B: snapshot restored into m1's data dir" bash -c "ETCDCTL_API=3 etcdctl snapshot restore '$SNAP' \
    --name m1 --data-dir '$H_TMP/etcd-m1' --initial-cluster m1=http://127.0.0.1:$PEER \
    --initial-advertise-peer-urls http://127.0.0.1:$PEER --initial-cluster-token rh-m1 >>'$H_TMP/snap.log' 2>&1"
daemon_restart etcd-m1
check "B: the restored member is up" wait_for --timeout 30 etcd_healthy "$E1"
check_eq "B: it is at the snapshot's revision" "$rev_snap" "$(revision "$E1")"
check "B: the member behind the revision already seen is noticed (logged)" wait_for --timeout 20 \
    log_has a "$E1 is at revision $rev_snap, behind the [0-9]+ already seen"
check "B: ... and the prefix read again from it" wait_for --timeout 10 \
    log_has a "read /backends/ at revision $rev_snap from $E1"
check "B: the catalog follows the restored store (the later key is gone)" \
    wait_for --timeout 5 snap_lacks a '    x/late2/80 .*'
check "B: ... and keeps what the snapshot holds" snap_has a '    x/late/80 127.0.0.6:8000/tcp node=x'
put "$E1" /backends/web/x/after/80 '{"address":"127.0.0.8","port":8000,"node":"x"}'
check "B: events flow again on the restored member" \
    wait_for --timeout 10 snap_has a '    x/after/80 127.0.0.8:8000/tcp node=x'
daemon_stop a

# ---- C. the next endpoint belongs to another cluster --------------------------------------------
put "$E2" /backends/db/y/other/5432 '{"address":"127.0.0.9","port":5432,"node":"y"}'
agent_config c "$E1,$E2"
agent_start c
check "C: the agent reads the first endpoint's cluster" wait_for --timeout 20 \
    snap_has c '    x/after/80 127.0.0.8:8000/tcp node=x'
check "C: ... from the first endpoint" log_has c "read /backends/ at revision [0-9]+ from $E1"
etcd_kill m1
check "C: a member of another cluster is noticed (logged)" wait_for --timeout 20 \
    log_has c "$E2 belongs to another cluster \([0-9a-f]+, was [0-9a-f]+\)"
check "C: ... and the prefix read again from it" wait_for --timeout 10 \
    log_has c "read /backends/ at revision [0-9]+ from $E2"
check "C: the catalog follows the other cluster" wait_for --timeout 5 \
    snap_has c '    y/other/5432 127.0.0.9:5432/tcp node=y'
check "C: ... and holds nothing of the first" snap_lacks c '    x/.*'

finish_agents a c
harness_summary
