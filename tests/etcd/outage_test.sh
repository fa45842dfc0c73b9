#!/usr/bin/env bash
# tests/etcd/outage_test.sh: etcd stopped for 3*ttl while an agent registers and watches: the
# agent keeps running and keeps its catalog (an error never empties a service), reports itself
# unhealthy, and once etcd is back re-registers (changes made meanwhile included) and has the
# complete catalog again.
source "$(dirname "$0")/lib.sh"
harness_init
EP=$(etcd_start o1) || exit 1
TTL=3

h_etcdctl "$EP" put /backends/web/other/c9/80 '{"address":"127.0.0.9","port":8000,"node":"other"}' >/dev/null
printf '%s\n' "a/c1/80 web 127.0.0.2 8080" "a/c2/80 web 127.0.0.3 8080" > "$H_TMP/a.inst"
AGENT_TTL=$TTL agent_config a "$EP"
agent_start a
check "waited for: nkeys_is EP 3" wait_for --timeout 10 nkeys_is "$EP" 3
wait_for --timeout 10 snap_has a '  web \(3\)'
check "registered and discovered before the outage" snap_has a '  web \(3\)'

sink_lines=$(wc -l < "$H_TMP/a.sink")
log_lines=$(wc -l < "$H_TMP/a.log")
etcd_stop o1
t_down=$(now)
echo "a/c3/80 web 127.0.0.4 8080" >> "$H_TMP/a.inst" # a change while etcd is away
sleep $((3 * TTL))
check "etcd down for 3*ttl: the agent keeps running" daemon_alive a
check "the catalog keeps its last known state (no service emptied)" snap_has a '  web \(3\)'
check "the sink was not handed a shrunken service meanwhile" \
    bash -c "! tail -n +$((sink_lines + 1)) '$H_TMP/a.sink' | grep -qE '^  web \((0|1|2)\)'"
check "the plugin reports itself unhealthy" log_has a 'store etcd: unhealthy'
check "retries are spaced by the backoff (not a busy loop)" \
    test "$(grep -c 'lost\|cannot' "$H_TMP/a.log")" -lt 80
# One warning per failing part for the outage (each retry words its failure anew: "after N
# ms"), the retries at debug level; a reminder would come only after a minute.
since() { tail -n +$((log_lines + 1)) "$H_TMP/a.log"; }
warned=$(since | grep -cE 'warn: store etcd: (registration|discovery): ')
retried=$(since | grep -cE 'debug: store etcd: (registration|discovery): ')
check "one warning per failing part for the outage ($warned), the retries at debug level ($retried)" \
    test "$warned" -ge 1 -a "$warned" -le 2 -a "$retried" -ge 2

down=$(elapsed "$t_down")
etcd_restart o1
t_up=$(now)
check "waited for: nkeys_is EP 4" wait_for --timeout 15 nkeys_is "$EP" 4
took_reg=$(elapsed "$t_up")
check "after the restart everything is registered again, the change included (${took_reg} s)" \
    nkeys_is "$EP" 4
check "waited for: snap_has a ' web (4)'" wait_for --timeout 15 snap_has a '  web \(4\)'
took_cat=$(elapsed "$t_up")
check "and the catalog is complete again (${took_cat} s)" snap_has a '  web \(4\)'
check "other agents' instances kept" snap_has a '    other/c9/80 127.0.0.9:8000/tcp node=other'
wait_for --timeout 5 log_has a 'info: store etcd: healthy'
check "healthy again" log_has a 'info: store etcd: healthy'
check "the end of the outage is logged with its length and its failures" \
    log_has a 'info: store etcd: (registration|discovery) works again \(through [^)]*\) after [0-9]+\.[0-9] s and [0-9]+ failures'
lease=$(h_etcdctl "$EP" get --prefix /backends/web/a -w json | ehelp leases | awk '{print $2}' | sort -u)
check_eq "all of the agent's keys share one live lease" 1 "$(wc -w <<<"$lease")"
check_contains "with the 3 s TTL" "$(h_etcdctl "$EP" lease timetolive "$lease")" "granted with TTL(3s)"
# still alive a few TTLs later (keepalives work on the restarted etcd)
sleep 4
check "keys stay after the restart (keepalives go on)" nkeys_is "$EP" 4
echo "measured: etcd down ${down} s; back -> registered in ${took_reg} s, catalog complete in ${took_cat} s"
finish_agents a
harness_summary
