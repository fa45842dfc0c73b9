#!/usr/bin/env bash
# consul_etcd_parity_test.sh - swapping etcd for Consul is a one-section
# change: the same agent configuration (testsource -> store -> testsink,
# [service] sections and all) runs once with [store etcd] (a real etcd) and
# once with [store consul] (the emulator, or a real `consul agent -dev` with
# REGENT_CONSUL_MODE=real), goes through the same change of the local set,
# and the sink must see the same catalog at each step.  Skips (77) when the
# etcd plugin is not built.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
if [[ ! -f "$REGENT_PLUGIN_DIR/etcd.so" ]]; then
	echo "SKIP: $REGENT_PLUGIN_DIR/etcd.so is not built (configure with" \
	     "-DREGENT_ONLY_PLUGINS=\"consul;etcd\" or without REGENT_ONLY_PLUGINS)"
	exit 77
fi
consul_test_init
T=$H_TMP
EP=$(etcd_start parity) || { echo "etcd did not start"; harness_summary; exit 1; }
agent_start || { echo "agent did not start"; harness_summary; exit 1; }

step1='backend-1/web1/80 web 127.0.0.1 8001 tcp v1,blue
backend-1/web2/80 web 127.0.0.1 8002
backend-1/web3/80 web 127.0.0.4 8003 tcp canary
backend-1/dns1/53 dns 127.0.0.2 5353 udp
backend-1/api1/9000 api.v2 127.0.0.3 9000'
step2='backend-1/web1/80 web 127.0.0.1 8001 tcp v1,blue
backend-1/web3/80 web 127.0.0.4 8013 tcp canary
backend-1/dns1/53 dns 127.0.0.2 5353 udp
backend-1/dns2/53 dns 127.0.0.5 5353 udp'

# The shared configuration: everything but the store section.
base() {
	printf '[agent]\nnode = backend-1\nhost_ip = 127.0.0.1\ndebounce = 10ms\nstate_dir = %s\n\n' "$H_TMP/state-parity"
	printf '[source testsource]\nfile = %s\ninterval = 50ms\n\n' "$T/inst.txt"
	printf '[sink testsink]\nfile = %s\n\n' "$T/$1.sink"
	printf '[service web]\nport = 8000\nlabel = front\n\n[service dns]\nport = 53\n'
}
# wait until the sink's last snapshot is the expected one (count of instances)
instances_in_snapshot() { last_snapshot "$1" | grep -c '^    '; }
snapshot_count_is() { [[ "$(instances_in_snapshot "$1")" == "$2" ]]; }

run() { # STORE  -> $T/STORE.step1, $T/STORE.step2
	local store=$1
	{ base "$store"
	  if [[ $store == etcd ]]; then
		printf '\n[store etcd]\nendpoints = %s\nttl = 3s\n' "$EP"
	  else
		printf '\n'; TTL=3s DEREG=1m store_section
	  fi; } >"$T/$store.ini"
	printf '%s\n' "$step1" >"$T/inst.txt"
	regent_start "$store" "$T/$store.ini"
	check "[$store] the catalog reaches the sink" \
		wait_for --timeout 15 snapshot_count_is "$T/$store.sink" 5
	sleep 0.3   # anything late would show now
	last_snapshot "$T/$store.sink" >"$T/$store.step1"
	printf '%s\n' "$step2" >"$T/inst.txt"
	check "[$store] the change reaches the sink" \
		wait_for --timeout 15 snapshot_has "$T/$store.sink" "backend-1/dns2/53"
	check "waited for: snapshot_lacks T/store.sink api.v2 (" wait_for --timeout 5 snapshot_lacks "$T/$store.sink" "api.v2 ("
	sleep 0.3
	last_snapshot "$T/$store.sink" >"$T/$store.step2"
	daemon_stop "regent-$store"
}

run etcd
run consul
diff -u "$T/etcd.step1" "$T/consul.step1" >&2
check "the first catalog is the same with etcd and Consul" cmp -s "$T/etcd.step1" "$T/consul.step1"
diff -u "$T/etcd.step2" "$T/consul.step2" >&2
check "the catalog after the change is the same with etcd and Consul" \
	cmp -s "$T/etcd.step2" "$T/consul.step2"
check "it is the expected catalog" grep -qx '    backend-1/web3/80 127.0.0.4:8013/tcp node=backend-1' "$T/consul.step2"
check "the removed service left both" bash -c "! grep -q 'api.v2' $T/etcd.step2 $T/consul.step2"
check "the configurations differ only in the store section" bash -c \
	"diff <(sed '/^\[store/,\$d' $T/etcd.ini | sed 's/etcd.sink/X.sink/') \
	      <(sed '/^\[store/,\$d' $T/consul.ini | sed 's/consul.sink/X.sink/')"
sed 's/^/# /' "$T/consul.step2"
check_regent_logs_clean
harness_summary
