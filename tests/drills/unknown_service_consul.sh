#!/usr/bin/env bash
# unknown_service_consul.sh - one service the client cannot read must not cost the others, nor
# itself, a request (Consul store, the emulator; docs/consul.md "Known limits").
#
# A client routes "web" (2 backends) and "wide" (1 backend) through its managed haproxy, under
# load on both ports. It is stopped (haproxy keeps serving), and "wide" grows past the client's
# max_response_size (120 more instances registered at the agent, ~3 KB of health answer each):
# the client can list it but never read it.
#  1. The client started again (its earlier run's file routes wide): after first_read_wait the
#     store publishes the catalog with wide unknown, and the haproxy sink keeps the earlier file
#     as it is: 0 failed requests on either port, the same haproxy master, the file unchanged.
#     Before session 21 the first catalog waited for wide for good (the same haproxy, but no
#     change of any service applied while wide stayed unreadable).
#  2. A fresh client (no earlier file, its own haproxy) meanwhile routes web within seconds and
#     has no listener for wide. Before session 21 it routed nothing at all, ever.
#  3. wide shrinks back under the limit: the client reads it and applies the catalog again.
# Row: DRILL|unknown_service_consul|...|requests|failed|-|note.
DRILL_STORE=consul
source "$(dirname "$0")/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
PY=${PYTHON3:-python3}
drill=unknown_service_consul

drill_store_start cli || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
P3=$(free_port 127.0.0.4)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"
daemon_start wide1 "$PY" -m http.server --bind 127.0.0.4 --directory "$H_TMP/www" "$P3"
printf 'b/w1/80 web 127.0.0.2 %s\nb/w2/80 web 127.0.0.3 %s\nb/x1/80 wide 127.0.0.4 %s\n' \
	"$P1" "$P2" "$P3" > "$H_TMP/b.inst"
drill_agent_config b

# The limit: room for every answer but wide's once it has grown (checked below).
LIMIT=163840
client_config() { # NAME DIR HP HW RS
	mkdir -p "$H_TMP/$2"
	chmod 0750 "$H_TMP/$2"
	cat > "$H_TMP/$1.ini" <<EOF
[agent]
node = $1
state_dir = $H_TMP/$1.state

$(drill_store_section "max_response_size = $LIMIT" "first_read_wait = 2s")

[sink haproxy]
manage          = true
config_file     = $H_TMP/$2/regent.cfg
master_socket   = $H_TMP/$2/master.sock
bind_address    = 127.0.0.1
reload_interval = 200ms

[sink stats]
listen = 127.0.0.1:$5

[service web]
port           = $3
mode           = http
check          = /
check_interval = 500ms

[service wide]
port           = $4
mode           = http
check          = /
check_interval = 500ms
EOF
}
HP=$(free_port); HW=$(free_port); RS=$(free_port)
client_config c haproxy "$HP" "$HW" "$RS"
agent_start b
agent_start c
fail=0
if ! wait_for --timeout 60 drill_up "$HP" || ! wait_for --timeout 30 drill_up "$HW"; then
	echo "drill: haproxy never routed web and wide" >&2
	exit 1
fi
hx_track_master "$H_TMP/haproxy/master.sock"
sleep 2 # the servers up in haproxy's checks
M0=$(hx_master_pid "$H_TMP/haproxy/master.sock")

load_start() { # NAME PORT
	daemon_start "$1" "$PY" "$REGENT_TEST_DIR/e2e/loadgen.py" --url "http://127.0.0.1:$2/" \
		--out "$H_TMP/$1.jsonl" --duration 600 --stop-file "$H_TMP/$1.stop" --threads 2 --interval 0.01
}
load_stop() {
	touch "$H_TMP/$1.stop"
	if ! wait_for --timeout 15 bash -c "! kill -0 $(daemon_pid "$1") 2>/dev/null"; then
		echo "drill: $1 did not end by itself: stopped" >&2
	fi
	daemon_stop "$1"
}
load_count() { # NAME -> "requests failed"
	"$PY" -c '
import json, sys
n = f = 0
for line in open(sys.argv[1]):
    d = json.loads(line); n += 1; f += d.get("status") != 200
print(n, f)' "$H_TMP/$1.jsonl"
}
load_start loadweb "$HP"
load_start loadwide "$HW"
sleep 1

# ---- the client stops; wide grows past its limit
daemon_stop c
wait_for --timeout 30 agent_gone c || { echo "drill: the client did not exit" >&2; fail=1; }
sum0=$(md5sum < "$H_TMP/haproxy/regent.cfg")
"$PY" - "$DRILL_ADDR" <<'PY' || { echo "drill: registering wide's 120 instances failed" >&2; fail=1; }
import json, sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(120):
    body = json.dumps({"ID": "big%d" % i, "Name": "wide", "Address": "127.0.0.8", "Port": 20000 + i,
                       "Check": {"TTL": "1h", "Status": "passing"}}).encode()
    op.open(urllib.request.Request(sys.argv[1] + "/v1/agent/service/register", data=body,
                                   method="PUT"), timeout=10).read()
