#!/usr/bin/env bash
# tests/drills/scale_reload.sh - regent's reloads and restarts at 10,000 instances under a routed
# load.  The other drills run a client with one or two services, where a reload of haproxy takes
# a few ms; at 10,000 instances it takes about half a second (haproxy parses every server, the
# new worker reads the server-state file regent dumped from the old one in chunks) and an
# adoption reads every server's state back.  The client here routes a steady load to the service
# web (two loopback http servers and a sick one answering 404, whose check keeps it down in
# haproxy, all registered by a backend agent; a 500 would not do: haproxy's retry-on, as regent
# writes it, retries a 500 on another server) among FLEET synthetic instances in NSVC services
# written straight into etcd (bench/lib/scale_tool.py bulk; nothing listens behind them, checked
# every 24 h; a new worker's first checks spread over 2 s, not the default 20 s, which would
# leave the sick server up that long after haproxy's start).  Each case counts the load's failed requests; the bar is 0, with the same haproxy
# master.  The sick server makes the hand-over of the servers' states at a reload count: a new
# worker without them takes it for up and sends it requests until its checks fail again
# (tests/mutation/breaks.txt: haproxy-reload-forgets-server-states).
#   a. ROUNDS new services, one after the other: each a reload; each new listener accepts
#      connections (time from its etcd write, printed);
#   b. the same services deleted, one after the other: each a reload (empty_grace = 0); each
#      listener gone from haproxy; the client's /v1/catalog as before case a;
#   c. the client agent SIGTERMed and started again (haproxy kept running and adopted): no
#      reload, the catalog as before;
#   d. the client SIGHUPed with a changed [sink haproxy] key (reload_interval 200ms <-> 300ms):
#      the new sink instance adopts haproxy, no reload, the catalog as before.
# The client and its haproxy run with an open-file limit of DRILL_FD_LIMIT (default 12000; 0: the
# drill's own), under what the fleet's slots want: the sink caps them at haproxy's budget.
# DRILL_SMOKE=1 (the suite's drill_scale_smoke): ROUNDS 2.  Full: ROUNDS 5.  FLEET (default
# 10000) and NSVC (default 200) size the fleet; DRILL_ROUNDS overrides ROUNDS.
# Rows: DRILL|scale_reload|<case>|requests|failed|recovery|note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
if [[ $DRILL_STORE != etcd ]]; then
	echo "scale_reload: an etcd drill (the fleet is written into etcd); DRILL_STORE=$DRILL_STORE not supported" >&2
	exit 77
fi
if [[ "${DRILL_SMOKE:-0}" == 1 ]]; then ROUNDS=2; else ROUNDS=5; fi
ROUNDS=${DRILL_ROUNDS:-$ROUNDS}
FLEET=${FLEET:-10000}
NSVC=${NSVC:-200}
FD_LIMIT=${DRILL_FD_LIMIT:-12000}
PY=${PYTHON3:-python3}
# shellcheck disable=SC2034 # (drill_case_end names the rows with it)
drill=scale_reload
fail=0

drill_store_start sr || exit 1
# The fleet's listen ports: one per service, from the harness's allocator.
free_ports "$NSVC" > "$H_TMP/fleet-ports" || exit 1
t=$(now)
"$PY" "$REGENT_SOURCE_DIR/bench/lib/scale_tool.py" bulk "$DRILL_ADDR" /backends "$NSVC" "$FLEET" \
	"$H_TMP/fleet-ports" > /dev/null || { echo "drill: writing the fleet failed" >&2; exit 1; }
echo "drill: $FLEET instances in $NSVC services written in $(elapsed "$t") s" >&2

P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"
P3=$(free_port 127.0.0.4)
daemon_start sick "$PY" -c 'import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404, "sick")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.4", int(sys.argv[1])), H).serve_forever()' "$P3"
printf 'b/w1/80 web 127.0.0.2 %s\nb/w2/80 web 127.0.0.3 %s\nb/w3/80 web 127.0.0.4 %s\n' "$P1" "$P2" "$P3" > "$H_TMP/b.inst"
drill_agent_config b

drill_client_ports
# client_ini RELOAD_INTERVAL: the client's configuration (case d changes the interval).
client_ini() {
	cat > "$H_TMP/c.ini" <<EOF
[agent]
node = c
state_dir = $H_TMP/c.state

$(drill_store_section)

$(drill_client_sinks "check_interval  = 24h" "empty_grace     = 0" "max_spread_checks = 2s" | sed "s/^reload_interval = .*/reload_interval = $1/")
EOF
}
client_ini 200ms
ADMIN=$H_TMP/haproxy/haproxy-admin.sock
agent_start b
# What the client and its haproxy start with from here on: an open-file limit under what the
# fleet's slots want, so that the sink caps them at haproxy's budget (docs/haproxy.md, "haproxy's
# open-file limit") and a restarted client must keep the slots an earlier file gave every
# service within it (a first version counted them only once the catalog routed each service:
# after a restart haproxy refused every reload for the descriptors the file needed).
if [[ $FD_LIMIT != 0 ]]; then
	ulimit -n "$FD_LIMIT" || { echo "drill: cannot set the open-file limit to $FD_LIMIT" >&2; exit 1; }
