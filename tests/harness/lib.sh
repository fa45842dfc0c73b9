# shellcheck shell=bash
# tests/harness/lib.sh: start real etcd, dockerd (+ its own containerd) and haproxy daemons on
# loopback for regent's integration tests, and always stop them again.
#
#   source tests/harness/lib.sh
#   harness_init
#   ep=$(etcd_start e1)          # or: etcd_start e1 >/dev/null; echo "$ETCD_ENDPOINT_e1"
#
# See tests/harness/README.md for the full function list. Everything is bash, plus perl (for
# setpgrp) and python3 (stdlib only, for sockets); no socat. State lives in files under
# $H_TMP/.h so functions also work when called inside $(...).
#
# Rules this file keeps: daemons listen on 127.0.0.0/8 only; every process is stopped by the pid
# recorded when it was started (never by name); dockerd never gets a bridge or iptables rules.

[[ -n "${H_LIB_LOADED:-}" ]] && return 0
H_LIB_LOADED=1

H_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's docker.io client, not whatever `docker` comes first on PATH.
h__first() { local c; for c in "$@"; do if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi; done; echo "$1"; }
H_DOCKER=${H_DOCKER:-$(h__first /usr/bin/docker docker)}
H_PY=${H_PY:-$(h__first /usr/bin/python3 python3)}
H_BUSYBOX=${H_BUSYBOX:-$(h__first /bin/busybox busybox)}
H_STOP_TIMEOUT=${H_STOP_TIMEOUT:-10}

# Arguments for `docker run` that add a Docker HEALTHCHECK to a whoami container.
# shellcheck disable=SC2034
WHOAMI_HEALTH_ARGS=(--health-cmd '/usr/local/bin/whoami check' --health-interval 1s --health-timeout 3s
                    --health-retries 1 --health-start-period 0s)

# ---------------------------------------------------------------------------------------------
# messages, checks

