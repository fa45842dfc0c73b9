#!/usr/bin/env bash
# tests/packaging/systemd_shutdown.sh - drill: a host shutting down under a real systemd
# leaves clients' catalogs promptly (issue 20, point 1).
#
# The machine that runs the tests has no systemd as PID 1, so this boots one: systemd 252 as
# PID 1 of a systemd-nspawn container (`-D / --volatile=yes`: the host's /usr read-only, a
# tmpfs root, a prepared copy of /etc) sharing the host's network namespace (loopback only;
# no veth, no bridge; the units that would touch the shared kernel, sysctl, modules, binfmt,
# timesyncd, masked).  Inside it, as on a Debian host: docker.socket, containerd.service and
# docker.service (a drop-in only adds --iptables=false --bridge=none --storage-driver=vfs and
# a second socket the drill drives it through), and regent.service exactly as the build
# renders and installs it (Before=docker.service), enabled, with [source docker] and
# [store etcd] pointing at an etcd the drill runs on the host's loopback (ttl 60 s).
#
#  1. boot, 3 host-network containers (--restart always), their keys in etcd;
#  2. power the container's systemd off (SIGRTMIN+4 to its PID 1: machinectl needs
#     systemd-machined, which needs a systemd host); etcd watched from the host: each key must
#     be deleted no earlier than Docker's `kill` of its container (the stop begins), within
#     BOUND s (default 10) of its `die`, and before the TTL; the order systemd stopped the
#     units in, from the container's persistent journal;
#  3. boot again (regent ordered before Docker; Docker starts the containers by their restart
#     policy): regent started before docker.service began starting (journal), the 3
#     containers registered within 30 s of Docker's start;
#  4. power off again: deregistered again.
#
#   tests/packaging/systemd_shutdown.sh        (root; the build in build/, REGENT_BUILD overrides;
#                                               ctest: packaging_systemd_shutdown)
#
# Prints a table per shutdown; exits 0 if every check passed, 1 if one failed, 77 when this
# machine cannot boot systemd in a container (with the reason), 2 without a build.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${REGENT_BUILD:-${REGENT_BUILD_DIR:-$root/build}}
BOUND=${BOUND:-10}
TTL=60
source "$root/tests/harness/lib.sh"

skip() { echo "SKIPPED: $*"; exit 77; }
[[ $EUID -eq 0 ]] || skip "needs root (systemd-nspawn, dockerd)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
[[ -x /usr/lib/systemd/systemd ]] || skip "no /usr/lib/systemd/systemd to boot"
for u in docker.service docker.socket containerd.service; do
    [[ -f /lib/systemd/system/$u ]] || skip "no /lib/systemd/system/$u (Debian's docker.io and containerd)"