fi
t=$(now)
agent_start c
drill_client_ready
echo "drill: the client routes web among $FLEET instances $(elapsed "$t") s after its start" >&2
# sick_down: haproxy has the sick server down (its operational state 0 in the server states).
sick_down() { haproxy_admin_cmd "$ADMIN" "show servers state web" | awk '$5 == "127.0.0.4" { d = ($6 == 0) } END { exit !d }'; }
wait_for --timeout 60 sick_down || { echo "drill: haproxy never took the sick server down" >&2; exit 1; }
echo "drill: haproxy has the sick server down $(elapsed "$t") s after the client's start" >&2
cat0=$(drill_catalog "$RS")
[[ $cat0 == *'"web"'* && $cat0 == *'"fleet0000"'* ]] || bad "the client's catalog lists web and the fleet"
cur=c

# accepts PORT: a TCP connect to 127.0.0.1:PORT succeeds.
accepts() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
# gone_from_haproxy NAME: haproxy (its current worker) has no proxy NAME.
gone_from_haproxy() { haproxy_admin_cmd "$ADMIN" "show servers state $1" 2>&1 | grep -q "Can't find backend"; }
etcdctl_() { h_etcdctl "$DRILL_ADDR" "$@"; }

# ---- a. new services, one at a time: each a reload ------------------------------------------
drill_case_begin
declare -a NPORT
times=()
for ((i = 1; i <= ROUNDS; i++)); do
	NPORT[i]=$(free_port)
	t=$(now)
	etcdctl_ put "/backends/new$i/drill/n$i/80" \
		"{\"address\":\"127.4.0.$i\",\"port\":80,\"service_port\":${NPORT[i]}}" > /dev/null ||
		bad "a: writing new$i"
	if wait_for --timeout 30 accepts "${NPORT[i]}"; then times+=("$(elapsed "$t")")
	else times+=(-); bad "a: new$i's listener did not accept within 30 s"; fi
done
drill_case_end "a. $ROUNDS new services, one at a time (reload each)" "${times[*]} s" "listening after ${times[*]} s" some

# ---- b. the same services deleted: each a reload ---------------------------------------------
drill_case_begin
times=()
for ((i = 1; i <= ROUNDS; i++)); do
	t=$(now)
	etcdctl_ del "/backends/new$i/drill/n$i/80" > /dev/null || bad "b: deleting new$i"
	if wait_for --timeout 30 gone_from_haproxy "new$i"; then times+=("$(elapsed "$t")")
	else times+=(-); bad "b: new$i still in haproxy 30 s after its deletion"; fi
done
drill_case_end "b. the $ROUNDS services deleted, one at a time (reload each)" "${times[*]} s" "gone after ${times[*]} s" some "$cat0"

# ---- c. the client agent restarted (SIGTERM, start): haproxy adopted ---------------------------
drill_case_begin
t=$(now)
daemon_stop "$cur"
wait_for --timeout 30 agent_gone "$cur" || bad "c: the client did not exit"
cur=c2
agent_start_as "$cur" c
if wait_for --timeout 60 log_has "$cur" "store etcd: ready" && wait_for --timeout 60 log_has "$cur" "sink haproxy: ready"; then
	back="$(elapsed "$t") s"
else
	back=-; bad "c: the restarted client was not ready within 60 s"
fi
drill_case_end "c. client agent SIGTERM + start (haproxy adopted)" "$back" "ready again after $back" none "$cat0"
grep -q "sink haproxy: adopted the running haproxy (master pid $M0" "$H_TMP/$cur.log" || bad "c: the restarted client's log does not say it adopted haproxy"

# ---- d. the client SIGHUPed with a changed [sink haproxy] -------------------------------------
drill_case_begin
took_over() { grep -c "the new configuration took over" "$H_TMP/$cur.log"; }
took_over_since() { [[ $(took_over) -gt $1 ]]; }
n0=$(took_over)
client_ini 300ms
t=$(now)
kill -HUP "$(daemon_pid "$cur")"
if wait_for --timeout 60 took_over_since "$n0"; then
	back="$(elapsed "$t") s"
else
	back=-; bad "d: the new sink instance was not ready within 60 s of the SIGHUP"
fi
drill_case_end "d. client SIGHUP, [sink haproxy] changed (adopted)" "$back" "new sink ready after $back" none "$cat0"

daemon_stop "$cur"
daemon_stop b
exit $fail
