# shellcheck shell=bash
# tests/etcd/lib.sh: what the etcd plugin's script tests share, on top of tests/harness/lib.sh:
# agents (regent with testsource -> etcd -> testsink), their configs, and checks on etcd's keys
# and on the sink's last snapshot.

# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON3:-python3}
ehelp() { "$PY" "$E_DIR/ehelp.py" "$@"; }

# now: seconds since the epoch with milliseconds
now() { date +%s.%3N; }
# elapsed START: seconds since START, 1 decimal
elapsed() { "$PY" -c "import sys,time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$1"; }
# lt A B: true when A < B (decimals)
lt() { "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

# agent_config NAME ENDPOINTS [extra lines for [store etcd]...]: writes $H_TMP/NAME.ini for an
# agent with node NAME, testsource reading $H_TMP/NAME.inst (if it exists at the time),
# store etcd and a testsink writing $H_TMP/NAME.sink (unless AGENT_NO_SINK=1).  The agent's
# state_dir is $H_TMP/NAME.state.  SIGTERM revokes the lease (deregister_on_stop = true) unless
# AGENT_KEEP=1 (the default behaviour: the lease and its keys outlive a stop).  AGENT_STORE=TEXT
# writes TEXT, another store's section, instead of [store etcd] (tests/drills/lib.sh).
agent_config() {
    local name=$1 eps=$2; shift 2
    local f="$H_TMP/$name.ini" line
    {
        printf '[agent]\nnode = %s\ndebounce = 20ms\nstop_timeout = 4s\nstate_dir = %s\n\n' \
            "$name" "$H_TMP/$name.state"
        if [[ -f "$H_TMP/$name.inst" ]]; then
            printf '[source testsource]\nfile = %s\ninterval = 50ms\n\n' "$H_TMP/$name.inst"
        fi
        if [[ -n "${AGENT_STORE:-}" ]]; then
            printf '%s\n' "$AGENT_STORE"
        else
            printf '[store etcd]\nendpoints = %s\nttl = %s\nbackoff_initial = 100ms\nbackoff_max = 1s\n' \
                "$eps" "${AGENT_TTL:-3}"
            if [[ "${AGENT_KEEP:-0}" != 1 ]]; then printf 'deregister_on_stop = true\n'; fi
        fi
        for line in "$@"; do printf '%s\n' "$line"; done
        if [[ "${AGENT_NO_SINK:-0}" != 1 ]]; then
            printf '\n[sink testsink]\nfile = %s\n' "$H_TMP/$name.sink"
        fi
    } > "$f"
}

# agent_start NAME [regent args...]: runs regent on $H_TMP/NAME.ini as daemon NAME (log
# $H_TMP/NAME.log, debug level).
agent_start() {
    local name=$1; shift
    daemon_start "$name" "${AGENT_WRAP[@]}" "$REGENT_BIN" -c "$H_TMP/$name.ini" \
        -p "$REGENT_PLUGIN_DIR" -L "${AGENT_LOG_LEVEL:-debug}" "$@"
}

agent_log() { cat "$H_TMP/$1.log"; }

# agent_start_as NAME CONFIG [regent args...]: runs regent on $H_TMP/CONFIG.ini as daemon NAME
# (log $H_TMP/NAME.log): a restarted agent under a new daemon name.
agent_start_as() {
    local name=$1 cfg=$2; shift 2
    daemon_start "$name" "${AGENT_WRAP[@]}" "$REGENT_BIN" -c "$H_TMP/$cfg.ini" \
        -p "$REGENT_PLUGIN_DIR" -L "${AGENT_LOG_LEVEL:-debug}" "$@"
}

# agent_gone NAME: not running, seen three times in a row 0.2 s apart (a process exiting on a
# loaded machine can look gone for a moment).
agent_gone() {
    local _
    for _ in 1 2 3; do daemon_alive "$1" && return 1; sleep 0.2; done
    return 0
}

# snapshot NAME: the agent's last catalog snapshot (testsink format)
snapshot() { [[ -f "$H_TMP/$1.sink" ]] && ehelp last "$H_TMP/$1.sink"; }
# has_line NAME REGEX: the last snapshot has a line matching REGEX (grep -E, whole line)
snap_has() { snapshot "$1" | grep -qxE "$2"; }
snap_lacks() { [[ -f "$H_TMP/$1.sink" ]] && grep -q '^end$' "$H_TMP/$1.sink" && ! snapshot "$1" | grep -qxE "$2"; }

# keys EP [PREFIX]: keys under PREFIX (default /backends/), one a line
keys() { h_etcdctl "$1" get --prefix "${2:-/backends/}" --keys-only | sed '/^$/d'; }
key_count() { keys "$@" | wc -l; }
value() { h_etcdctl "$1" get --print-value-only "$2"; }
# nkeys_is EP N [PREFIX]
nkeys_is() { [[ "$(key_count "$1" "${3:-/backends/}")" == "$2" ]]; }
key_exists() { [[ -n "$(h_etcdctl "$1" get --keys-only "$2")" ]]; }
key_absent() { [[ -z "$(h_etcdctl "$1" get --keys-only "$2")" ]]; }
log_has() { grep -qE "$2" "$H_TMP/$1.log"; }

# time_until_count EP PREFIX N TIMEOUT CMD...: runs CMD, then polls etcd every 20 ms (one
# process, no etcdctl start-up per poll) until PREFIX holds N keys; prints the seconds since
# CMD ran.
time_until_count() { ehelp until-count "$@"; }

# finish_agents NAME...: stops the agents still running (SIGTERM) and checks that none of their
# logs holds a sanitizer report (ASan/UBSan/LSan builds print them at exit) or a crash.
finish_agents() {
    local n
    for n in "$@"; do daemon_stop "$n"; done
    for n in "$@"; do
        check "agent $n: no sanitizer report in its log" \
            bash -c "! grep -qE 'Sanitizer|runtime error:' '$H_TMP/$n.log'"
        # the harness collected its exit status (a crash signal already failed the test)
        check "agent $n: exited 0 or was SIGKILLed by the test ($(daemon_status "$n"))" \
            eval '[[ "$(daemon_status "$n")" == "exit 0" || "$(daemon_status "$n")" == "signal 9" ]]'
    done
}
