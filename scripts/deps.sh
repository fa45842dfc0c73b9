#!/usr/bin/env bash
# deps.sh - installs the Debian 12 packages regent's build, tests and demo
# need, only those missing.  Needs root (apt-get) when anything is missing.
set -euo pipefail
PKGS=(
	# build
	build-essential cmake pkg-config
	libuv1-dev libcurl4-gnutls-dev libjansson-dev libinih-dev libmicrohttpd-dev
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
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
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
