#!/usr/bin/env bash
# demo.sh - the seed's scenario on one machine, narrated: a local etcd; two
# backend hosts, each its own dockerd and its own regent (source docker +
# store etcd) with host_ip 127.0.0.2 and 127.0.0.3; whoami containers on
# host networking; a client host regent (store etcd + sink haproxy + sink
# stats) with haproxy on 127.0.0.1:8000 and its stats on 127.0.0.1:1936.
#
#   bash scripts/demo.sh           run it, then tear everything down
#   bash scripts/demo.sh --keep    leave it all running to poke at
#   bash scripts/demo.sh --down    tear down what --keep left running
#   bash scripts/demo.sh --consul  the same with the Consul emulator as registry
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
STATE=/tmp/regent-demo.state
KEEP=0 STORE=etcd
for arg in "$@"; do
	case "$arg" in
	--keep) KEEP=1 ;;
	--consul) STORE=consul ;;
	--down)
		[ -f "$STATE" ] || { echo "demo: nothing to tear down ($STATE missing)"; exit 0; }
		source tests/harness/lib.sh
		H_TMP=$(cat "$STATE"); export H_TMP
		harness_cleanup 0
		rm -f "$STATE"
		echo "demo: torn down"
		exit 0 ;;
	-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (it starts two private dockerd daemons); run it as root" >&2
	exit 1
fi
if [ -f "$STATE" ]; then
	echo "demo: an earlier demo is still running; stop it first: bash scripts/demo.sh --down" >&2
	exit 1
fi
for port in 8000 1936 9150; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "demo: 127.0.0.1:$port is already in use; the demo needs 8000, 1936 and 9150" >&2
		exit 1
	fi
done

b() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
b "installing missing Debian packages and building regent"
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
export REGENT_BIN=$TOP/build/core/regent REGENT_PLUGIN_DIR=$TOP/build/plugins REGENT_SOURCE_DIR=$TOP
export SC_HAPROXY_PORT=8000 SC_STATS_PORT=1936 SC_REGENT_STATS_PORT=9150
source tests/harness/lib.sh
harness_init 2>/dev/null
source tests/e2e/scenario.sh

b "starting: $STORE on loopback, dockerd for backend-1 and backend-2, three regent agents"
scenario_up "$STORE"
for f in backend-1 backend-2 client; do
	b "config of $f ($H_TMP/$f.ini)"
	grep -v '^;' "$H_TMP/$f.ini" | cat -s
done

curls() {
	local i
	for i in $(seq "$1"); do printf '  curl 127.0.0.1:8000 -> %s\n' "$(sc_get)"; done
}
wait_ids() {
	local want=$1 i
	for i in $(seq 50); do [ "$(sc_ids 20 | wc -l)" -eq "$want" ] && return 0; sleep 0.1; done
	echo "  (still waiting for $want instances)"
}

b "three whoami containers: two on backend-1 (127.0.0.2), one on backend-2 (127.0.0.3)"
ids=()
ids+=("$(whoami_start 1 whoami-1)")
ids+=("$(whoami_start 1 whoami-2)")
ids+=("$(whoami_start 2 whoami-3)")
for i in "${ids[@]}"; do echo "  started ${i:0:12}"; done
wait_ids 3
b "round robin through haproxy"
curls 6

b "two more containers start, one per backend host"
ids+=("$(whoami_start 1 whoami-4)")
ids+=("$(whoami_start 2 whoami-5)")
echo "  started ${ids[3]:0:12} and ${ids[4]:0:12}"
wait_ids 5
curls 10

b "killing three of them (docker kill): haproxy routes around them"
docker_cmd b1 kill whoami-1 whoami-4 >/dev/null
docker_cmd b2 kill whoami-3 >/dev/null
echo "  killed ${ids[0]:0:12} ${ids[3]:0:12} ${ids[2]:0:12}"
wait_ids 2
curls 6

b "what the client agent knows (http://127.0.0.1:9150/v1/catalog)"
curl -s --noproxy '*' http://127.0.0.1:9150/v1/catalog | head -c 1500
echo
b "haproxy's stats page: http://127.0.0.1:1936/ ; the agent's own page: http://127.0.0.1:9150/"

if [ "$KEEP" = 1 ]; then
	echo "$H_TMP" >"$STATE"
	trap - EXIT INT TERM
	echo
	echo "Everything keeps running. Poke at it:"
	echo "  curl 127.0.0.1:8000                   # round robin across the live containers"
	echo "  curl 127.0.0.1:9150/metrics           # the client agent's metrics"
	echo "  docker -H unix://$(docker_sock b1) ps   # backend-1's containers"
	echo "  docker -H unix://$(docker_sock b2) ps   # backend-2's containers"
	[ "$STORE" = etcd ] &&
		echo "  ETCDCTL_API=3 etcdctl --endpoints $SC_REGISTRY get --prefix /backends"
	echo "  logs: $H_TMP/*.log   configs: $H_TMP/*.ini"
	echo "Tear it all down with:"
	echo "  bash scripts/demo.sh --down"
else
	b "tearing down (use --keep to leave it running)"
fi