done
[[ -f "$build/CMakeCache.txt" ]] || { echo "no build in $build (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
PREFIX=$(cache_get CMAKE_INSTALL_PREFIX)
CONFIG=$(cache_get REGENT_CONFIG_FILE)
UNITDIR=$(cache_get REGENT_SYSTEMD_UNIT_DIR)
[[ "$PREFIX" == /usr/* && -d "$PREFIX" ]] ||
    skip "the build's prefix $PREFIX is not an existing directory under /usr (bound over the host's /usr in the container)"
[[ "$CONFIG" == "$PREFIX"/* ]] || skip "the build's config file $CONFIG is not under its prefix $PREFIX"

harness_init || exit 1
PY=$H_PY
T=$H_TMP/sd
R=$T/root              # R/etc: the container's /etc
DEST=$T/dest           # cmake --install DESTDIR; DEST$PREFIX is bound on $PREFIX
SOCK=$T/sock/docker.sock
MACHINE=regent-sd-$$
# nspawn runs in a cgroup of its own, CG, in each hierarchy it uses (with --keep-unit it makes
# "supervisor" and "payload" beside itself: without CG they would land in the root cgroup here).
CG=$MACHINE CGH=()
if [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]]; then CGH=(/sys/fs/cgroup)
else
    for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do mountpoint -q "$h" && CGH+=("$h"); done
fi
# On every exit: the harness's cleanup (stops nspawn if still running), then the empty cgroups
# and nspawn's (empty) propagation directory, which it leaves when the host's /run is no tmpfs.
cg_cleanup() {
    local h
    for h in "${CGH[@]}"; do find "$h/$CG" -depth -type d -exec rmdir {} + 2>/dev/null; done
    rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null
    return 0
}
trap 'rc=$?; (exit $rc); h__on_exit; cg_cleanup' EXIT
for h in "${CGH[@]}"; do mkdir "$h/$CG" || { echo "cannot create cgroup $h/$CG" >&2; exit 1; }; done
mkdir -p "$R" "$T/sock" "$T/docker" "$T/containerd" "$T/journal"

# ---- the container's /etc: the host's, with only what a Docker host with regent runs ---------
cp -a /etc "$R/etc"
E=$R/etc/systemd/system
find "$E" -mindepth 1 -maxdepth 1 \( -name '*.wants' -o -name '*.requires' -o -type l \) -exec rm -rf {} +
mkdir -p "$E/multi-user.target.wants" "$E/sockets.target.wants" "$E/docker.service.d"
ln -s /lib/systemd/system/containerd.service "$E/multi-user.target.wants/containerd.service"
ln -s /lib/systemd/system/docker.service "$E/multi-user.target.wants/docker.service"
ln -s /lib/systemd/system/docker.socket "$E/sockets.target.wants/docker.socket"
# The container shares the host's kernel and network namespace: nothing in it may set kernel
# parameters, load modules, register binfmt handlers or set the clock.
for u in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
         proc-sys-fs-binfmt_misc.automount systemd-timesyncd.service systemd-udevd.service \
         systemd-networkd.service systemd-resolved.service console-getty.service; do
    ln -s /dev/null "$E/$u"
done
systemd-id128 new > "$R/etc/machine-id"
rm -f "$R/etc/resolv.conf"
systemd-sysusers --root="$R" "$root/packaging/regent.sysusers" >/dev/null 2>&1
check "sysusers: user regent in the container's /etc/passwd" grep -q '^regent:' "$R/etc/passwd"
# containerd without its CRI plugin (Kubernetes' API: not used by Docker), as the harness runs it
mkdir -p "$R/etc/containerd"
printf '%s\n' 'version = 2' \
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]' \
    > "$R/etc/containerd/config.toml"
cat > "$E/docker.service.d/drill.conf" <<EOF
# systemd_shutdown.sh: Debian's docker.service, without bridge or iptables, on vfs, and also
# on $SOCK (bound from the host) for the drill to drive it.
[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// -H unix:///run/drill/docker.sock --containerd=/run/containerd/containerd.sock --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none --userland-proxy=false --storage-driver=vfs
EOF

# ---- regent: the build installed, its unit as rendered, enabled -------------------------------
if ! DESTDIR=$DEST cmake --install "$build" > "$T/install.log" 2>&1; then
    check "cmake --install into $DEST" false; cat "$T/install.log" >&2; harness_summary; exit 1
fi
cp "$DEST$UNITDIR/regent.service" "$E/regent.service"
check "the unit is the build's (Before=docker.service)" grep -qx 'Before=docker.service' "$E/regent.service"
ln -s ../regent.service "$E/multi-user.target.wants/regent.service"
EP=$(etcd_start e1) || { harness_summary; exit 1; }
cat > "$DEST$CONFIG" <<EOF
[agent]
node = sdshut
host_ip = 127.0.0.1
log_level = debug

[source docker]
socket = /run/docker.sock
allow_loopback = true

[store etcd]
endpoints = $EP
ttl = ${TTL}s
EOF
daemon_start watch "$PY" "$here/etcd_watch.py" "$EP" /backends/
check "etcd watch from the host" wait_for --timeout 20 grep -q WATCHING "$(daemon_log watch)"

# A unified cgroup hierarchy for the container (on this host's hybrid one nspawn mounts the v1
# controllers read-only, and runc cannot create the containers' cgroups); nspawn's default
# capabilities plus CAP_NET_ADMIN (dockerd's default sandbox for host networking needs it, as
# the harness's dockerd on the host has it), still no CAP_SYS_MODULE or CAP_SYS_TIME; /proc/sys
# and /sys read-only; runc's keyctl and bpf (device filter) allowed.
NSPAWN=(sh -c 'for h in "$@"; do [ "$h" = -- ] && break; echo $$ > "$h/cgroup.procs" || exit 1; done
                while [ "$1" != -- ]; do shift; done; shift; exec "$@"' sh "${CGH[@]/%//$CG}" --
        env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D / --volatile=yes
        --machine="$MACHINE" --register=no --keep-unit --console=pipe
        --capability=CAP_NET_ADMIN --system-call-filter='add_key keyctl bpf'
        --bind="$R/etc:/etc" --bind-ro="$DEST$PREFIX:$PREFIX"
        --bind="$T/docker:/var/lib/docker" --bind="$T/containerd:/var/lib/containerd"
        --bind="$T/journal:/var/log/journal" --bind="$T/sock:/run/drill" --boot)

# leader NSPAWN-DAEMON: the container's PID 1 as seen from the host (nspawn's child running
# systemd), printed; fails if there is none.
leader() {
    local np c
    np=$(daemon_pid "$1") || return 1
    daemon_alive "$1" || return 1
    for c in $(cat "/proc/$np/task/$np/children" 2>/dev/null); do
        [[ "$(cat "/proc/$c/comm" 2>/dev/null)" == systemd ]] && { echo "$c"; return 0; }
    done
    return 1
}
# in_ct NSPAWN-DAEMON CMD...: run CMD inside the container (its namespaces)
in_ct() { local l; l=$(leader "$1") || return 1; shift; nsenter -t "$l" -m -u -i -p -- "$@"; }
booted() { [[ "$(in_ct "$1" systemctl is-system-running 2>/dev/null)" =~ ^(running|degraded)$ ]]; }
booted_or_gone() { booted "$1" || ! daemon_alive "$1"; }

boot() {
    local n=$1
    h_log "booting container $n"
    daemon_start "$n" "${NSPAWN[@]}" || return 1
    if ! wait_for --timeout 120 booted_or_gone "$n" || ! booted "$n"; then
        # The first boot failing with nspawn gone: this machine cannot boot systemd in a
        # container (its error is printed); a later boot failing is a failure.
        if [[ "$n" == c1 ]] && ! daemon_alive "$n"; then
            sed 's/^/  | /' "$(daemon_log "$n")"
            skip "systemd-nspawn could not boot systemd here (its output above)"
        fi
        return 1
    fi
}

# poweroff NSPAWN-DAEMON: SIGRTMIN+4 (poweroff) to the container's PID 1, checked to be the
# systemd that our nspawn started; waits for nspawn to exit.  Prints the time (ns).
poweroff() {
    local n=$1 l st
    l=$(leader "$n") || { echo "no leader for $n" >&2; return 1; }
    st=$(h__starttime "$l")
    [[ "$(ps -o ppid= -p "$l" | tr -d ' ')" == "$(daemon_pid "$n")" ]] || return 1
    h_log "powering off container $n (PID 1 is $l on the host)"
    date +%s%N
    h__proc_alive "$l" "$st" && kill -s SIGRTMIN+4 "$l"
    daemon_wait_exit "$n" 120 >/dev/null || { echo "$n did not power off in 120 s" >&2; return 1; }
    h_log "container $n powered off"
    ! h__proc_alive "$l" "$st"
}

nkeys() { h_etcdctl "$EP" get --prefix /backends/ --keys-only | sed '/^$/d' | wc -l; }
nkeys_is() { [[ "$(nkeys)" == "$1" ]]; }
dk() { docker_cmd "$SOCK" "$@"; }

# events BOOT: record Docker's container events ("TIMENANO ACTION ID") from the host through
# the drill's socket, into $H_TMP/evBOOT.log; the recorder ends when dockerd does.
events() {
    daemon_start "ev$1" env "DOCKER_CONFIG=$H_TMP/.h/docker-cli" "$H_DOCKER" -H "unix://$SOCK" \
        events --filter type=container --format '{{.TimeNano}} {{.Action}} {{.ID}}'
}
# ev_ns BOOT ACTION ID AFTER_NS: the time of the first such event
ev_ns() {
    awk -v a="$2" -v id="$3" -v t0="$4" '$2 == a && $3 == id && $1 >= t0 { print $1; exit }' \
        "$(daemon_log "ev$1")"
}
hms() { date -u -d "@${1:0:10}.${1:10:3}" +%T.%3N; }

# report BOOT POWEROFF_NS: table of each container's stop (Docker's kill and die events) against
# its key's deletion (the etcd watch on the host); the checks.
report() {
    local b=$1 t0=$2 i id kill die del dd dp
    printf '\nshutdown %s: power-off (SIGRTMIN+4 to PID 1) sent at %s\n' "$b" "$(hms "$t0")"
    printf '| container | stop begins (kill event) | container died (die event) | key deleted (etcd watch) | deleted - died | deleted - power-off |\n'
    printf '|---|---|---|---|---|---|\n'
    for i in 1 2 3; do
        id=${ID[i]}
        kill=$(ev_ns "$b" kill "$id" "$t0")
        die=$(ev_ns "$b" die "$id" "$t0")
        del=$(awk -v id="/${id:0:12}/" -v t0="$t0" '$2 == "DELETE" && index($3, id) && $1 >= t0 { print $1; exit }' \
              "$(daemon_log watch)")
        if [[ -z "$kill" || -z "$die" || -z "$del" ]]; then
            printf '| w%s %s | %s | %s | %s | - | - |\n' "$i" "${id:0:12}" "${kill:-none}" "${die:-none}" "${del:-not deleted}"
            check "shutdown $b: w$i's kill and die events seen and its key deleted" false
            continue
        fi
        dd=$(( (del - die) / 1000000 )) dp=$(( (del - t0) / 1000000 ))
        printf '| w%s %s | %s | %s | %s | %d ms | %d ms |\n' "$i" "${id:0:12}" \
            "$(hms "$kill")" "$(hms "$die")" "$(hms "$del")" "$dd" "$dp"
        check "shutdown $b: w$i's key deleted after its stop began ($(( (del - kill) / 1000000 )) ms)" test "$del" -ge "$kill"
        check "shutdown $b: w$i's key deleted ${dd} ms after its container died (bound ${BOUND} s)" \
            test "$dd" -le $((BOUND * 1000))
        check "shutdown $b: w$i's key deleted ${dp} ms after power-off, before the TTL (${TTL} s)" \
            test "$dp" -lt $((TTL * 1000))
    done
}

# units BOOT-OFFSET: the container journal's start/stop lines for the units that matter
units() {
    journalctl -D "$T/journal" -b "$1" -o short-iso-precise --no-pager 2>/dev/null |
        grep -E 'systemd\[1\]: (Start|Stopp|Stopped|Closed|Listening)[a-z]* .*(Docker|regent|containerd|docker)'
}
# first_line BOOT-OFFSET REGEX: line number of the first unit line matching REGEX
first_line() { units "$1" | grep -nE "$2" | head -n 1 | cut -d: -f1; }
before() { local a b; a=$(first_line "$1" "$2"); b=$(first_line "$1" "$3"); [[ -n "$a" && -n "$b" && "$a" -lt "$b" ]]; }

# ---- 1. boot, 3 containers, registered ---------------------------------------------------------
t_start=$SECONDS
if ! boot c1; then
    check "boot 1: systemd reached running in the container" false; harness_summary; exit 1
fi
check "boot 1: systemd is PID 1 of the container, running" booted c1
check "boot 1: regent.service active" bash -c "[[ \$(nsenter -t $(leader c1) -m -u -i -p -- systemctl is-active regent.service) == active ]]"
check "boot 1: docker.service active" wait_for --timeout 60 bash -c "[[ \$(nsenter -t $(leader c1) -m -u -i -p -- systemctl is-active docker.service) == active ]]"
if ! wait_for --timeout 60 dk version; then
    check "boot 1: Docker answers on $SOCK" false; harness_summary; exit 1
fi
events 1
image_build_whoami "$SOCK" regent/whoami:1 || { harness_summary; exit 1; }
ID=()
for i in 1 2 3; do
    ID[i]=$(whoami_run "$SOCK" regent/whoami:1 "w$i" 127.0.0.1 "$(free_port 127.0.0.1)" --restart always) ||
        { check "boot 1: container w$i started" false; harness_summary; exit 1; }
done
check "boot 1: the 3 containers registered in etcd" wait_for --timeout 60 nkeys_is 3

# ---- 2. power off ------------------------------------------------------------------------------
t0=$(poweroff c1) || { check "shutdown 1: the container powered off" false; harness_summary; exit 1; }
check "shutdown 1: the container powered off ($(daemon_status c1))" test "$(daemon_status c1)" == "exit 0"
report 1 "$t0"
check "shutdown 1: no key left" nkeys_is 0
echo
echo "shutdown 1: unit stop order (container journal):"
units 0 | sed -n '/Stopping\|Stopped\|Closed/p' | sed 's/^/  /'
check "shutdown 1: docker.service stopped before regent.service began stopping" \
    before 0 'Stopped .*Docker Application' 'Stopping .*regent'
check "shutdown 1: regent logged the 3 deletions" test "$(journalctl -D "$T/journal" -b 0 -u regent.service --no-pager 2>/dev/null | grep -c 'deleted /backends/')" -ge 3

# ---- 3. boot again: regent before Docker, the containers come back and register ----------------
t1=$SECONDS t1ns=$(date +%s%N)
if ! boot c2; then
    check "boot 2: systemd reached running in the container" false; harness_summary; exit 1
fi
check "boot 2: Docker answers on $SOCK" wait_for --timeout 60 dk version
events 2
if wait_for --timeout 90 nkeys_is 3; then
    check "boot 2: the 3 containers (restart always) registered $((SECONDS - t1)) s after the boot began" true
else
    check "boot 2: the 3 containers registered" false
fi
for i in 1 2 3; do
    check "boot 2: w$i's key is its container's (same id)" bash -c \
        "ETCDCTL_API=3 etcdctl --endpoints=$EP get --prefix /backends/ --keys-only | grep -q '/${ID[i]:0:12}/'"
done
echo
echo "boot 2: unit start order (container journal):"
units 0 | sed -n '/Starting\|Started\|Listening/p' | sed 's/^/  /'
check "boot 2: regent.service started before docker.service began starting" \
    before 0 'Started .*regent' 'Starting .*Docker Application'
dstart=$(units 0 | grep -m1 'Starting docker.service' | cut -d' ' -f1)
if [[ -n "$dstart" ]] && dns=$(date -d "$dstart" +%s%N); then
    echo
    echo "boot 2: docker.service began starting (journal) at $(hms "$dns"); keys put (etcd watch):"
    for i in 1 2 3; do
        put=$(awk -v id="/${ID[i]:0:12}/" -v t0="$t1ns" '$2 == "PUT" && index($3, id) && $1 >= t0 { print $1; exit }' \
              "$(daemon_log watch)")
        if [[ -n "$put" ]]; then
            echo "  w$i ${ID[i]:0:12}: $(hms "$put") ($(( (put - dns) / 1000000 )) ms after docker.service began starting)"
            check "boot 2: w$i registered within 30 s of docker.service beginning to start" test $(( (put - dns) / 1000000 )) -le 30000
        else
            check "boot 2: w$i's key put after the boot" false
        fi
    done
else
    check "boot 2: docker.service's start in the container journal" false
fi

# ---- 4. power off again ------------------------------------------------------------------------
t0=$(poweroff c2) || { check "shutdown 2: the container powered off" false; harness_summary; exit 1; }
check "shutdown 2: the container powered off ($(daemon_status c2))" test "$(daemon_status c2)" == "exit 0"
report 2 "$t0"
check "shutdown 2: no key left" nkeys_is 0
echo "drill took $((SECONDS - t_start)) s"
harness_summary
