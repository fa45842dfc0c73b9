# maintscripts.sh - runs the maintainer scripts of a built regent .deb the
# way dpkg would (install, upgrade, remove, purge) against a stand-in
# systemd, and checks what they do to regent.service (sourced by
# deb_test.sh; uses its check/T).
#
#   maint_check CONTROL_DIR     (dpkg-deb -e regent_*.deb CONTROL_DIR)
#
# The scripts run unchanged except for two paths pointed into a scratch
# root: /run/systemd/system (the "systemd is running" test) and
# /var/lib/regent (removed on purge).  On PATH: a stub systemctl that
# answers is-enabled/is-active from a state file and logs every other call,
# the real deb-systemd-invoke (it decides whether to start or restart from
# those answers; run with DPKG_ROOT pointing at the scratch root so the
# host's policy-rc.d is not consulted), and stubs of deb-systemd-helper,
# dpkg-statoverride and systemd-sysusers that log their calls.

maint_check() {
	local ctrl=$1 M=$T/maint
	local F=$M/root S=$M/stubs
	mkdir -p "$F/run/systemd/system" "$F/var/lib/regent" "$S" "$M/scripts"
	for s in preinst postinst prerm postrm; do
		[ -f "$ctrl/$s" ] || continue
		sed -e "s#/run/systemd/system#$F/run/systemd/system#g" \
		    -e "s#/var/lib/regent#$F/var/lib/regent#g" "$ctrl/$s" >"$M/scripts/$s"
	done
	cat >"$S/systemctl" <<EOF
#!/bin/sh
# stand-in systemctl: state from $M/enabled and $M/active
for a in "\$@"; do
	case \$a in
	is-enabled) cat "$M/enabled"; [ "\$(cat "$M/enabled")" = enabled ]; exit ;;
	is-active) [ "\$(cat "$M/active")" = active ]; exit ;;
	esac
done
echo "systemctl \$*" | sed 's/--quiet //g; s/--system //g' >>"$M/calls"
EOF
	cat >"$S/deb-systemd-invoke" <<EOF
#!/bin/sh
echo "deb-systemd-invoke \$*" >>"$M/calls"
DPKG_ROOT=$F exec /usr/bin/deb-systemd-invoke "\$@"
EOF
	cat >"$S/deb-systemd-helper" <<EOF
#!/bin/sh
echo "deb-systemd-helper \$*" >>"$M/calls"
case "\$*" in *debian-installed*|*was-enabled*) exit 1 ;; esac
EOF
	cat >"$S/dpkg-statoverride" <<EOF
#!/bin/sh
echo "dpkg-statoverride \$*" >>"$M/calls"
case "\$*" in *--list*) exit 1 ;; esac
EOF
	printf '#!/bin/sh\necho "systemd-sysusers $*" >>"%s/calls"\n' "$M" >"$S/systemd-sysusers"
	chmod +x "$S"/*
	# run SCRIPT ARGS...: one maintainer script, the calls it made in $M/calls
	run() {
		: >"$M/calls"
		[ -f "$M/scripts/$1" ] || return 0
		PATH=$S:$PATH sh -e "$M/scripts/$@" >>"$M/out" 2>&1
	}
	state() { echo "$1" >"$M/enabled"; echo "$2" >"$M/active"; }
	called() { grep -qx "$1" "$M/calls"; }
	not_called() { ! grep -q "$1" "$M/calls"; }

	check "the package has no preinst that stops regent before an upgrade" \
		bash -c "[ ! -f '$ctrl/preinst' ] || ! grep -q 'stop' '$ctrl/preinst'"

	# A first install: the unit is not enabled, so it is not started.
	state disabled inactive
	run postinst configure; rc=$?
	check "postinst configure (first install) exits 0" [ $rc -eq 0 ]
	check "... does not enable regent.service" not_called "deb-systemd-helper enable"
	check "... asks to start it only through deb-systemd-invoke" called "deb-systemd-invoke start regent.service"
	check "... which does not start a disabled unit" not_called "systemctl start"
	check "... and creates the user (systemd-sysusers)" called "systemd-sysusers regent.conf"

	# An upgrade of an enabled, running regent: not stopped before, restarted after.
	state enabled active
	run prerm upgrade 0.1.0; rc=$?
	check "prerm upgrade exits 0" [ $rc -eq 0 ]
	check "prerm upgrade does not stop regent" not_called "stop"
	run postinst configure 0.0.9; rc=$?
	check "postinst configure OLDVERSION (upgrade) exits 0" [ $rc -eq 0 ]
	check "postinst on upgrade restarts an enabled regent" called "systemctl restart regent.service"
	check "... after a daemon-reload" called "systemctl daemon-reload"
	# An enabled regent that was stopped by hand is started by the upgrade too
	# (enabled means it should run); a disabled one that does not run stays off.
	state enabled inactive
	run postinst configure 0.0.9
	check "postinst on upgrade restarts an enabled regent that was not running" called "systemctl restart regent.service"
	state disabled inactive
	run postinst configure 0.0.9
	check "postinst on upgrade leaves a disabled, stopped regent alone" not_called "systemctl restart"
	state disabled active
	run postinst configure 0.0.9
	check "postinst on upgrade restarts a disabled regent an admin started" called "systemctl restart regent.service"

	# Removal stops it; purge removes the state directory.
	state enabled active
	run prerm remove; rc=$?
	check "prerm remove exits 0" [ $rc -eq 0 ]
	check "prerm remove stops regent" called "systemctl stop regent.service"
	run postrm remove; rc=$?
	check "postrm remove exits 0" [ $rc -eq 0 ]
	check "postrm remove keeps /var/lib/regent (not purged)" test -d "$F/var/lib/regent"
	echo "drained by \`regent ctl drain\`" >"$F/var/lib/regent/drained"
	run postrm purge; rc=$?
	check "postrm purge exits 0" [ $rc -eq 0 ]
	check "postrm purge removes /var/lib/regent (leases, drain marker, haproxy files)" test ! -e "$F/var/lib/regent"
	check "postrm purge drops the statoverride of regent.ini" called "dpkg-statoverride --remove /etc/regent/regent.ini"
	check "postrm purge forgets the unit's enablement state" called "deb-systemd-helper purge regent.service"
	if [ "$fail" -gt 0 ]; then
		echo "--- maintainer scripts' output"; cat "$M/out"
	fi
}