PY
size() { curl -s --noproxy '*' -m 10 "$DRILL_ADDR$1" | wc -c; }
wide_b=$(size /v1/health/service/wide?passing); checks_b=$(size /v1/health/state/any)
list_b=$(size /v1/agent/services)
echo "drill: wide's health answer $wide_b bytes, the checks $checks_b, the agent's services $list_b; max_response_size $LIMIT" >&2
if ! ((wide_b > LIMIT && checks_b < LIMIT && list_b < LIMIT)); then
	echo "drill: the sizes do not fit the case (wide over the limit, the others under it)" >&2
	fail=1
fi

# ---- 1. the client starts again: wide is unknown, the earlier file kept
agent_start_as c1 c
if ! wait_for --timeout 30 log_has c1 "store consul: read the catalog but 1 of its [0-9]+ services after 2000 ms \(first_read_wait\): wide not read yet"; then
	echo "drill: 1: the store did not publish the catalog without wide" >&2
	fail=1
fi
if ! wait_for --timeout 10 log_has c1 "sink haproxy: keeping .*regent.cfg as it is: it routes service wide, which the registry lists but the store could not read yet"; then
	echo "drill: 1: the haproxy sink did not say it keeps the earlier file" >&2
	fail=1
fi
unk=$(curl -s --noproxy '*' -m 5 "http://127.0.0.1:$RS/v1/catalog" |
	"$PY" -c 'import json,sys; print(",".join(json.load(sys.stdin).get("unknown", [])))')
[[ "$unk" == wide ]] || { echo "drill: 1: the stats sink's /v1/catalog lists unknown \"$unk\", not wide" >&2; fail=1; }
sleep 2
sum1=$(md5sum < "$H_TMP/haproxy/regent.cfg")
[[ "$sum0" == "$sum1" ]] || { echo "drill: 1: the earlier file changed while wide was unknown" >&2; fail=1; }

# ---- 2. a fresh client meanwhile: web routed, no listener for wide
FP=$(free_port); FW=$(free_port); FS=$(free_port)
client_config f fresh "$FP" "$FW" "$FS"
agent_start f
if ! wait_for --timeout 30 drill_up "$FP"; then
	echo "drill: 2: the fresh client never routed web" >&2
	fail=1
fi
hx_track_master "$H_TMP/fresh/master.sock"
fresh_wide=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 2 "http://127.0.0.1:$FW/")
[[ "$fresh_wide" == 000 ]] || { echo "drill: 2: the fresh client's haproxy answers on wide's port ($fresh_wide)" >&2; fail=1; }
grep -q "listen wide" "$H_TMP/fresh/regent.cfg" && { echo "drill: 2: the fresh client's file has a listen for wide" >&2; fail=1; }
daemon_stop f # its haproxy is stopped with the other daemons (hx_track_master)

# ---- 3. wide shrinks back: read, the catalog applied
"$PY" - "$DRILL_ADDR" <<'PY' || { echo "drill: deregistering wide's 120 instances failed" >&2; fail=1; }
import sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(120):
    op.open(urllib.request.Request(sys.argv[1] + "/v1/agent/service/deregister/big%d" % i,
                                   method="PUT"), timeout=10).read()
PY
if ! wait_for --timeout 30 log_has c1 "sink haproxy: every service .*regent.cfg routes is read: applying the catalog"; then
	echo "drill: 3: the client did not apply the catalog once wide was read" >&2
	fail=1
fi
sleep 2
load_stop loadweb
load_stop loadwide
read -r tw fw < <(load_count loadweb)
read -r tx fx < <(load_count loadwide)
M1=$(hx_master_pid "$H_TMP/haproxy/master.sock")
same=$([[ -n "$M0" && "$M0" == "$M1" ]] && echo yes || echo no)
total=$((tw + tx)); failed=$((fw + fx))
echo "drill: web $tw requests ($fw failed), wide $tx requests ($fx failed); haproxy master unchanged=$same" >&2
echo "DRILL|$drill|client restarted while one service (wide) is over max_response_size; a fresh client beside it|$total|$failed|-|web $tw/$fw, wide $tx/$fx (requests/failed); master unchanged=$same"
[[ $total -gt 0 && $tw -gt 0 && $tx -gt 0 && $failed -eq 0 && $same == yes ]] || fail=1
daemon_stop c1
daemon_stop b
exit $fail