h_log()  { printf '[harness %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
h_die()  { printf '[harness] ERROR: %s\n' "$*" >&2; H_FAILED=1; return 1; }

H_PASS=${H_PASS:-0}
H_FAIL=${H_FAIL:-0}

# check DESC CMD...: run CMD, count and print "ok - DESC" / "not ok - DESC" on stdout; CMD's
# output is shown (stderr, last 20 lines) only when it fails.
check() {
    local desc=$1 out; shift
    out=$(mktemp "${H_TMP:-/tmp}/.check.XXXXXX")
    if "$@" >"$out" 2>&1; then
        H_PASS=$((H_PASS + 1)); printf 'ok - %s\n' "$desc"
    else
        H_FAIL=$((H_FAIL + 1)); H_FAILED=1; printf 'not ok - %s\n' "$desc"
        H_FAILED_CHECKS+="not ok - $desc"$'\n'
        tail -n 20 "$out" | sed 's/^/  | /' >&2
    fi
    rm -f "$out"
    h__times "$desc"
    return 0
}

# H_TIMES=1 (profiling the suite's time): after each check and at the end of each daemon stop,
# a "# t+SECONDS what" line on stderr, SECONDS since harness_init.
h__times() {
    [[ -n "${H_TIMES:-}" && -n "${H_T0:-}" ]] || return 0
    local now=${EPOCHREALTIME/./}
    printf '# t+%d.%03d %s\n' $(((now - H_T0) / 1000000)) $(((now - H_T0) / 1000 % 1000)) "$*" >&2
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
    if [[ "$2" == "$3" ]]; then check "$1" true
    else printf '  expected: %q\n  actual:   %q\n' "$2" "$3" >&2; check "$1" false; fi
}

# check_contains DESC HAYSTACK NEEDLE
check_contains() {
    if [[ "$2" == *"$3"* ]]; then check "$1" true
    else printf '  %q does not contain %q\n' "$2" "$3" >&2; check "$1" false; fi
}

# harness_skip REASON: a part of the test could not run (a missing tool...). The test is then
# reported as skipped, not passed: harness_summary returns 77 (ctest's SKIP_RETURN_CODE) when
# nothing failed. Not for what does not apply to this build (say so with a plain echo).
H_SKIPPED=${H_SKIPPED:-}
harness_skip() {
    printf 'SKIPPED: %s\n' "$*"
    H_SKIPPED+="${H_SKIPPED:+; }$*"
}

# harness_summary: print "N passed, N failed"; returns 1 if anything failed, 77 if something
# was skipped (harness_skip), else 0.
harness_summary() {
    printf '%d passed, %d failed\n' "$H_PASS" "$H_FAIL"
    [[ "$H_FAIL" -eq 0 ]] || return 1
    if [[ -n "$H_SKIPPED" ]]; then printf 'skipped: %s\n' "$H_SKIPPED"; return 77; fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# init, exit trap, cleanup

harness_init() {
    if [[ -n "${H_TMP:-}" && -d "${H_TMP:-}" && "${H_OWNER_PID:-}" == "$BASHPID" ]]; then
        return 0
    fi
    local t
    for t in perl "$H_PY" etcd etcdctl haproxy curl; do
        command -v "$t" >/dev/null || { h_die "harness_init: $t not found"; return 1; }
    done
    [[ $EUID -eq 0 ]] || h_log "warning: not root; dockerd_start will fail"
    H_TMP=$(mktemp -d "${H_TMPDIR:-/tmp}/rh.XXXXXX") || return 1
    chmod 755 "$H_TMP"
    mkdir -p "$H_TMP/.h/d" "$H_TMP/.h/etcd" "$H_TMP/.h/docker-cli"
    : > "$H_TMP/.h/order"
    : > "$H_TMP/.h/ports"
    H_OWNER_PID=$BASHPID
    H_FAILED=0
    H_T0=${EPOCHREALTIME/./}
    export H_TMP
    export ETCDCTL_API=3
    # Everything a test talks to is on loopback: never send it through a proxy (curl, libcurl in
    # regent itself, docker CLI).
    export NO_PROXY='*' no_proxy='*'
    unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
    export DOCKER_CONFIG="$H_TMP/.h/docker-cli"
    # A daemon's fatal messages land in its log: an older glibc wrote its own (malloc's
    # "double free", a failed check of the stack protector...) to the controlling tty, when
    # there was one, unless this is set; Debian 12's glibc 2.36 no longer reads it and always
    # writes them to stderr.
    export LIBC_FATAL_STDERR_=1
    trap 'h__on_exit' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # The watchdog: a test's shell killed without its EXIT trap (ctest's timeout sends SIGKILL)
    # would leave every daemon running, each in a process group of its own.  A process in a
    # session of its own waits for the test's shell to end and, if the cleanup did not run (its
    # $H_TMP is still there), runs it; its log is $H_TMP/.h/watchdog.log until then.  (Its
    # command line names no path under $H_TMP: h__leftovers leaves it alone.)
    local owner=$BASHPID # (expanded in the background job, $BASHPID would be the job's)
    H_WATCH_OWNER=$owner H_WATCH_LIB="$H_LIB_DIR/lib.sh" setsid bash -c '
        while kill -0 "$H_WATCH_OWNER" 2>/dev/null; do sleep 1; done
        [[ -d "$H_TMP/.h" ]] || exit 0
        echo "the test (pid $H_WATCH_OWNER) ended without its cleanup: the watchdog runs it" >&2
        source "$H_WATCH_LIB" && H_OWNER_PID=$BASHPID && harness_cleanup 1' \
        </dev/null >>"$H_TMP/.h/watchdog.log" 2>&1 &
    h_log "H_TMP=$H_TMP"
}

h__on_exit() {
    local rc=$?
    [[ "${H_OWNER_PID:-}" == "$BASHPID" ]] || return 0
    local keep c=""
    keep=$(mktemp "${H_TMPDIR:-/tmp}/rh-crashes.XXXXXX")
    harness_cleanup "$rc" "$keep"
    [[ -s "$keep" ]] && c=$(cat "$keep")
    rm -f "$keep"
    if [[ -n "$c" ]]; then
        printf 'not ok - a daemon the test started crashed:\n%s\n' "$c" | sed '2,$s/^/  | /'
        [[ "$rc" -eq 0 || "$rc" -eq 77 ]] && exit 1
    fi
    return 0
}

# harness_dump_logs [LINES]: tail of every daemon log to stderr.
harness_dump_logs() {
    local n=${1:-40} f
    [[ -d "${H_TMP:-}" ]] || return 0
    for f in "$H_TMP"/*.log; do
        [[ -f "$f" ]] || continue
        printf '\n----- %s (last %d lines) -----\n' "$f" "$n" >&2
        tail -n "$n" "$f" >&2
    done
    printf '%s\n' '----- end of logs -----' >&2
}

# h__leftovers: a process still running with a path under $H_TMP in its command line once every
# daemon the test recorded is stopped was started by this test and nobody stopped it (say, a
# haproxy master regent spawned that the test never tracked with hx_track_master): it is named
# in the log and killed by its pid, so it neither outlives the test nor holds a port the next
# one wants.  Ours: $H_TMP is this run's own mktemp directory, and the command line is read
# again right before the kill (the grep that finds them has the path in its own).
h__leftovers() {
    local f pid cmd
    while read -r f; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        [[ "$pid" =~ ^[0-9]+$ && "$pid" != "$$" && "$pid" != "$BASHPID" ]] || continue
        cmd=$(tr '\0' ' ' < "$f" 2>/dev/null) || continue
        [[ "$cmd" == *"$H_TMP/"* && "$cmd" != grep\ * ]] || continue
        h_log "warning: pid $pid outlived the test, with this test's directory in its command line: ${cmd:0:300}; killed"
        kill -KILL "$pid" 2>/dev/null || true
    done < <(grep -lzF -- "$H_TMP/" /proc/[0-9]*/cmdline 2>/dev/null)
}

# harness_cleanup [RC [CRASHFILE]]: stop every daemon (reverse start order), remove mounts and
# $H_TMP. Runs from the EXIT trap; may also be called by hand (idempotent). The crashes
# recorded (daemons that died of a crash signal) are copied to CRASHFILE before $H_TMP goes.
harness_cleanup() {
    local rc=${1:-0} keep=${2:-} name
    [[ -n "${H_TMP:-}" && -d "$H_TMP/.h" ]] || return 0
    local had_e=0
    [[ $- == *e* ]] && had_e=1
    set +e   # a failing step must not stop the rest of the cleanup
    trap '' INT TERM
    if [[ "$rc" -ne 0 || "${H_FAILED:-0}" -ne 0 || "${H_FAIL:-0}" -ne 0 ]]; then
        h_log "failure (exit $rc): daemon logs follow"
        harness_dump_logs "${H_LOG_LINES:-40}"
        # again after the logs: a CI excerpt shows a failing test's last lines
        [[ -z "${H_FAILED_CHECKS:-}" ]] || printf 'the checks that failed (above, in order):\n%s' "$H_FAILED_CHECKS" >&2
    fi
    local -a names=()
    mapfile -t names < <(tac "$H_TMP/.h/order")
    for name in "${names[@]}"; do
        [[ -n "$name" ]] || continue
        case "$(cat "$H_TMP/.h/d/$name/kind" 2>/dev/null)" in
            dockerd)    h__dockerd_teardown "$name" ;;
            containerd) h__containerd_teardown "$name" ;;
            *)          daemon_stop "$name" ;;
        esac
    done
    for name in "${names[@]}"; do [[ -n "$name" ]] && h__collect "$name" 2; done
    h__leftovers
    h__times "cleanup: every daemon stopped"
    if [[ -s "$H_TMP/.h/crashes" ]]; then
        h_log "crashed: $(paste -sd';' "$H_TMP/.h/crashes")"
        [[ -n "$keep" ]] && cp "$H_TMP/.h/crashes" "$keep"
    fi
    h__umount_all "$H_TMP"
    if [[ -n "${H_KEEP:-}" ]]; then
        h_log "H_KEEP set: keeping $H_TMP"
    else
        rm -rf --one-file-system "$H_TMP" 2>/dev/null ||
            h_log "warning: could not remove all of $H_TMP"
    fi
    trap - INT TERM
    ((had_e)) && set -e
    return 0
}

