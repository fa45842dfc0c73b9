#!/bin/bash
# docker_checks.sh: agent-run checks of the docker source against a real dockerd and a real
# haproxy (host networking, loopback), under a steady load through haproxy:
# - a container whose app listens only 3 s after start (checked by [service web] agent_check in
#   the INI file) is registered only after it listens: haproxy never tried it before (no
#   connection error, retry or redispatch on the backend) and no request of the load failed;
# - a container whose http check (label regent.check=http:/health) starts failing leaves the
#   registry within interval x fall (plus one probe's timeout), while the load sees no failure;
# - exec (inside the container, through the Docker API) and tcp checks by label; a tcp check on
#   a port nothing listens on never registers; a bad check label refuses the port;
# - weights by label (haproxy sink): a canary at regent.weight=10 next to one at 90 gets ~10 %
#   of the requests through haproxy, one at 0 gets none; the weight goes over the runtime API
#   (no reload);
# - client side: an instance joining a service with a haproxy `check` starts with its health
#   check pending (health down), not forced up: no request reaches it before haproxy's check.
set -u
source "$(dirname "$0")/dlib.sh"
dl_init
# shellcheck source=../haproxy/hxlib.sh
source "$DL_DIR/../haproxy/hxlib.sh"
E2E=$DL_DIR/../e2e

P_SVC=$(free_port); P_STATS=$(free_port)
P_STEADY=$(free_port); P_SLOW=$(free_port); P_FLAP=$(free_port); P_EXEC=$(free_port)
P_TCP=$(free_port); P_DEAD=$(free_port); P_BAD=$(free_port)
P_CAN=$(free_port); P_W90=$(free_port); P_W10=$(free_port); P_W0=$(free_port)
P_PEND=$(free_port); P_PBE=$(free_port); P_PBE2=$(free_port)
HX=$H_TMP/hx; mkdir -p "$HX"
s12() { echo "${1:0:12}"; }

# The steady container first (its check passes at once), then the agent.
id_steady=$(run_whoami steady "$P_STEADY" -l regent.service=web)
regent_start r1 "" "[sink haproxy]" "manage = true" "config_file = $HX/haproxy.cfg" \
    "bind_address = 127.0.0.1" "stats = 127.0.0.1:$P_STATS" "reload_interval = 200ms" \
    "check_interval = 500ms" "" "[service web]" "port = $P_SVC" "mode = tcp" \
    "agent_check = http:/" "agent_check_interval = 300ms" "agent_check_timeout = 250ms" \
    "agent_check_rise = 2" "agent_check_fall = 2" "" "[service canary]" "port = $P_CAN" "mode = http" \
    "slots = 4" "" "[service pend]" "port = $P_PEND" "mode = http" "check = /nothere" \
    "check_interval = 500ms" ||
    { check "regent synced with dockerd" false; dl_finish; exit 1; }
