#!/usr/bin/env bash
# consul_faults_test.sh - the Consul store plugin under faults, against the
# emulator (or a real `consul agent -dev` with REGENT_CONSUL_MODE=real):
#  1. a backend agent killed with SIGKILL: its instances leave the catalog
#     after the TTL, and the Consul agent deregisters them after
#     DeregisterCriticalServiceAfter;
#  2. the Consul agent restarted (killed, a new one on the same port): the
#     last catalog is kept while it is down, services are registered again;
#  3. ACL tokens: a wrong token and no token are refused with a clear error,
#     an empty filtered answer is never taken for an empty catalog, and the
#     token never reaches a log.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
TTL=1s DEREG=2s
# These scenarios deregister on SIGTERM (a decommissioned host); the default
# (keep the services for a restarted regent) is tested in consul_basic and
# consul_restart.
DEREG_ON_STOP=true
agent_start || { echo "agent did not start"; harness_summary; exit 1; }

cat >"$T/a.txt" <<'EOF'
backend-1/web1/80 web 127.0.0.1 8001
backend-1/web2/80 web 127.0.0.1 8002
EOF
echo "backend-2/api1/80 api 127.0.0.3 9001" >"$T/b.txt"
write_configs() { # [notoken]
	{ printf '[agent]\nnode = backend-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-backend-1"
	  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/a.txt"; store_section "$@"; } >"$T/a.ini"
	{ printf '[agent]\nnode = backend-2\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-backend-2"
	  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/b.txt"; store_section "$@"; } >"$T/b.ini"
	{ printf '[agent]\nnode = client-1\nstate_dir = %s\ndebounce = 10ms\n' "$H_TMP/state-client-1"; store_section "$@"
	  printf '[sink testsink]\nfile = %s\n' "$T/c.sink"; } >"$T/c.ini"
}
write_configs

# ---- 1. SIGKILL: TTL, then DeregisterCriticalServiceAfter
regent_start a "$T/a.ini"
regent_start b "$T/b.ini"
regent_start c "$T/c.ini"
check "client sees web1" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-1/web1/80"
check "client sees api1" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-2/api1/80"
t0=$(now_ms)
daemon_kill regent-a KILL
check "instances of the killed agent leave the client's catalog (TTL)" \
	wait_for --timeout 10 snapshot_lacks "$T/c.sink" "backend-1/web1/80"
t1=$(now_ms)
check "the Consul agent deregisters them (DeregisterCriticalServiceAfter)" \
	wait_for --timeout "$REAP_SLACK" agent_lacks backend-1/web1/80
t2=$(now_ms)
check "the empty service leaves the client's catalog" \
	wait_for --timeout 10 snapshot_lacks "$T/c.sink" "web ("
check "the other host's instance stays" snapshot_has "$T/c.sink" "backend-2/api1/80"
echo "# SIGKILL -> out of the client's catalog: $((t1 - t0)) ms (ttl $TTL)"
echo "# SIGKILL -> deregistered by the agent: $((t2 - t0)) ms (deregister_after $DEREG)"
# (generous: the machine may be loaded; a TTL expiry is seen through the check
# watch, then one read of the service)
check "out of the catalog within ttl + 5 s" test $((t1 - t0)) -lt 6000

# ---- 2. Consul agent restart
regent_start a "$T/a.ini"
check "web1 registered again by a new regent" wait_for --timeout 10 agent_has backend-1/web1/80
check "client sees web1 again" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-1/web1/80"
from=$(($(wc -l <"$T/c.sink") + 1))
agent_kill
sleep 2.5   # longer than the TTL: every regent notices
check "regent A keeps running while Consul is down" daemon_alive regent-a
check "client keeps running while Consul is down" daemon_alive regent-c
check "client says it keeps the last catalog" grep -q "keeping the last catalog" "$(regent_log c)"
check "client turned unhealthy" grep -q "unhealthy" "$(regent_log c)"
check "backend turned unhealthy" grep -q "unhealthy" "$(regent_log a)"
check "client's catalog never lost web1 while Consul was down" \
	all_snapshots_have "$T/c.sink" "backend-1/web1/80" "$from"
check "client's catalog never lost api1 while Consul was down" \
	all_snapshots_have "$T/c.sink" "backend-2/api1/80" "$from"
down_lines=$(wc -l <"$T/c.sink")
agent_start || echo "agent did not restart"
t0=$(now_ms)
check "web1 registered again after the restart" wait_for --timeout 15 agent_has backend-1/web1/80
check "web2 registered again after the restart" wait_for --timeout 5 agent_has backend-1/web2/80
check "api1 registered again after the restart" wait_for --timeout 5 agent_has backend-2/api1/80
t1=$(now_ms)
echo "# Consul agent back -> every service registered again: $((t1 - t0)) ms"
# One line per listing of the agent (at most one each ttl/3): a pass refused while the first
# listing was under way is told by the next one ("registering 1 instance again" twice).
# The line waits for that listing, so it may come after the registers.
rereg_sum() { grep -oE "registering [0-9]+ instances? again" "$(regent_log a)" | awk '{s += $2} END {print s + 0}'; }
rereg_is_2() { [[ $(rereg_sum) -eq 2 ]]; }
check "backend logged the re-registration of its 2 instances" wait_for --timeout 5 rereg_is_2
check "client sees web1 after the restart" wait_for --timeout 15 snapshot_has "$T/c.sink" "backend-1/web1/80"
check "client sees api1 after the restart" wait_for --timeout 15 snapshot_has "$T/c.sink" "backend-2/api1/80"
check "backend healthy again" wait_for --timeout 15 grep -q "store consul: healthy" "$(regent_log a)"
check "client healthy again" wait_for --timeout 15 grep -q "store consul: healthy" "$(regent_log c)"
# One warning per side for the outage, however many retries (host->failure_note); its end
# says how long it lasted and how often it failed.
warns() { grep -cE "(warn|error): store consul: .*$2" "$(regent_log "$1")"; }
failures() { # NAME WHAT: the failures the outage's end line counts
	sed -nE "s/^.* info: store consul: $2 again after [0-9]+\.[0-9] s and ([0-9]+) failures?\$/\1/p" \
		"$(regent_log "$1")" | tail -1
}
fa=$(failures a "Consul agent at \S+ accepts requests") fc=$(failures c "reading the catalog from \S+")
echo "# outage: backend $fa failed requests, client $fc failed reads"
check "backend: the end of the outage with its length and failures" test -n "$fa"
check "client: the end of the outage with its length and failures" test -n "$fc"
check "backend: retried more than once (${fa:-0} failures)" test "${fa:-0}" -ge 2
check "client: retried more than once (${fc:-0} failures)" test "${fc:-0}" -ge 2
check_eq "backend: one warning for the outage's registrations" 1 "$(warns a '; retrying$')"
check_eq "client: one warning for the outage's reads" 1 "$(warns c 'keeping the last catalog, retrying$')"
# The store's warning reads as its health reason: the core says "unhealthy (the warning above)".
check_eq "backend: no second warning from the core" 0 "$(grep -c 'warn: store consul: unhealthy' "$(regent_log a)")"
check_eq "client: no second warning from the core" 0 "$(grep -c 'warn: store consul: unhealthy' "$(regent_log c)")"
if all_snapshots_have "$T/c.sink" "backend-1/web1/80" "$((down_lines + 1))"; then
	echo "# the client's catalog kept web1 throughout the restart"
else
	echo "# note: the client read the restarted (empty) agent before the backend registered again"
fi
# A frozen agent (SIGSTOP): SIGTERM still ends regent within [agent]
# stop_timeout (the core gives up on the hanging deregistrations).
echo "backend-3/e1/80 web 127.0.0.7 8007" >"$T/e.txt"
{ printf '[agent]\nnode = backend-3\nstate_dir = %s\nstop_timeout = 1s\n' "$H_TMP/state-backend-3"
  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/e.txt"; store_section; } >"$T/e.ini"
regent_start e "$T/e.ini"
check "e1 registered" wait_for --timeout 10 agent_has backend-3/e1/80
daemon_kill consul STOP
t0=$(now_ms)
daemon_stop regent-e
t1=$(now_ms)
daemon_kill consul CONT
echo "# SIGTERM with a frozen agent: regent exited after $((t1 - t0)) ms (stop_timeout 1s)"
# (a generous bound: the machine may be loaded; the line below proves the core gave up)
check "frozen agent: regent exits, not hanging on the agent (< 15 s)" test $((t1 - t0)) -lt 15000
check "frozen agent: the core says the store did not stop in time" \
	grep -q "store consul: did not stop in time" "$(regent_log e)"
check "frozen agent: e1 still expires by its TTL" wait_for --timeout "$REAP_SLACK" agent_lacks backend-3/e1/80

daemon_stop regent-a
daemon_stop regent-b
daemon_stop regent-c
agent_stop

# ---- 3. ACL tokens
AGENT_PORT=""
SECRET="s3cr3t-$RANDOM-token"
WRONG="wrong-$RANDOM-token"
# The emulator's anonymous token may read the "consul" service (the usual
# policy for Consul's DNS): a client without a token then gets
# {"consul": []}, filtered, which must not pass for an empty catalog.
EMU_EXTRA="--anonymous-read consul" agent_start "$SECRET" || echo "ACL agent did not start"
rm -f "$T/c.sink"
# Something that a token-less client may not see (else nothing is filtered:
# an empty catalog, truly).
agent_curl PUT /v1/agent/service/register '{"ID":"other1","Name":"other","Address":"127.0.0.9","Port":1}' >/dev/null
# A wrong token: 403 "ACL not found" on writes and reads.
AGENT_TOKEN=$WRONG write_configs
AGENT_TOKEN=$SECRET
regent_start a "$T/a.ini"
regent_start c "$T/c.ini"
check "wrong token: registration refused with a clear error" wait_for --timeout 10 \
	grep -q "Consul refused to register backend-1/web[12]/80 (service web): HTTP 403: ACL not found" "$(regent_log a)"
check "wrong token: reading refused with a clear error" wait_for --timeout 10 \
	grep -qE "Consul refused to read (the service list|the health of every check): HTTP 403: ACL not found" "$(regent_log c)"
check "wrong token: the start failed (a misconfiguration)" \
	grep -q "does not know the token" "$(regent_log c)"
check "wrong token: backend unhealthy" grep -q "store consul: unhealthy" "$(regent_log a)"
check "wrong token: nothing registered" agent_lacks backend-1/web1/80
check "wrong token: the client never got a catalog" test ! -s "$T/c.sink"
daemon_stop regent-a
daemon_stop regent-c
# No token: writes refused (403 permission denied), reads filtered to nothing.
write_configs notoken
regent_start a "$T/a.ini"
regent_start c "$T/c.ini"
check "no token: registration refused" wait_for --timeout 10 \
	grep -q "Consul refused to register backend-1/web[12]/80 .*HTTP 403: Permission denied" "$(regent_log a)"
check "no token: the filtered empty answer is flagged as an ACL problem" wait_for --timeout 10 \
	grep -qE "Consul filtered the (service list by ACLs down to nothing usable|health of every check by ACLs down to nothing)" "$(regent_log c)"
check "no token: client unhealthy" grep -q "store consul: unhealthy" "$(regent_log c)"
check "no token: the client never took it for an empty catalog" bash -c "! grep -q '^apply' '$T/c.sink'"
daemon_stop regent-a
daemon_stop regent-c
# The right token.
write_configs
regent_start a "$T/a.ini"
regent_start c "$T/c.ini"
check "right token: registered" wait_for --timeout 10 agent_has backend-1/web1/80
check "right token: discovered" wait_for --timeout 10 snapshot_has "$T/c.sink" "backend-1/web1/80"
daemon_stop regent-a
check "right token: deregistered on SIGTERM" agent_lacks backend-1/web1/80
daemon_stop regent-c
agent_stop
# Default-deny without any anonymous read (what Consul's ACL bootstrap
# gives): a token-less read gets {} and, the request having no token, no
# X-Consul-Results-Filtered-By-ACLs header.  The missing "consul" service
# gives it away.
AGENT_PORT=""
agent_start "$SECRET" || echo "ACL agent did not start"
rm -f "$T/c.sink"
agent_curl PUT /v1/agent/service/register '{"ID":"other1","Name":"other","Address":"127.0.0.9","Port":1}' >/dev/null
write_configs notoken
regent_start c "$T/c.ini"
# Whichever of the two blocking queries answers first says it: the service
# list without "consul", or the checks without serfHealth.
check "no token, default deny: the filtered answer is taken as filtered" \
	wait_for --timeout 10 grep -qE 'lacks the "consul" service, which Consul.s servers always register \(no token is configured|filtered the health of every check by ACLs down to nothing \(no serfHealth check\)' "$(regent_log c)"
check "no token, default deny: client unhealthy" grep -q "store consul: unhealthy" "$(regent_log c)"
check "no token, default deny: no catalog taken" test ! -s "$T/c.sink"
daemon_stop regent-c
check "no token ever reached a log" bash -c "! grep -l -e '$SECRET' -e '$WRONG' $T/regent-*.log"
check_regent_logs_clean
harness_summary