# unmount everything mounted at or below DIR (deepest first, stacked mounts included).
h__umount_all() {
    local dir=$1 i m
    [[ "$dir" == /*/* ]] || return 0
    for i in 1 2 3 4 5; do
        local -a mps=()
        mapfile -t mps < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' \
                               /proc/self/mountinfo | sort -r)
        [[ ${#mps[@]} -gt 0 ]] || return 0
        for m in "${mps[@]}"; do
            m=$(printf '%b' "$m")   # mountinfo escapes space as \040
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                h_log "warning: cannot unmount $m"
        done
    done
}

# ---------------------------------------------------------------------------------------------
# generic daemons: own process group, log in $H_TMP/NAME.log, pid + start time recorded

h__need_init() { [[ -n "${H_TMP:-}" && -d "$H_TMP/.h" ]] || h_die "call harness_init first"; }

# field 22 (starttime) of /proc/PID/stat, to tell a reused pid apart
h__starttime() {
    local s
    { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
    s=${s##*) }
    # fields after "comm)": state=3 ... starttime=22 -> index 19 in this remainder
    # shellcheck disable=SC2086
    set -- $s
    printf '%s\n' "${20}"
}
h__state() { local s; { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1; s=${s##*) }; printf '%s\n' "${s%% *}"; }

# h__proc_alive PID STARTTIME: running (not a zombie) and the same process. No fork: it runs
# in every wait loop, and a fork costs tens of ms on the loaded machine.
h__proc_alive() {
    local pid=$1 st=$2 s
    [[ -n "$pid" ]] || return 1
    { read -r s < "/proc/$pid/stat"; } 2>/dev/null || return 1
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    [[ -z "$st" || "${20}" == "$st" ]] || return 1
    [[ "$1" != Z ]]
}

# daemon_start NAME CMD...: start CMD in the background in its own process group, stdin
# /dev/null, stdout+stderr appended to $H_TMP/NAME.log. Prints nothing; see daemon_pid.
# A small perl parent stays behind it: it waits for CMD and writes how it ended ("exit N" or
# "signal N") to $H_TMP/.h/d/NAME/status (see daemon_status); a death by a crash signal
# (SEGV, ABRT, BUS, FPE, ILL, TRAP, SYS) fails the test (h__collect), unless it was started
# with H_EXPECT_CRASH=1 in the environment (a test that crashes it on purpose: it checks
# daemon_status itself).
daemon_start() {
    h__need_init || return 1
    local name=$1; shift
    local d="$H_TMP/.h/d/$name" log="$H_TMP/$name.log" pid st
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { h_die "bad daemon name '$name'"; return 1; }
    if daemon_alive "$name"; then h_die "daemon $name already running"; return 1; fi
    mkdir -p "$d"
    h__collect "$name" 2   # the previous run's end, if not collected yet
    rm -f "$d/status" "$d/last_status" "$d/expect_crash"
    [[ -n "${H_EXPECT_CRASH:-}" ]] && : > "$d/expect_crash"
    [[ -f "$d/kind" ]] || echo "${H_KIND:-plain}" > "$d/kind"
    printf '%q ' "$@" > "$d/cmd"
    : > "$d/watched"
    grep -qxF "$name" "$H_TMP/.h/order" || echo "$name" >> "$H_TMP/.h/order"
    printf '===== harness: %(%F %T)T starting: %s\n' -1 "$*" >> "$log"
    # The subshell makes the perl parent a child of init (no job-control noise). perl forks:
    # the child gets its own process group (pgid = its pid, set on both sides of the fork so
    # that a group kill right after start cannot miss it) and execs CMD; the parent prints the
    # child's pid on fd 3 (the $(...) pipe), closes it, and waits to record the exit status.
    pid=$( ( perl -MPOSIX -e '
        my $st = shift @ARGV;
        $SIG{INT} = $SIG{HUP} = $SIG{PIPE} = "IGNORE";
        my $pid = fork();
        die "fork: $!\n" unless defined $pid;
        if ($pid == 0) {
            POSIX::close(3);
            $SIG{INT} = $SIG{HUP} = $SIG{PIPE} = "DEFAULT";
            setpgrp(0, 0);
            exec {$ARGV[0]} @ARGV or die "exec $ARGV[0]: $!\n";
        }
        setpgid($pid, $pid);
        open(my $out, ">&=3") or die "fd 3: $!\n";
        print $out "$pid\n"; close($out); POSIX::close(3);
        waitpid($pid, 0);
        my $s = $?;
        open(my $f, ">", "$st.tmp") or exit 1;
        print $f (($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8)), "\n";
        close($f); rename("$st.tmp", $st);' "$d/status" \
                "$@" 3>&1 >>"$log" 2>&1 </dev/null & ) )
    [[ "$pid" =~ ^[0-9]+$ ]] || { h_die "daemon_start $name: no pid"; return 1; }
    st=$(h__starttime "$pid") || st=""
    echo "$pid" > "$d/pid"
    echo "$st" > "$d/start"
    [[ -n "${H_PID_LOG:-}" ]] && echo "$name $pid $st" >> "$H_PID_LOG"
    return 0
}

# daemon_status NAME: how its last run ended, "exit N" or "signal N" (empty while it runs or
# when it was never started by daemon_start).
daemon_status() {
    local d="$H_TMP/.h/d/$1"
    if [[ -f "$d/status" ]]; then cat "$d/status"; elif [[ -f "$d/last_status" ]]; then cat "$d/last_status"; fi
}

# daemon_wait_exit NAME [TIMEOUT]: wait (default 30 s) until NAME has ended and its status is
# recorded; prints the status ("exit N" / "signal N"); returns 1 on timeout.
daemon_wait_exit() {
    local d="$H_TMP/.h/d/$1" t=${2:-30} i
    for ((i = 0; i < t * 10; i++)); do
        if [[ -f "$d/status" ]]; then cat "$d/status"; return 0; fi
        sleep 0.1
    done
    return 1
}

# crash signals: a daemon that ends by one of these crashed (SIGKILL/SIGTERM are sent by tests)
H_CRASH_SIGNALS=" 4 5 6 7 8 11 31 "

# h__collect NAME [WAIT]: if NAME is gone, wait up to WAIT s (default 5) for its status, keep it
# as last_status; a crash signal is reported as a failed check and recorded in .h/crashes
# (harness_cleanup then fails the test even if the report was made inside a subshell).
h__collect() {
    local name=$1 w=${2:-5} d="$H_TMP/.h/d/$1" s sig i
    [[ -f "$d/pid" ]] || return 0
    daemon_alive "$name" && return 0
    [[ ! -f "$d/status" && -f "$d/last_status" ]] && return 0   # collected already
    # Only daemon_start's perl parent writes a status: a process recorded by hand (an adopted
    # haproxy master, tests/haproxy/hxlib.sh) never gets one, so do not wait for it.
    [[ -f "$d/watched" ]] || return 0
    for ((i = 0; i < w * 10; i++)); do [[ -f "$d/status" ]] && break; sleep 0.1; done
    [[ -f "$d/status" ]] || return 0
    s=$(cat "$d/status"); mv -f "$d/status" "$d/last_status"
    if [[ "$s" == "signal "* ]]; then
        sig=${s#signal }
        if [[ "$H_CRASH_SIGNALS" == *" $sig "* && -f "$d/expect_crash" ]]; then
            h_log "$name (pid $(cat "$d/pid")) died of signal $sig ($(kill -l "$sig" 2>/dev/null)), as the test made it"
        elif [[ "$H_CRASH_SIGNALS" == *" $sig "* ]]; then
            echo "$name (pid $(cat "$d/pid")) died of signal $sig ($(kill -l "$sig" 2>/dev/null))" >> "$H_TMP/.h/crashes"
            H_FAIL=$((H_FAIL + 1)); H_FAILED=1
            printf 'not ok - daemon %s died of SIG%s (a crash)\n' "$name" "$(kill -l "$sig" 2>/dev/null)"
        fi
    fi
    return 0
}

daemon_pid()   { cat "$H_TMP/.h/d/$1/pid" 2>/dev/null; }
daemon_log()   { echo "$H_TMP/$1.log"; }
daemon_alive() {
    local d="$H_TMP/.h/d/$1" pid st=""
    { read -r pid < "$d/pid"; } 2>/dev/null || return 1
    { read -r st < "$d/start"; } 2>/dev/null
    h__proc_alive "$pid" "$st"
}

# daemon_kill NAME [SIGNAL]: send SIGNAL (default KILL) to the daemon's pid (KILL: whole group).
daemon_kill() {
    local name=$1 sig=${2:-KILL} pid
    daemon_alive "$name" || return 0
    pid=$(daemon_pid "$name")
    if [[ "$sig" == KILL || "$sig" == 9 ]]; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    # A killed daemon with many threads (dockerd) can take a while to be gone on a loaded
    # machine: wait for it, so that a restart right after never finds it "already running".
    if [[ "$sig" == KILL || "$sig" == 9 ]]; then
        h__wait_gone "$name" 30 || h_log "warning: $name (pid $pid) still there 30 s after SIGKILL"
        h__collect "$name"
    fi
    return 0
}

h__wait_gone() {
    local name=$1 t=$2 i
    for ((i = 0; i < t * 10; i++)); do
        daemon_alive "$name" || return 0
        sleep 0.1
    done
    return 1
}

# daemon_stop NAME [TIMEOUT]: SIGTERM, wait up to TIMEOUT s (default 10), then SIGKILL the
# process group and the pid. Also kills what is left of its process group. Collects how it
# ended (daemon_status); a death by a crash signal fails the test.
daemon_stop() {
    local name=$1 t=${2:-$H_STOP_TIMEOUT} pid st cur
    pid=$(daemon_pid "$name") || return 0
    if daemon_alive "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! h__wait_gone "$name" "$t"; then
            h_log "$name (pid $pid) ignored SIGTERM for ${t}s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
            h__wait_gone "$name" 30 || h_log "warning: $name (pid $pid) still there"
        fi
    fi
    # Leftovers of its process group (e.g. haproxy workers of a killed master). The group is
    # ours only while no other process holds the pid (the kernel does not reuse a pid that is
    # still a process group id; a stranger that got the pid after the group emptied has another
    # start time): check the start time before the group kill.
    if [[ -n "$pid" ]] && kill -0 -- "-$pid" 2>/dev/null; then
        st=$(cat "$H_TMP/.h/d/$name/start" 2>/dev/null)
        if ! cur=$(h__starttime "$pid") || [[ -z "$st" || "$cur" == "$st" ]]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    h__collect "$name"
    h__times "stopped $name"
    return 0
}

# daemon_restart NAME: stop it, then start the same command again.
daemon_restart() {
    local name=$1 cmd
    cmd=$(cat "$H_TMP/.h/d/$name/cmd") || { h_die "unknown daemon $name"; return 1; }
    daemon_stop "$name"
    h__wait_gone "$name" 30 || h_log "warning: $name still there before its restart"
    eval "daemon_start $(printf '%q' "$name") $cmd"
}

# ---------------------------------------------------------------------------------------------
# waiting, ports

# wait_for [--timeout S] CMD... [--timeout S]: run CMD every 0.2 s until it succeeds
# (default timeout 30 s). On timeout prints CMD's last output to stderr and returns 1.
wait_for() {
    local timeout=30 out
    if [[ "${1:-}" == --timeout ]]; then timeout=$2; shift 2; fi
    if [[ $# -ge 2 && "${*: -2:1}" == --timeout ]]; then
        timeout=${*: -1}; set -- "${@:1:$#-2}"
    fi
    [[ $# -gt 0 ]] || { h_die "wait_for: no command"; return 1; }
    out=$(mktemp "${H_TMP:-/tmp}/.wait.XXXXXX")
    local deadline=$((SECONDS + timeout))
    while :; do
        if "$@" >"$out" 2>&1; then rm -f "$out"; return 0; fi
        if ((SECONDS >= deadline)); then
            h_log "wait_for: timed out after ${timeout}s: $*"
            tail -n 5 "$out" >&2
            rm -f "$out"
            return 1
        fi
        sleep 0.2
    done
}

# free_port [ADDR]: a TCP port that is free on ADDR (default 127.0.0.1), in 20000-32000, never
# handed out twice by this harness.
free_port() {
    h__need_init || return 1
    perl "$H_LIB_DIR/hutil.pl" free-port "${1:-127.0.0.1}" "$H_TMP/.h/ports"
}
# free_ports N [ADDR]: N such ports, one a line (one call, one lock: a fleet's listen ports).
free_ports() {
    h__need_init || return 1
    perl "$H_LIB_DIR/hutil.pl" free-port "${2:-127.0.0.1}" "$H_TMP/.h/ports" "$1"
}

h__varname() { local v=${1//[^A-Za-z0-9_]/_}; printf '%s\n' "$v"; }

# loop_wakeups PID SECS: how many times a second the main thread of PID (regent's event loop)
# slept and woke over SECS seconds: its voluntary context switches, one for each epoll_wait that
# slept (a timer or an event ended it).  A count, not a time: it does not depend on the load.
loop_wakeups() {
    local f="/proc/$1/task/$1/status" a b
    a=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$f") || return 1
    sleep "$2"
    b=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$f") || return 1
    awk -v a="$a" -v b="$b" -v s="$2" 'BEGIN { printf "%.2f\n", (b - a) / s }'
}

# http_get URL: body of a GET (curl, 5 s timeout, fails on HTTP errors).
http_get()  { curl -sS --fail --noproxy '*' -m 5 "$1"; }
# http_code URL: the HTTP status code (000 if no answer).
http_code() { curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -m 5 "$1"; }

# ---------------------------------------------------------------------------------------------
# etcd (etcd-server 3.4): members are daemons named etcd-NAME, data in $H_TMP/etcd-NAME

# h_etcdctl ENDPOINTS ARGS...: etcdctl v3 with short timeouts (and root credentials when
# etcd_enable_auth was used on that cluster and no --user is given).
h_etcdctl() {
    local eps=$1; shift
    local -a auth=()
    local a f
    if [[ " $* " != *" --user"* ]]; then
        for f in "$H_TMP"/.h/etcd/*.auth; do
            [[ -f "$f" ]] || continue
            a=${f##*/}; a=${a%.auth}
            if grep -qxF -f <(tr ',' '\n' <<<"$eps") "$H_TMP/.h/etcd/$a.endpoints" 2>/dev/null; then
                auth=(--user "$(cat "$f")"); break
            fi
        done
    fi
    ETCDCTL_API=3 etcdctl --endpoints="$eps" --dial-timeout=2s --command-timeout=5s \
        "${auth[@]}" "$@"
}

etcd_endpoint() { sed 's#^#http://127.0.0.1:#' "$H_TMP/.h/etcd/$1.client" 2>/dev/null; }

# etcd_healthy ENDPOINT: etcdctl endpoint health
etcd_healthy() { h_etcdctl "$1" endpoint health >/dev/null 2>&1; }

# h__etcd_launch NAME CLUSTER_ID INITIAL_CLUSTER [extra etcd args]
h__etcd_launch() {
    local name=$1 cid=$2 initial=$3; shift 3
    local m="$H_TMP/.h/etcd/$name" c p
    c=$(cat "$m.client"); p=$(cat "$m.peer")
    # drop the caller's ETCD_* variables (e.g. our own ETCD_ENDPOINT_x): etcd reads ETCD_* as flags
    local -a unset=()
    local v
    for v in $(compgen -e | grep '^ETCD_'); do unset+=(-u "$v"); done
    H_KIND=etcd daemon_start "etcd-$name" env "${unset[@]}" etcd \
        --name "$name" --data-dir "$H_TMP/etcd-$name" --logger zap \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$initial" --initial-cluster-state new \
        --initial-cluster-token "rh-$cid" "$@"
}

h__etcd_export() {
    local name=$1 ep
    ep=$(etcd_endpoint "$name")
    export "ETCD_ENDPOINT_$(h__varname "$name")=$ep"
}

h__etcd_wait() {
    local name=$1 t=${2:-30}
    if ! wait_for --timeout "$t" etcd_healthy "$(etcd_endpoint "$name")"; then
        h_die "etcd member $name did not become healthy; log: $H_TMP/etcd-$name.log"
        tail -n 20 "$H_TMP/etcd-$name.log" >&2
        return 1
    fi
}

# etcd_start NAME [extra etcd args...]: one-member cluster on 127.0.0.1 with free client/peer
# ports; waits for `etcdctl endpoint health`; exports ETCD_ENDPOINT_<NAME> and prints it.
etcd_start() {
    h__need_init || return 1
    local name=$1; shift
    local m="$H_TMP/.h/etcd/$name"
    [[ -f "$m.client" ]] && { h_die "etcd $name exists (use etcd_restart)"; return 1; }
    free_port 127.0.0.1 > "$m.client" && free_port 127.0.0.1 > "$m.peer" || return 1
    echo "$name" > "$m.cluster"
    etcd_endpoint "$name" > "$H_TMP/.h/etcd/$name.endpoints"
    h__etcd_launch "$name" "$name" "$name=http://127.0.0.1:$(cat "$m.peer")" "$@" || return 1
    h__etcd_wait "$name" || return 1
    h__etcd_export "$name"
    etcd_endpoint "$name"
}

# etcd_cluster_start N [PREFIX] [extra etcd args...]: N members PREFIX1..PREFIXN (PREFIX
# default "c"), all on 127.0.0.1 with distinct ports. Exports ETCD_ENDPOINT_<member> for each
# and ETCD_CLUSTER_ENDPOINTS; prints the comma-separated client endpoints.
etcd_cluster_start() {
    h__need_init || return 1
    local n=$1 prefix=${2:-c} i name initial="" eps=""
    shift; [[ $# -gt 0 ]] && shift
    local -a names=()
    for ((i = 1; i <= n; i++)); do
        name="$prefix$i"; names+=("$name")
        [[ -f "$H_TMP/.h/etcd/$name.client" ]] && { h_die "etcd $name exists"; return 1; }
        free_port 127.0.0.1 > "$H_TMP/.h/etcd/$name.client" &&
            free_port 127.0.0.1 > "$H_TMP/.h/etcd/$name.peer" || return 1
        initial+="${initial:+,}$name=http://127.0.0.1:$(cat "$H_TMP/.h/etcd/$name.peer")"
        eps+="${eps:+,}$(etcd_endpoint "$name")"
    done
    echo "$eps" | tr ',' '\n' > "$H_TMP/.h/etcd/$prefix.endpoints"
    for name in "${names[@]}"; do
        echo "$prefix" > "$H_TMP/.h/etcd/$name.cluster"
        h__etcd_launch "$name" "$prefix" "$initial" "$@" || return 1
    done
    for name in "${names[@]}"; do
        h__etcd_wait "$name" 60 || return 1
        h__etcd_export "$name"
    done
    export ETCD_CLUSTER_ENDPOINTS="$eps"
    echo "$eps"
}

# etcd_cluster_endpoints PREFIX: comma-separated endpoints of that cluster (or single member)
etcd_cluster_endpoints() { paste -sd, "$H_TMP/.h/etcd/$1.endpoints"; }

# etcd_leader ENDPOINTS: the member NAME that is leader now
etcd_leader() {
    local ep f
    # a dead member makes etcdctl fail but it still reports the live ones
    ep=$({ h_etcdctl "$1" endpoint status -w json 2>/dev/null || true; } |
            "$H_PY" "$H_LIB_DIR/hutil.py" etcd-leader) || return 1
    for f in "$H_TMP"/.h/etcd/*.client; do
        if [[ "http://127.0.0.1:$(cat "$f")" == "$ep" ]]; then
            f=${f##*/}; echo "${f%.client}"; return 0
        fi
    done
    return 1
}

etcd_stop() { daemon_stop "etcd-$1"; }
etcd_kill() { daemon_kill "etcd-$1" KILL; }
etcd_alive() { daemon_alive "etcd-$1"; }

# etcd_restart NAME [--no-wait]: restart with the same data dir and ports; waits for health
# unless --no-wait (a lone member of a cluster that lost quorum never becomes healthy).
etcd_restart() {
    daemon_restart "etcd-$1" || return 1
    [[ "${2:-}" == --no-wait ]] && return 0
    h__etcd_wait "$1"
}

# etcd_enable_auth ENDPOINT USER PASS [ROOT_PASS]: create user root (password ROOT_PASS,
# default "root-pw") with role root, role USER with readwrite on every key, user USER:PASS
# with that role, then `auth enable`. h_etcdctl then uses root's credentials on that cluster.
etcd_enable_auth() {
    local ep=$1 user=$2 pass=$3 rootpw=${4:-root-pw} cl m
    (
        set -e
        h_etcdctl "$ep" user add "root:$rootpw"
        h_etcdctl "$ep" role add root
        h_etcdctl "$ep" user grant-role root root
        if [[ "$user" != root ]]; then
            h_etcdctl "$ep" role add "$user"
            h_etcdctl "$ep" role grant-permission "$user" --from-key readwrite ''
            h_etcdctl "$ep" user add "$user:$pass"
            h_etcdctl "$ep" user grant-role "$user" "$user"
        fi
        h_etcdctl "$ep" auth enable
    ) >&2 || { h_die "etcd_enable_auth $ep failed"; return 1; }
    # remember root's credentials for the cluster this endpoint belongs to
    for m in "$H_TMP"/.h/etcd/*.client; do
        if [[ "http://127.0.0.1:$(cat "$m")" == "${ep%%,*}" ]]; then
            cl=$(cat "${m%.client}.cluster")
            echo "root:$rootpw" > "$H_TMP/.h/etcd/$cl.auth"
        fi
    done
    return 0
}

# ---------------------------------------------------------------------------------------------
# dockerd (docker.io 20.10) with its own containerd, both private to $H_TMP/NAME

# docker_sock NAME|SOCKET: the socket path (a name maps to $H_TMP/NAME/docker.sock)
docker_sock() { if [[ "$1" == */* ]]; then echo "$1"; else echo "$H_TMP/$1/docker.sock"; fi; }

