#!/usr/bin/env bash
# systemd_test.sh - the installed systemd unit (its settings, and
# `systemd-analyze verify`), the sysusers.d entry (applied to a scratch
# root), and regent's sd_notify protocol against a stand-in notification
# socket: READY=1 once the plugins have started, STATUS= summaries,
# RELOADING=1 with MONOTONIC_USEC= then READY=1 around SIGHUP (also for a
# refused config), STOPPING=1 on SIGTERM; path and abstract sockets.
set -u
source "$(dirname "$0")/lib.sh"
PY=${PYTHON3:-python3}
R=$T/root
install_destdir "$R"; rc=$?
check "cmake --install into a DESTDIR" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { cat "$T/install.log"; summary; exit 1; }
UNIT=$R$(cache_get REGENT_SYSTEMD_UNIT_DIR)/regent.service
SYSUSERS=$R$(cache_get REGENT_SYSUSERS_DIR)/regent.conf
BIN=$R$PREFIX/sbin/regent
CONFIG=$(cache_get REGENT_CONFIG_FILE)

# ---- the unit ----
key() { grep -qx "$1" "$UNIT"; }
check "unit: Type=notify" key "Type=notify"
check "unit: ExecStart runs the installed regent (sbin) with $CONFIG" key "ExecStart=$PREFIX/sbin/regent -c $CONFIG"
check "unit: ExecReload checks the file first" key "ExecReload=$PREFIX/sbin/regent --check-config -c $CONFIG"
check "unit: ExecReload sends SIGHUP" key 'ExecReload=/bin/kill -HUP $MAINPID'
check "unit: Restart=on-failure" key "Restart=on-failure"
check "unit: runs as user regent" key "User=regent"
check "unit: supplementary group docker (the Docker socket)" key "SupplementaryGroups=docker"
check "unit: state and runtime directories for haproxy's files and sockets" bash -c "grep -qx StateDirectory=regent '$UNIT' && grep -qx RuntimeDirectory=regent '$UNIT'"
check "unit: ordered Before=docker.service (at shutdown Docker stops first, while regent deregisters each container)" key "Before=docker.service"
check "unit: not ordered After=docker.service (that would stop regent before Docker)" bash -c "! grep -q '^After=.*docker.service' '$UNIT'"
check "unit: ProtectSystem=strict" key "ProtectSystem=strict"
check "unit: unix sockets allowed" grep -q "^RestrictAddressFamilies=.*AF_UNIX" "$UNIT"
check "unit: only CAP_NET_BIND_SERVICE" key "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"
if command -v systemd-analyze >/dev/null; then
	# The unit as installed, but ExecStart pointing into the DESTDIR (verify
	# checks that the binary exists) and man pages from the DESTDIR.
	mkdir -p "$T/unit"
	sed -e "s#^ExecStart=$PREFIX/sbin/regent #ExecStart=$BIN #" \
	    -e "s#^ExecReload=$PREFIX/sbin/regent #ExecReload=$BIN #" "$UNIT" >"$T/unit/regent.service"
	man_opt=--man=yes
	[ -f "$R$PREFIX/share/man/man8/regent.8" ] || { man_opt=--man=no; skip "Documentation= man pages: not built (scdoc was not found when this build was configured; apt-get install scdoc)"; }
	MANPATH=$R$PREFIX/share/man systemd-analyze verify $man_opt "$T/unit/regent.service" >"$T/verify.log" 2>&1; rc=$?
	check "systemd-analyze verify passes on the unit" [ $rc -eq 0 -a ! -s "$T/verify.log" ]
	cat "$T/verify.log"
	systemd-analyze security --offline=yes "$T/unit/regent.service" >"$T/security.log" 2>&1
	level=$(sed -n 's/.*Overall exposure level for regent.service: \([0-9.]*\).*/\1/p' "$T/security.log")
	echo "systemd-analyze security: exposure ${level:-?} (0 = locked down, 10 = unprotected)"
	check "systemd-analyze security rates the unit OK or better (< 4.0)" awk -v l="${level:-99}" 'BEGIN { exit !(l < 4.0) }'
else
	skip "systemd-analyze not installed (apt-get install systemd)"
fi
if command -v systemd-sysusers >/dev/null; then
	mkdir -p "$T/sysroot/etc"
	systemd-sysusers --root="$T/sysroot" "$SYSUSERS" >"$T/sysusers.log" 2>&1; rc=$?
	check "sysusers.d entry applies (systemd-sysusers --root)" [ $rc -eq 0 ]
	check "... creates the system user regent with home /var/lib/regent" grep -q "^regent:x:[0-9]*:[0-9]*:.*:/var/lib/regent:" "$T/sysroot/etc/passwd"
	check "... and the group docker" grep -q "^docker:x:" "$T/sysroot/etc/group"
