#!/bin/bash
# docker_mapping.sh: the docker source against a real dockerd (host networking, loopback):
# containers started before the agent are found; every mapping rule (label, per-port label,
# env, image name, ignore, several ports, udp, tags, meta, registrator's SERVICE_* as labels and
# env, weight); hostile labels are refused with
# one warning and nothing else is affected; instance ids are the same after an agent restart.
set -u
source "$(dirname "$0")/dlib.sh"
dl_init
# The test's ports come from the harness's allocator (never fixed numbers): P<n> keeps the
# number the test was written with as a name; allocated in ascending order so that the
# ports of one container keep their relative order.
mapfile -t _ports < <(for _ in 18200 18201 18202 18203 18204 18205 18206 18207 18208 18209 18210 18211 18212 18213 18214 18215 18216 18217 18218 18219 18220 18221 18222 18223 18224; do free_port; done | sort -n)
_i=0; for _n in 18200 18201 18202 18203 18204 18205 18206 18207 18208 18209 18210 18211 18212 18213 18214 18215 18216 18217 18218 18219 18220 18221 18222 18223 18224; do printf -v "P$_n" '%s' "${_ports[_i]}"; _i=$((_i + 1)); done
[[ ${#_ports[@]} -eq 25 ]] || { check "free ports allocated" false; harness_summary; exit 1; }

# ---- containers that exist before the agent starts ----------------------------------------
id_plain=$(run_whoami plain ${P18200})
id_lbl=$(run_whoami lbl ${P18201} -l regent.service=front -l regent.tags=a,b -l regent.meta.team=core \
         -l regent.meta.owner=ops)
id_pp=$(run_whoami pp ${P18202} --expose ${P18203}/tcp --expose ${P18204}/udp -l regent.service=main \
        -l regent.service.${P18203}=admin)
id_env=$(run_whoami envc ${P18205} --expose ${P18206} -e SERVICE_NAME=envsvc -e SERVICE_${P18206}_NAME=envport \
         -e SERVICE_TAGS=x,y)
dk tag "$IMG" example.com:5000/acme/shop-api:2
id_img=$(whoami_run d1 example.com:5000/acme/shop-api:2 img 127.0.0.1 ${P18207})
id_ign=$(run_whoami ign ${P18208} -l regent.ignore=true)
id_envign=$(run_whoami envign ${P18209} -e SERVICE_IGNORE=1)
id_portign=$(run_whoami portign ${P18210} --expose ${P18211} -l regent.ignore.${P18211}=true)
id_noport=$(dk run -d --network host --name noport -e WHOAMI_PORT=${P18212} "$IMG")
# registrator's variables (docs/docker.md's table): labels and env, per port, attributes, ids.
id_reg1=$(run_whoami reg1 ${P18219} --expose ${P18220} --expose ${P18221} --expose ${P18222} \
          -e SERVICE_NAME=envname -l SERVICE_NAME=lblname -l SERVICE_TAGS=t1 -e SERVICE_REGION=eu \
          -l SERVICE_${P18220}_REGION=us -e SERVICE_${P18220}_NAME=envport -l SERVICE_${P18220}_NAME=lblport \
          -e SERVICE_${P18220}_TAGS=pt -l SERVICE_${P18221}_ID=reg-custom-id \
          -l SERVICE_${P18222}_IGNORE=true -e SERVICE_CHECK_HTTP=/health -l regent.weight=10)
id_reg2=$(run_whoami reg2 ${P18223} -l SERVICE_IGNORE=true -e SERVICE_IGNORE=false)
id_reg3=$(run_whoami reg3 ${P18224} -e SERVICE_ID=reg3-id -e SERVICE_NAME=single -e SERVICE_${P18224}_TAGS=envpt)
id_evil1=$(run_whoami evil1 ${P18213} -l 'regent.service=x/../../y')
id_evil2=$(run_whoami evil2 ${P18214} -l "regent.service=bad
name")
id_evil3=$(run_whoami evil3 ${P18215} -l 'regent.service=a b' -e SERVICE_NAME=fallback)
id_evil4=$(run_whoami evil4 ${P18216} -l 'regent.tags=ok,"quoted",sp ace' -l $'regent.meta.note=a\tb' \
           -l 'regent.meta.fine=yes')

regent_start r1 || { check "regent synced with dockerd" false; harness_summary; exit 1; }
LOG=$(regent_log r1)
s12() { echo "${1:0:12}"; }

# ---- each rule ---------------------------------------------------------------------------
check "image name rule: $IMG -> whoami" \
    store_has r1 "^register $NODE/$(s12 "$id_plain")/${P18200} whoami 127\.0\.0\.1:${P18200}$"
check "label regent.service" store_has r1 "^register $NODE/$(s12 "$id_lbl")/${P18201} front 127\.0\.0\.1:${P18201}$"
check "label regent.tags and regent.meta.*" grep -qE \
    "instance $NODE/$(s12 "$id_lbl")/${P18201} service=front address=127\.0\.0\.1:${P18201}/tcp private_port=${P18201} tags=\[a,b\] meta=\{owner=ops,team=core\}" "$LOG"
check "several ports: the first on regent.service" store_has r1 "^register $NODE/$(s12 "$id_pp")/${P18202} main 127\.0\.0\.1:${P18202}$"
check "per-port label regent.service.${P18203}" store_has r1 "^register $NODE/$(s12 "$id_pp")/${P18203} admin 127\.0\.0\.1:${P18203}$"
check "udp port is its own instance" store_has r1 "^register $NODE/$(s12 "$id_pp")/${P18204}/udp main 127\.0\.0\.1:${P18204}$"
check "udp instance has proto udp" grep -qE "instance $NODE/$(s12 "$id_pp")/${P18204}/udp service=main address=127\.0\.0\.1:${P18204}/udp" "$LOG"
check "env SERVICE_NAME, several ports: <name>-<port>" store_has r1 "^register $NODE/$(s12 "$id_env")/${P18205} envsvc-${P18205} 127\.0\.0\.1:${P18205}$"
check "env SERVICE_<port>_NAME" store_has r1 "^register $NODE/$(s12 "$id_env")/${P18206} envport 127\.0\.0\.1:${P18206}$"
check "env SERVICE_TAGS" grep -qE "instance $NODE/$(s12 "$id_env")/${P18205} service=envsvc-${P18205} .* tags=\[x,y\]" "$LOG"
check "image name without registry, namespace or tag (shop-api)" \
    store_has r1 "^register $NODE/$(s12 "$id_img")/${P18207} shop-api 127\.0\.0\.1:${P18207}$"
check "label regent.ignore=true skips the container" bash -c "! grep -q '$(s12 "$id_ign")' '$H_TMP/r1.store'"
check "env SERVICE_IGNORE skips the container" bash -c "! grep -q '$(s12 "$id_envign")' '$H_TMP/r1.store'"
check "label regent.ignore.<port> skips that port only" bash -c \
    "grep -q '^register $NODE/$(s12 "$id_portign")/${P18210} ' '$H_TMP/r1.store' && ! grep -q '/$(s12 "$id_portign")/${P18211}' '$H_TMP/r1.store'"
check "image name, two ports (one ignored): <image>-<port>" \
    store_has r1 "^register $NODE/$(s12 "$id_portign")/${P18210} whoami-${P18210} 127\.0\.0\.1:${P18210}$"
# registrator's variables
R1=$NODE/$(s12 "$id_reg1")
check "label SERVICE_NAME beats env SERVICE_NAME; several ports: <name>-<port>" \
    store_has r1 "^register $R1/${P18219} lblname-${P18219} 127\.0\.0\.1:${P18219}$"
check "label SERVICE_TAGS; env SERVICE_<attr> and SERVICE_CHECK_HTTP as meta; regent.weight as meta" grep -qE \
    "instance $R1/${P18219} service=lblname-${P18219} .* tags=\[t1\] meta=\{check_http=/health,region=eu,weight=10\}" "$LOG"
check "label SERVICE_<port>_NAME beats env, no -<port> suffix" \
    store_has r1 "^register $R1/${P18220} lblport 127\.0\.0\.1:${P18220}$"
check "env SERVICE_<port>_TAGS beats label SERVICE_TAGS; label SERVICE_<port>_<attr> as meta" grep -qE \
    "instance $R1/${P18220} service=lblport .* tags=\[pt\] meta=\{check_http=/health,region=us,weight=10\}" "$LOG"
check "label SERVICE_<port>_ID is the instance id" \
    store_has r1 "^register reg-custom-id lblname-${P18221} 127\.0\.0\.1:${P18221}$"
check "label SERVICE_<port>_IGNORE skips that port" bash -c "! grep -q ' lblname-${P18222} ' '$H_TMP/r1.store'"
check "label SERVICE_IGNORE (beating env SERVICE_IGNORE=false) skips the container" \
    bash -c "! grep -q '$(s12 "$id_reg2")' '$H_TMP/r1.store'"
check "env SERVICE_ID is the instance id; one port: no suffix" \
    store_has r1 "^register reg3-id single 127\.0\.0\.1:${P18224}$"
check "env SERVICE_<port>_TAGS" grep -qE "instance reg3-id service=single .* tags=\[envpt\]" "$LOG"
check "a container without a port is skipped, logged at debug" \
    grep -qE "debug: source docker: container noport \($(s12 "$id_noport")\): no usable port" "$LOG"
check "no instance for the portless container" bash -c "! grep -q '$(s12 "$id_noport")' '$H_TMP/r1.store'"

# ---- hostile labels ------------------------------------------------------------------------
warns() { grep -cE "warn: source docker: container $1 \($(s12 "$2")\): label regent.service = $3" "$LOG"; }
check_eq "regent.service=x/../../y refused with one warning" 1 "$(warns evil1 "$id_evil1" '"x/\.\./\.\./y" is not a valid service name')"
check_eq "a name with a newline refused with one warning (escaped)" 1 "$(warns evil2 "$id_evil2" '"bad\\x0aname" is not a valid service name')"
check_eq "a name with a space refused with one warning; env is not a fallback" 1 "$(warns evil3 "$id_evil3" '"a b" is not a valid service name')"
for i in "$id_evil1" "$id_evil2" "$id_evil3"; do
    check "hostile container $(s12 "$i") not registered" bash -c "! grep -q '$(s12 "$i")' '$H_TMP/r1.store'"
done
check "bad tags dropped, good tag and good meta kept" grep -qE \
    "instance $NODE/$(s12 "$id_evil4")/${P18216} service=whoami .* tags=\[ok\] meta=\{fine=yes\}" "$LOG"
check "a bad tag is warned about" grep -qE "container evil4 .*tag \"\"quoted\"\" is invalid" "$LOG"
check "a bad meta value is warned about" grep -qE "container evil4 .*label regent.meta.note: invalid meta value" "$LOG"
check "no raw control character reached the log" bash -c "! grep -qP '[\x00-\x08\x0b-\x1f]' '$LOG'"
check "no line of the log was broken by a hostile value" bash -c "! grep -qE '^name\"' '$LOG'"

# Re-inspections (pause/unpause) of a hostile container do not repeat its warning.
dk pause evil1 >/dev/null && dk unpause evil1 >/dev/null
check "waited for: grep -q event unpause container evil1 LOG" wait_for --timeout 5 grep -q "event unpause container evil1" "$LOG"
sleep 0.3
check_eq "still one warning for evil1 after unpause" 1 "$(warns evil1 "$id_evil1" '"x/\.\./\.\./y"')"

# A hostile container started while the agent runs, next to a good one: only the good one.
t0=$(now_ns)
id_evil5=$(run_whoami evil5 ${P18217} -l 'regent.service=../../etc')
id_good=$(run_whoami good ${P18218} -l regent.service=good)
check "a good container started beside a hostile one is registered" \
    wait_for --timeout 5 store_has r1 "^register $NODE/$(s12 "$id_good")/${P18218} good 127\.0\.0\.1:${P18218}$"
check_eq "the hostile one started later: one warning" 1 "$(warns evil5 "$id_evil5" '"\.\./\.\./etc"')"
check "the hostile one started later: not registered" bash -c "! grep -q '$(s12 "$id_evil5")' '$H_TMP/r1.store'"
check "the agent is still running" daemon_alive r1

# ---- the whole local set -------------------------------------------------------------------
expected=$(printf '%s\n' \
    "$NODE/$(s12 "$id_plain")/${P18200}" "$NODE/$(s12 "$id_lbl")/${P18201}" \
    "$NODE/$(s12 "$id_pp")/${P18202}" "$NODE/$(s12 "$id_pp")/${P18203}" "$NODE/$(s12 "$id_pp")/${P18204}/udp" \
    "$NODE/$(s12 "$id_env")/${P18205}" "$NODE/$(s12 "$id_env")/${P18206}" "$NODE/$(s12 "$id_img")/${P18207}" \
    "$NODE/$(s12 "$id_portign")/${P18210}" "$NODE/$(s12 "$id_evil4")/${P18216}" \
    "$NODE/$(s12 "$id_good")/${P18218}" "$R1/${P18219}" "$R1/${P18220}" reg-custom-id reg3-id \
    | LC_ALL=C sort)
check_eq "the local set is exactly what the rules give" "$expected" "$(local_ids r1)"
check "waited for: bash -c [[ (PY DL_DIR/dtool.py sinkset H_TMP/r1.sink) == expected ]]" wait_for --timeout 5 bash -c "[[ \"\$(\"$PY\" \"$DL_DIR/dtool.py\" sinkset \"$H_TMP/r1.sink\")\" == \"$expected\" ]]"
check_eq "the catalog (sink) holds the same set" "$expected" "$(dtool sinkset "$H_TMP/r1.sink")"
check "every service in the catalog has a valid name" bash -c \
    "! grep -E '^  [^ ]' '$H_TMP/r1.sink' | grep -vE '^  [A-Za-z0-9][A-Za-z0-9._-]{0,62} \(' | grep -q ."

# ---- ids are stable across agent restarts --------------------------------------------------
before=$(grep '^register ' "$H_TMP/r1.store" | awk '{print $2, $3, $4}' | LC_ALL=C sort -u)
daemon_stop r1
if daemon_alive r1; then check "regent exited on SIGTERM" false; else check "regent exited on SIGTERM" true; fi
regent_start r2 || check "regent restarted" false
after=$(grep '^register ' "$H_TMP/r2.store" | awk '{print $2, $3, $4}' | LC_ALL=C sort -u)
check_eq "after an agent restart: the same ids, services and addresses" "$before" "$after"
check_eq "and the same local set" "$expected" "$(local_ids r2)"
daemon_stop r2

dl_finish