# docker_cmd NAME|SOCKET ARGS...: Debian's docker CLI against that daemon.
docker_cmd() {
    local s; s=$(docker_sock "$1"); shift
    DOCKER_CONFIG="$H_TMP/.h/docker-cli" "$H_DOCKER" -H "unix://$s" "$@"
}

h__containerd_config() {
    local c=$1
    cat <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$c/opt"
EOF
}

# dockerd_start NAME [extra dockerd args...]: a private containerd (daemon containerd-NAME)
# and dockerd (daemon dockerd-NAME): no bridge, no iptables, vfs, everything under $H_TMP/NAME.
# Waits for `docker version`; exports DOCKER_SOCK_<NAME>, prints the socket path.
# Containers must be run with --network host. Extra args, e.g. --live-restore, are kept for
# dockerd_restart.
dockerd_start() {
    h__need_init || return 1
    local name=$1; shift
    local d="$H_TMP/$name" c="$H_TMP/$name/containerd"
    [[ $EUID -eq 0 ]] || { h_die "dockerd_start needs root"; return 1; }
    [[ -e "$d" ]] && { h_die "dockerd $name exists (use dockerd_restart)"; return 1; }
    mkdir -p "$c" "$d/data" "$d/exec"
    h__containerd_config "$c" > "$c/config.toml"
    [[ -d /run/containerd/s ]] || echo 1 > "$d/created-run-containerd-s"
    H_KIND=containerd daemon_start "containerd-$name" containerd --config "$c/config.toml" || return 1
    if ! wait_for --timeout 30 test -S "$c/containerd.sock"; then
        h_die "containerd-$name did not start"; tail -n 20 "$H_TMP/containerd-$name.log" >&2; return 1
    fi
    # key.json would otherwise go to /etc/docker; --config-file keeps /etc/docker/daemon.json out.
    printf '{"deprecated-key-path": "%s"}\n' "$d/key.json" > "$d/daemon.json"
    H_KIND=dockerd daemon_start "dockerd-$name" dockerd \
        --config-file "$d/daemon.json" \
        --containerd "$c/containerd.sock" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --bridge=none --userland-proxy=false --storage-driver=vfs \
        --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        --shutdown-timeout 5 \
        -H "unix://$d/docker.sock" "$@" || return 1
    h__dockerd_wait "$name" || return 1
    export "DOCKER_SOCK_$(h__varname "$name")=$d/docker.sock"
    echo "$d/docker.sock"
}