LOG=$(regent_log r1)
web_get() { curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$P_SVC/"; }
check "the steady container answers through haproxy" \
    wait_for --timeout 20 bash -c "[[ \"\$(curl -s --noproxy '*' --max-time 2 http://127.0.0.1:$P_SVC/)\" == \"I'm $(s12 "$id_steady")\" ]]"
# The managed haproxy outlives regent: stopped by the harness like every daemon of the test.
check "the managed haproxy master is tracked" hx_track_master "$HX/haproxy-master.sock"
check "the steady instance passed its check before it was registered" \
    grep -qE "instance $NODE/$(s12 "$id_steady")/$P_STEADY check http GET / passed 2 times in a row: up" "$LOG"

# A steady load through haproxy for the rest of the test.
LOAD=$H_TMP/load.jsonl
"$PY" "$E2E/loadgen.py" --url "http://127.0.0.1:$P_SVC/" --out "$LOAD" --stop-file "$H_TMP/load.stop" \
    --duration 60 --threads 2 --interval 0.01 &
LOADPID=$!
sleep 0.5

# ---- a slow starter: listens 3 s after start -------------------------------------------------
id_slow=$(dk run -d --network host --name slow --expose "$P_SLOW" -e WHOAMI_ADDR=127.0.0.1 \
          -e "WHOAMI_PORT=$P_SLOW" -l regent.service=web --entrypoint /bin/sh "$IMG" \
          -c 'sleep 3; exec /usr/local/bin/whoami')
t_run=$(now_ns)
# When it starts listening, seen from the host (polled every 50 ms).
listen_ns=""
for ((i = 0; i < 300; i++)); do
    if curl -s --noproxy '*' --max-time 1 -o /dev/null "http://127.0.0.1:$P_SLOW/"; then listen_ns=$(now_ns); break; fi
    sleep 0.05
done
check "the slow container listens (seen from the host)" test -n "$listen_ns"
check "the slow container answers through haproxy" wait_for --timeout 15 grep -q "I'm $(s12 "$id_slow")" "$LOAD"
reg_ns=$(dtool logtime "$LOG" "instance $NODE/$(s12 "$id_slow")/$P_SLOW check http GET / passed 2 times in a row: up" "$t_run" 2>/dev/null || true)
echo "# slow starter: the host's poll saw it listening $(( (listen_ns - t_run) / 1000000 )) ms after docker run, check up $(( (${reg_ns:-0} - t_run) / 1000000 )) ms after" >&2
# While the app slept its check was refused (connection refused), then it passed: the gate.
check "its check failed while the app did not listen yet" grep -qE \
    "instance $NODE/$(s12 "$id_slow")/$P_SLOW check http GET / failed \(.*(Couldn't connect|refused).*\); not up yet" "$LOG"
check "registered after the check passed" grep -qE "^register $NODE/$(s12 "$id_slow")/$P_SLOW web 127\.0\.0\.1:$P_SLOW$" "$H_TMP/r1.store"
# haproxy never tried it before it listened: no connection error, retry or redispatch.
csv() { curl -s --noproxy '*' "http://127.0.0.1:$P_STATS/;csv"; }
be=$(csv | awk -F, '$1 == "web" && $2 == "BACKEND" { print "econ=" $14 " wretr=" $16 " wredis=" $17 }')
echo "# haproxy backend web: $be" >&2
check_eq "haproxy: no connection error, retry or redispatch on the web backend" "econ=0 wretr=0 wredis=0" "$be"

# ---- a check that starts failing: out within interval x fall -----------------------------------
id_flap=$(run_whoami flap "$P_FLAP" -l regent.service=web -l regent.check=http:/health \
          -l regent.check.interval=500ms -l regent.check.timeout=300ms -l regent.check.rise=1 \
          -l regent.check.fall=3)
check "the flap container registered after one pass (its label beats the INI's check)" \
    wait_for --timeout 10 store_has r1 "^register $NODE/$(s12 "$id_flap")/$P_FLAP web "
check "its label check is the one used" grep -qE "instance $NODE/$(s12 "$id_flap")/$P_FLAP check http GET /health passed 1 time in a row: up" "$LOG"
check "the flap container answers through haproxy" wait_for --timeout 10 grep -q "I'm $(s12 "$id_flap")" "$LOAD"
dk exec flap /usr/local/bin/whoami sick
t_sick=$(now_ns) # /health answers 404 from here (the docker CLI itself may take seconds under load)
check_eq "/health of the flap container now answers 404" 404 "$(http_code "http://127.0.0.1:$P_FLAP/health")"
ms=$(latency_ms r1 "instance $NODE/$(s12 "$id_flap")/$P_FLAP check http GET /health failed 3 times in a row \(last: HTTP 404\): down" "$t_sick" 10) || ms=99999
echo "# failing check: down ${ms} ms after /health turned 404 (interval 500 ms x fall 3 = 1500 ms)" >&2
check "a failing check takes it out within interval x fall + one timeout + 500 ms (${ms} ms)" test "$ms" -le 2300
check "deregistered" wait_for --timeout 5 store_has r1 "^deregister $NODE/$(s12 "$id_flap")/$P_FLAP "

# ---- exec and tcp checks; a dead port; a bad label --------------------------------------------
id_exec=$(run_whoami execc "$P_EXEC" -l regent.service=ex -l 'regent.check=exec:/usr/local/bin/whoami check' \
          -l regent.check.interval=2s -l regent.check.timeout=1500ms)
id_tcp=$(run_whoami tcpc "$P_TCP" --expose "$P_DEAD" -l regent.service.$P_TCP=tc \
         -l regent.service.$P_DEAD=dead -l regent.check=tcp -l regent.check.interval=200ms)
id_bad=$(run_whoami badc "$P_BAD" -l regent.service=bad -l regent.check=ftp:x)
check "exec check (inside the container): registered after 2 passes" \
    wait_for --timeout 15 store_has r1 "^register $NODE/$(s12 "$id_exec")/$P_EXEC ex "
check "exec check logged" grep -qE "instance $NODE/$(s12 "$id_exec")/$P_EXEC check exec \"/usr/local/bin/whoami check\" passed 2 times" "$LOG"
check "tcp check: registered after 2 passes" wait_for --timeout 10 store_has r1 "^register $NODE/$(s12 "$id_tcp")/$P_TCP tc "
sleep 1
check "tcp check on a port nothing listens on: never registered" bash -c "! grep -q ' dead ' '$H_TMP/r1.store'"
check "... and its failure logged (debug)" grep -qE "instance $NODE/$(s12 "$id_tcp")/$P_DEAD check tcp connect failed \(connect: connection refused\); not up yet" "$LOG"
check "a bad check label: the port is refused with a warning" \
    grep -qE "warn: source docker: container badc \($(s12 "$id_bad")\): label regent.check: expected http:<path>, tcp or exec:<command>; port $P_BAD not registered" "$LOG"
dk exec execc /usr/local/bin/whoami sick
check "exec check failing: deregistered" wait_for --timeout 10 store_has r1 "^deregister $NODE/$(s12 "$id_exec")/$P_EXEC "

# ---- weights: a canary at 10 next to 90, one at 0 (haproxy sink, runtime API) -------------
master() { haproxy_master_cmd --sock "$HX/haproxy-master.sock" "$1"; }
reloads() { master "show proc" | awk '$2 == "master" { print $3 }'; }
id_w90=$(run_whoami w90 "$P_W90" -l regent.service=canary -l regent.weight=90)
check "the canary service answers through haproxy" \
    wait_for --timeout 20 bash -c "[[ \"\$(curl -s --noproxy '*' --max-time 2 http://127.0.0.1:$P_CAN/)\" == \"I'm $(s12 "$id_w90")\" ]]"
r0=$(reloads)
id_w10=$(run_whoami w10 "$P_W10" -l regent.service=canary -l regent.weight=10)
id_w0=$(run_whoami w0 "$P_W0" -l regent.service=canary -l regent.weight=0)
check "weight 10 set over the runtime API" wait_for --timeout 10 grep -qE "runtime: .*set server canary/s[0-9]+ weight 10;set server canary/s[0-9]+ state ready" "$LOG"
check "weight 0 set over the runtime API before the server is ready" wait_for --timeout 10 grep -qE "runtime: .*set server canary/s[0-9]+ weight 0;set server canary/s[0-9]+ state ready" "$LOG"
sleep 0.5
check_eq "no reload for the two joins with their weights" "$r0" "$(reloads)"
# One curl for the 400 requests (a process per request cost ~20 s under load): each its own
# connection (Connection: close, as a curl per request had), each bounded by --max-time, each
# answer on its own line (-w), an unanswered one an empty line.
curl -s --noproxy '*' --max-time 2 -H 'Connection: close' -w '\n' \
    "http://127.0.0.1:$P_CAN/?n=[1-400]" > "$H_TMP/canary.txt"
n90=$(grep -c "I'm $(s12 "$id_w90")" "$H_TMP/canary.txt"); n10=$(grep -c "I'm $(s12 "$id_w10")" "$H_TMP/canary.txt")
n0=$(grep -c "I'm $(s12 "$id_w0")" "$H_TMP/canary.txt")
echo "# weights 90/10/0 over 400 requests through haproxy: $n90 / $n10 / $n0" >&2
check_eq "all 400 requests answered by the 90 and the 10" 400 "$((n90 + n10))"
check "the canary at weight 10 got ~10 % (between 5 and 17 %: $n10 of 400)" test "$n10" -ge 20 -a "$n10" -le 68
check_eq "weight 0 drains: no request" 0 "$n0"

# ---- client side: a joining instance of a service with a haproxy check is pending ----------
# The first instance creates the service (a reload; no server of a new service is proven, so
# haproxy starts it up until its checks fail: /nothere answers 404); the second joins over the
# runtime API with its check pending.
pend_code() { curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 "http://127.0.0.1:$P_PEND/"; }
run_whoami pbe1 "$P_PBE" -l regent.service=pend >/dev/null
check "the pend service exists and its first instance failed haproxy's check (503)" \
    wait_for --timeout 20 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 http://127.0.0.1:$P_PEND/) == 503 ]]"
run_whoami pbe2 "$P_PBE2" -l regent.service=pend >/dev/null
check "the second instance joined with its health check pending (health down, not up)" \
    wait_for --timeout 10 grep -qE "runtime: .*set server pend/s[0-9]+ state ready;set server pend/s[0-9]+ health down" "$LOG"
codes=$(for ((i = 0; i < 20; i++)); do pend_code; echo; sleep 0.1; done | sort | uniq -c | paste -sd' ')
echo "# pend (check /nothere always fails): answers over 2 s after the join: $codes" >&2
check_eq "no request reached the joining instance before its haproxy check passed (all 503)" \
    "20 503" "$(echo "$codes" | xargs)"

# ---- the load ------------------------------------------------------------------------------------
touch "$H_TMP/load.stop"; wait "$LOADPID"
total=$(grep -c . "$LOAD"); failed=$(grep -vc '"status": 200' "$LOAD")
echo "# load through haproxy: $total requests, $failed failed" >&2
check "the load ran (more than 100 requests)" test "$total" -gt 100
check_eq "0 failed requests through haproxy during the whole test" 0 "$failed"
dl_finish
