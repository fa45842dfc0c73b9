#!/usr/bin/env bash
# deps.sh - installs the Debian 12 packages regent's build, tests and demo
# need, only those missing.  Needs root (apt-get) when anything is missing.
set -euo pipefail
PKGS=(
	# build
	build-essential cmake pkg-config
	# libcurl's GnuTLS flavour (one TLS stack: ~0.5 MB less RSS); the OpenSSL one, which
	# conflicts with it, is accepted when installed (regent builds with either)
	libuv1-dev 'libcurl4-gnutls-dev|libcurl4-openssl-dev' libjansson-dev libinih-dev libmicrohttpd-dev
	# tests
	libcmocka-dev valgrind python3 python3-prometheus-client curl procps
	chromium     # renders the stats page in its test
	clang libclang-rt-14-dev   # the libFuzzer harnesses of tests/fuzz (fuzzer runtime)
	# the real daemons the tests and the demo start
	etcd-server etcd-client docker.io haproxy busybox-static wrk
	nginx        # the plugin guide's example sink runs against it (example_nginx)
	# packaging and docs
	scdoc dpkg-dev debhelper lintian systemd
	systemd-container   # systemd-nspawn: the unit's shutdown/boot order under a real systemd (packaging_systemd_shutdown)
)
missing=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in "${PKGS[@]}"; do
	# A|B: either will do; the first is installed when neither is.
	IFS='|' read -r -a alts <<< "$p"
	ok=0
	for a in "${alts[@]}"; do installed "$a" && { ok=1; break; }; done
	[ "$ok" = 1 ] || missing+=("${alts[0]}")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PKGS[@]} Debian packages present"
	exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages and not root: run as root, or: apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Installing docker.io/etcd-server/haproxy/nginx must not start their system
# services: the tests start private instances on loopback themselves.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" = 1 ] && rm -f "$policy"
echo "deps: done"