h__dockerd_wait() {
    local name=$1
    if ! wait_for --timeout 60 docker_cmd "$name" version; then
        h_die "dockerd-$name did not answer; log: $H_TMP/dockerd-$name.log"
        tail -n 20 "$H_TMP/dockerd-$name.log" >&2
        return 1
    fi
}

# dockerd_stop NAME: SIGTERM dockerd (it stops the containers unless --live-restore); its
# containerd keeps running so that dockerd_restart / live-restore work.
dockerd_stop() { daemon_stop "dockerd-$1" 20; }
# dockerd_kill NAME: SIGKILL dockerd only (containers keep running under their shims).
dockerd_kill() { daemon_kill "dockerd-$1" KILL; }
# dockerd_destroy NAME: what the exit trap does: kill its containers, stop dockerd and its
# containerd, kill leftover shims, remove their sockets and every mount under $H_TMP/NAME.
dockerd_destroy() {
    h__dockerd_teardown "dockerd-$1"
    h__containerd_teardown "containerd-$1"
}
# dockerd_restart NAME: same data root, same args.
dockerd_restart() {
    daemon_stop "dockerd-$1" 20
    daemon_restart "dockerd-$1" || return 1
    h__dockerd_wait "$1"
}

# teardown of dockerd-NAME: kill its containers fast, then stop dockerd
h__dockerd_teardown() {
    local dn=$1 name=${1#dockerd-} ids
    local -a dk=(env "DOCKER_CONFIG=$H_TMP/.h/docker-cli" "$H_DOCKER" -H "unix://$(docker_sock "$name")")
    if daemon_alive "$dn"; then
        ids=$(timeout 10 "${dk[@]}" ps -q 2>/dev/null)
        # shellcheck disable=SC2086
        [[ -n "$ids" ]] && timeout 20 "${dk[@]}" kill $ids >/dev/null 2>&1
    fi
    daemon_stop "$dn" 20
}

# teardown of containerd-NAME: container inits, containerd, then its shims (found by the
# unique -address of this containerd in their command line: shims record no pid file), shim
# sockets in /run/containerd/s, and mounts under $H_TMP/NAME.
h__containerd_teardown() {
    local cn=$1 name=${1#containerd-}
    local c="$H_TMP/$name/containerd" f pid sock
    local tasks="$c/state/io.containerd.runtime.v2.task"
    for f in "$tasks"/*/*/init.pid; do
        [[ -f "$f" ]] || continue
        pid=$(cat "$f")
        if [[ -n "$pid" ]] && grep -q "$(basename "$(dirname "$f")")" "/proc/$pid/cgroup" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    daemon_stop "$cn"
    sock="$c/containerd.sock"
    # The shims: every process with the socket path as one of its arguments (one grep over all
    # the cmdlines, NUL-separated arguments as records: a fork per process took 15 s at load 7).
    while read -r f; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        [[ -n "${H_PID_LOG:-}" ]] && echo "shim $pid $(h__starttime "$pid")" >> "$H_PID_LOG"
        kill -KILL "$pid" 2>/dev/null || true
    done < <(grep -lzxF -- "$sock" /proc/[0-9]*/cmdline 2>/dev/null)
    for f in "$tasks"/*/*/address; do
        [[ -f "$f" ]] || continue
        sock=$(sed -n 's#^unix://\(/run/containerd/s/[0-9a-f]\{64\}\)$#\1#p' "$f")
        [[ -n "$sock" ]] && rm -f "$sock"
    done
    if [[ -f "$H_TMP/$name/created-run-containerd-s" ]]; then
        rmdir /run/containerd/s /run/containerd 2>/dev/null
    fi
    h__umount_all "$H_TMP/$name"
    return 0
}

# ---------------------------------------------------------------------------------------------
# images (no registry): docker import of a busybox-static rootfs

# h__busybox_rootfs DIR: /bin/busybox, every applet as a symlink, minimal /etc
h__busybox_rootfs() {
    local r=$1 l
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,tmp,root,var/run,www}
    chmod 1777 "$r/tmp"
    cp "$H_BUSYBOX" "$r/bin/busybox"
    for l in $("$H_BUSYBOX" --list-full); do
        [[ "$l" == bin/busybox || -e "$r/$l" || -L "$r/$l" ]] && continue
        ln -s /bin/busybox "$r/$l"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
        > "$r/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' > "$r/etc/group"
}

# h__import NAME|SOCKET TAG ROOTFS [--change ARGS...]
h__import() {
    local s=$1 tag=$2 r=$3; shift 3
    tar --numeric-owner --owner=0 --group=0 -C "$r" -cf - . |
        docker_cmd "$s" import "$@" - "$tag" >/dev/null
}

# image_build_busybox NAME|SOCKET TAG: busybox image, default command /bin/sh.
image_build_busybox() {
    local s=$1 tag=$2 r
    r=$(mktemp -d "$H_TMP/.h/rootfs.XXXXXX")
    h__busybox_rootfs "$r"
    h__import "$s" "$tag" "$r" --change 'CMD ["/bin/sh"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' ||
        { rm -rf "$r"; h_die "image_build_busybox $tag failed"; return 1; }
    rm -rf "$r"
}

# image_build_whoami NAME|SOCKET TAG [--change 'INSTR' ...]: busybox + whoami.sh as
# /usr/local/bin/whoami; CMD runs it on $WHOAMI_ADDR:$WHOAMI_PORT (default 127.0.0.1:8000).
# Extra --change args (EXPOSE, LABEL, ENV...) go to `docker import`. Tag it as you like,
# e.g. jwilder/whoami:latest for image-name rules.
image_build_whoami() {
    local s=$1 tag=$2 r; shift 2
    r=$(mktemp -d "$H_TMP/.h/rootfs.XXXXXX")
    h__busybox_rootfs "$r"
    rm -f "$r/usr/bin/whoami"   # busybox's own whoami applet
    install -m 755 "$H_LIB_DIR/whoami.sh" "$r/usr/local/bin/whoami"
    h__import "$s" "$tag" "$r" \
        --change 'CMD ["/usr/local/bin/whoami"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV WHOAMI_ADDR=127.0.0.1' --change 'ENV WHOAMI_PORT=8000' "$@" ||
        { rm -rf "$r"; h_die "image_build_whoami $tag failed"; return 1; }
    rm -rf "$r"
}

# whoami_run NAME|SOCKET IMAGE CNAME ADDR PORT [docker run args...]: run a whoami container on
# the host network serving ADDR:PORT (ADDR in 127.0.0.0/8), with --expose PORT; waits until
# GET / answers and prints the full container id.
whoami_run() {
    local s=$1 image=$2 cname=$3 addr=$4 port=$5; shift 5
    [[ "$addr" == 127.* ]] || { h_die "whoami_run: $addr is not a loopback address"; return 1; }
    local id
    id=$(docker_cmd "$s" run -d --network host --name "$cname" \
            -e "WHOAMI_ADDR=$addr" -e "WHOAMI_PORT=$port" --expose "$port/tcp" \
            "$@" "$image") || { h_die "whoami_run $cname failed"; return 1; }
    if [[ -n "${H_PID_LOG:-}" ]]; then
        local p; p=$(docker_cmd "$s" inspect -f '{{.State.Pid}}' "$id" 2>/dev/null)
        [[ -n "$p" && "$p" != 0 ]] && echo "container-$cname $p $(h__starttime "$p")" >> "$H_PID_LOG"
    fi
    # Ready when *this* container answers (its id in the body): a foreign listener on the port
    # would answer too, and must not pass for it.
    wait_for --timeout 20 h__whoami_is "$addr" "$port" "${id:0:12}" ||
        { h_die "whoami $cname not answering on $addr:$port (or another listener holds it)"; return 1; }
    echo "$id"
}
h__whoami_is() { [[ "$(http_get "http://$1:$2/")" == "I'm $3" ]]; }

# container_health NAME|SOCKET CONTAINER: healthy|unhealthy|starting (empty: no healthcheck)
container_health() {
    docker_cmd "$1" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$2"
}
# container_wait_health NAME|SOCKET CONTAINER STATUS [TIMEOUT]
container_wait_health() {
    wait_for --timeout "${4:-30}" h__health_is "$1" "$2" "$3"
}
h__health_is() { [[ "$(container_health "$1" "$2")" == "$3" ]]; }

# ---------------------------------------------------------------------------------------------
# haproxy 2.6 in master-worker mode (foreground master: the harness holds its pid)

# haproxy_start_master [--name N] CFG... [-- extra haproxy args]: daemon N (default haproxy),
# master CLI $H_TMP/N-master.sock, pidfile $H_TMP/N.pid, log $H_TMP/N.log. Waits until the
# master answers `show proc` with a worker; exports HAPROXY_MASTER_SOCK and HAPROXY_PID.
haproxy_start_master() {
    h__need_init || return 1
    local name=haproxy
    if [[ "${1:-}" == --name ]]; then name=$2; shift 2; fi
    local -a files=() extra=()
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == -- ]]; then shift; extra=("$@"); break; fi
        files+=(-f "$1"); shift
    done
    local sock="$H_TMP/$name-master.sock"
    if ! haproxy -c -q "${files[@]}" >&2; then h_die "haproxy config check failed"; return 1; fi
    H_KIND=haproxy daemon_start "$name" haproxy -W -S "$sock" "${files[@]}" -p "$H_TMP/$name.pid" \
        "${extra[@]}" || return 1
    if ! wait_for --timeout 20 h__haproxy_has_worker "$sock"; then
        h_die "haproxy $name master not ready"; tail -n 20 "$H_TMP/$name.log" >&2; return 1
    fi
    export HAPROXY_MASTER_SOCK="$sock"
    HAPROXY_PID=$(daemon_pid "$name"); export HAPROXY_PID
    echo "$sock"
}

h__haproxy_has_worker() {
    local out
    out=$(h__unix_cmd "$1" "show proc") || return 1
    grep -qE '^[0-9]+ +worker' <<<"$out"
}

h__unix_cmd() { perl "$H_LIB_DIR/hutil.pl" unix-cmd "$1" "$2" "${3:-10}"; }

# haproxy_master_cmd [--name N | --sock PATH] "CMD[;CMD...]": master CLI (e.g. "show proc",
# "reload", "@1 show stat"), prints the answer.
haproxy_master_cmd() {
    local sock="$H_TMP/haproxy-master.sock"
    if [[ "${1:-}" == --name ]]; then sock="$H_TMP/$2-master.sock"; shift 2
    elif [[ "${1:-}" == --sock ]]; then sock=$2; shift 2; fi
    h__unix_cmd "$sock" "$1"
}

# haproxy_admin_cmd SOCKET "CMD": a `stats socket ... level admin` of a worker.
haproxy_admin_cmd() { h__unix_cmd "$1" "$2"; }

# haproxy_reload [NAME]: "reload" on the master CLI, wait until the reload count went up and
# a worker runs; returns 1 if the reload failed (old worker kept).
haproxy_reload() {
    local name=${1:-haproxy} sock before
    sock="$H_TMP/$name-master.sock"
    before=$(h__haproxy_reloads "$sock")
    h__unix_cmd "$sock" reload >/dev/null || return 1
    wait_for --timeout 20 h__haproxy_reloaded "$sock" "$before" || return 1
    ! h__unix_cmd "$sock" "show proc" | grep -qE '^[0-9]+ +master .*\[failed: [1-9]'
}
h__haproxy_reloads() { h__unix_cmd "$1" "show proc" | awk '$2 == "master" { print $3 }'; }
h__haproxy_reloaded() {
    local n; n=$(h__haproxy_reloads "$1") || return 1
    [[ -n "$n" && "$n" -gt "$2" ]] && h__haproxy_has_worker "$1"
}

haproxy_stop() { daemon_stop "${1:-haproxy}"; }