else
	skip "systemd-sysusers not installed (apt-get install systemd)"
fi

# ---- the notification protocol ----
cat >"$T/r.ini" <<EOF2
[agent]
node = notify-1
debounce = 20ms
[source testsource]
file = $T/instances.txt
interval = 50ms
[store teststore]
[sink testsink]
file = $T/sink.out
EOF2
printf 'n1/aaaa/80 whoami 127.0.0.2 18001\n' >"$T/instances.txt"
msgs() { cut -d' ' -f2- "$T/$1.log" 2>/dev/null; }
has() { msgs "$1" | grep -q -- "$2"; }

run_notify() { # NAME SOCKET: one run of regent with NOTIFY_SOCKET=SOCKET
	local name=$1 sock=$2
	"$PY" "$(dirname "$0")/notify_listener.py" "$sock" "$T/$name.log" &
	local lp=$!; PIDS+=("$lp")
	# On a loaded machine python can take seconds to start: a regent
	# started before the listener binds loses its first messages.
	check "$name: the stand-in notification socket is bound" wait_for 30 test -f "$T/$name.log.ready"
	NOTIFY_SOCKET=$sock "$BIN" -c "$T/r.ini" --plugin-dir "$REGENT_PLUGIN_DIR" >"$T/$name.run" 2>&1 &
	RP=$!; PIDS+=("$RP")
	check "$name: READY=1 once started" wait_for 10 has "$name" '^READY=1|STATUS=started$'
	check "$name: READY=1 only after every plugin started" bash -c "grep -q 'source testsource: started' '$T/$name.run'"
	check "$name: STATUS= one-line catalog summary" wait_for 10 has "$name" '^STATUS=1 services, 1 instances in the catalog; 1 local$'
	kill -HUP "$RP"
	check "$name: RELOADING=1 with MONOTONIC_USEC= on SIGHUP" wait_for 10 has "$name" '^RELOADING=1|MONOTONIC_USEC=[0-9]*|STATUS=reloading '
	check "$name: READY=1 when the reload is done" wait_for 10 has "$name" '^READY=1|STATUS=configuration reloaded$'
	# MONOTONIC_USEC is CLOCK_MONOTONIC: at most the receipt time, and recent.
	local line got at
	line=$(grep -m1 ' RELOADING=1' "$T/$name.log")
	at=${line%% *}
	got=$(sed 's/.*MONOTONIC_USEC=\([0-9]*\).*/\1/' <<<"$line")
	check "$name: MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds ($got at $at)" [ "${got:-0}" -le "${at:-0}" -a $((at - ${got:-0})) -lt 5000000 ]
	local r d
	r=$(grep -n ' RELOADING=1' "$T/$name.log" | head -1 | cut -d: -f1)
	d=$(grep -n ' READY=1|STATUS=configuration reloaded' "$T/$name.log" | head -1 | cut -d: -f1)
	check "$name: RELOADING=1 comes before the READY=1 that ends the reload" [ "${r:-9999}" -lt "${d:-0}" ]
	# A broken config: refused, the old one keeps running, still READY=1.
	cp "$T/r.ini" "$T/r.ini.good"
	printf '[sink testsink]\nbogus = 1\n' >>"$T/r.ini"
	kill -HUP "$RP"
	check "$name: a refused reload ends with READY=1 and says so" wait_for 10 has "$name" '^READY=1|STATUS=reload refused; running the previous configuration$'
	cp "$T/r.ini.good" "$T/r.ini"
	kill -TERM "$RP"; wait_pid "$RP"; local rc=$?
	check "$name: STOPPING=1 on SIGTERM" has "$name" '^STOPPING=1|STATUS=stopping$'
	check "$name: regent exits 0" [ $rc -eq 0 ]
	kill "$lp" 2>/dev/null; wait_pid "$lp" 2>/dev/null
}
run_notify path "$T/notify.sock"
run_notify abstract "@regent-test-$$-$RANDOM"

# Without NOTIFY_SOCKET nothing is sent and nothing breaks.
"$BIN" -c "$T/r.ini" --plugin-dir "$REGENT_PLUGIN_DIR" >"$T/plain.run" 2>&1 &
RP=$!; PIDS+=("$RP")
check "without NOTIFY_SOCKET regent starts" wait_for 10 grep -q "source testsource: started" "$T/plain.run"
kill -TERM "$RP"; wait_pid "$RP"; rc=$?
check "without NOTIFY_SOCKET regent runs and stops normally" [ $rc -eq 0 ]

summary
