#!/usr/bin/env bash
# tests/drills/hup_together.sh - issue 13: "all backends and the client SIGHUPed together with
# a store-section change, 10 times: 0 refused connections".  Config management rewrites every
# host's [store etcd] section (backoff_max 1s <-> 2s) and SIGHUPs them all at once: each agent
# starts a new store instance beside the old one (make-before-break) and retires the old one once
# the new one answered.  A steady load runs through the client's managed haproxy meanwhile.
#
# Backends: two loopback python http servers, registered by two backend agents (b1, b2) through
# the testsource plugin.  The client runs [store etcd] with debounce = 0 (the harshest case the
# issue names), [sink haproxy] (manage = true) and [sink stats].  ROUNDS (default 10;
# DRILL_SMOKE=1: 3).  Row: DRILL|hup_together|...|requests|failed|-|note.
#
# DRILL_STORE=consul (drill hup_together_consul): the same on the Consul emulator
# (tests/drills/lib.sh), the change being [store consul] wait 5m <-> 4m (a key that leaves the
# registrations as they are: the new instance adopts them through the state file).  Also
# asserted: no register, no deregister and no TTL missed at the agent, no check of the backends
# ever seen critical.  Row: DRILL|hup_together_consul|...
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
drill_init
# shellcheck source=../haproxy/hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"
ROUNDS=${ROUNDS:-10}
[[ "${DRILL_SMOKE:-0}" == 1 ]] && ROUNDS=${ROUNDS_SMOKE:-3}
PY=${PYTHON3:-python3}
# The key each round changes, its two values, and the lines of the client's store section.
if [[ $DRILL_STORE == consul ]]; then
    knob=wait vals=(5m 4m) drill=hup_together_consul
else
    knob=backoff_max vals=(1s 2s) drill=hup_together
fi

drill_store_start hup || exit 1
P1=$(free_port 127.0.0.2)
P2=$(free_port 127.0.0.3)
mkdir -p "$H_TMP/www" && echo hello > "$H_TMP/www/index.html"
daemon_start web1 "$PY" -m http.server --bind 127.0.0.2 --directory "$H_TMP/www" "$P1"
daemon_start web2 "$PY" -m http.server --bind 127.0.0.3 --directory "$H_TMP/www" "$P2"
printf 'b1/w1/80 web 127.0.0.2 %s\n' "$P1" > "$H_TMP/b1.inst"
printf 'b2/w2/80 web 127.0.0.3 %s\n' "$P2" > "$H_TMP/b2.inst"

drill_client_ports
# configs VALUE: every host's config with $knob = VALUE in its store section
configs() {
    local extra=() client=("backoff_initial = 100ms" "backoff_max = $1")
    [[ $DRILL_STORE == consul ]] && extra=("wait = $1") client=("wait = $1")
    drill_agent_config b1 "${extra[@]}"
    drill_agent_config b2 "${extra[@]}"
    sed -i "s/^$knob = .*/$knob = $1/" "$H_TMP/b1.ini" "$H_TMP/b2.ini"
    cat > "$H_TMP/c.ini" <<EOF
[agent]
node = c
debounce = 0
state_dir = $H_TMP/c.state

$(drill_store_section "${client[@]}")

$(drill_client_sinks)
EOF
}
configs "${vals[0]}"
fail=0
for n in b1 b2 c; do
    "$REGENT_BIN" --check-config -c "$H_TMP/$n.ini" -p "$REGENT_PLUGIN_DIR" >/dev/null 2>&1 ||
        { echo "drill: $n.ini does not pass --check-config:" >&2; "$REGENT_BIN" --check-config -c "$H_TMP/$n.ini" -p "$REGENT_PLUGIN_DIR" >&2; exit 1; }
done
agent_start b1
agent_start b2
agent_start c
drill_client_ready

[[ $DRILL_STORE == consul ]] && drill_consul_begin b
drill_load_start "$HP"
sleep 1
took_over() { grep -c "store $DRILL_STORE: the new configuration took over" "$H_TMP/$1.log"; }
done_n=0
for ((i = 1; i <= ROUNDS; i++)); do
    b=${vals[$((i % 2))]}
    t1=$(took_over b1); t2=$(took_over b2); tc=$(took_over c)
    configs "$b"
    kill -HUP "$(daemon_pid b1)" "$(daemon_pid b2)" "$(daemon_pid c)"
    if ! wait_for --timeout 20 eval "[[ \$(took_over b1) -gt $t1 && \$(took_over b2) -gt $t2 && \$(took_over c) -gt $tc ]]"; then
        echo "drill: round $i: not every agent's new store took over" >&2
        fail=1
        break
    fi
    done_n=$i
    sleep 0.5
done
sleep 2
drill_load_stop
read -r total failed refused < <(drill_load_count)
M1=$(hx_master_pid "$H_TMP/haproxy/master.sock")
same=$([[ -n "$M0" && "$M0" == "$M1" ]] && echo yes || echo no)
echo "drill: $done_n rounds, $total requests, $failed failed ($refused refused); haproxy master unchanged=$same" >&2
note="$refused refused; master unchanged=$same"
ok=yes
if [[ $DRILL_STORE == consul ]]; then
    agent=$(drill_consul_end) || ok=no
    note+="; $agent"
    echo "drill: $agent" >&2
fi
echo "DRILL|$drill|backends + client SIGHUPed together, store-section change, ${done_n}x|$total|$failed|-|$note"
[[ $ok == yes && $done_n -eq $ROUNDS && $failed -eq 0 && $total -gt 0 && $same == yes ]] || fail=1
daemon_stop c
daemon_stop b1
daemon_stop b2
exit $fail
