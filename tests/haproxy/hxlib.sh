# hxlib.sh - shared by the haproxy sink's tests (sourced after tests/harness/lib.sh).
#
# A managed haproxy outlives regent (its own session, keep_running): the harness's process-group
# cleanup no longer reaches it.  hx_track_master SOCK records the master answering on the
# master CLI socket SOCK as a harness daemon (by its pid and start time), so that the harness
# stops it at exit like every daemon the test started, even when the test fails half-way.

# hx_local_sections FILE: the config sections of an agent that feeds itself (testsource reading
# FILE every 10 ms, teststore) into a managed haproxy that stops with it, its file in $HX and
# bound to 127.0.0.1; the [sink haproxy] section is left open for the test's own keys.
hx_local_sections() {
    printf '[source testsource]\nfile = %s\ninterval = 10ms\n\n[store teststore]\n\n' "$1"
    printf '[sink haproxy]\nmanage = true\nkeep_running = false\nconfig_file = %s\nbind_address = 127.0.0.1\n' \
        "$HX/haproxy.cfg"
}

# hx_master_pid SOCK: the master's pid as it reports it, or nothing.
hx_master_pid() {
    haproxy_master_cmd --sock "$1" "show proc" 2>/dev/null | awk '$2 == "master" { print $1; exit }'
}

# hx_worker_pid SOCK: the current worker's pid, or nothing.
hx_worker_pid() {
    haproxy_master_cmd --sock "$1" "show proc" 2>/dev/null |
        awk '/^# workers/ { w = 1; next } /^#/ { w = 0 } w && $2 == "worker" { print $1; exit }'
}

# hx_track_master SOCK: see above; returns 1 when no master answers.
hx_track_master() {
    local pid name d
    pid=$(hx_master_pid "$1")
    [[ -n "$pid" ]] || return 1
    name="haproxy-master-$pid"
    d="$H_TMP/.h/d/$name"
    [[ -d "$d" ]] && return 0
    mkdir -p "$d"
    echo plain > "$d/kind"
    echo "$pid" > "$d/pid"
    h__starttime "$pid" > "$d/start" 2>/dev/null || : > "$d/start"
    echo "(adopted) haproxy master $pid" > "$d/cmd"
    # First in the order file: the harness stops daemons in reverse order, so the regent that
    # would restart it is stopped before it.
    sed -i "1i $name" "$H_TMP/.h/order"
}

# hx_masters_stopped: none of the masters hx_track_master recorded runs any more (a regent with
# keep_running = false stops its haproxy before it exits); names those that still run.
hx_masters_stopped() {
    local d left=""
    for d in "$H_TMP"/.h/d/haproxy-master-*; do
        [[ -d "$d" ]] || continue
        daemon_alive "${d##*/}" && left+=" $(cat "$d/pid")"
    done
    [[ -z "$left" ]] && return 0
    echo "haproxy master(s) still running:$left" >&2
    return 1
}
