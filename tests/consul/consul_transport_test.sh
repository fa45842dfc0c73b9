#!/usr/bin/env bash
# consul_transport_test.sh - how the plugin reaches the agent: a unix socket,
# https with a CA and a client certificate (through agent_proxy.py in front
# of the emulator or of a real `consul agent -dev`), TLS refusals with a
# clear error, the datacenter parameter, and --check-config on bad
# [store consul] sections.
source "$REGENT_TEST_DIR/consul/consul_lib.sh"
consul_test_init
T=$H_TMP
agent_start || { echo "agent did not start"; harness_summary; exit 1; }
PROXY="$REGENT_TEST_DIR/consul/agent_proxy.py"

# ---- --check-config refuses bad sections with FILE:LINE
bad_config() { # NAME LINES...
	local n=$1; shift
	{ printf '[agent]\nnode = x\n[store consul]\n'; printf '%s\n' "$@"; } >"$T/$n.ini"
	"$REGENT_BIN" --check-config -c "$T/$n.ini" --plugin-dir "$REGENT_PLUGIN_DIR" 2>&1
}
out=$(bad_config b1 'address = ftp://127.0.0.1:8500')
check_contains "bad scheme refused" "$out" "b1.ini:4: store consul.address: unsupported scheme"
out=$(bad_config b2 'address = https://127.0.0.1:8501' 'cert = /etc/c.pem')
check_contains "cert without key refused" "$out" "cert and key go together"
out=$(bad_config b3 'address = http://127.0.0.1:8500' 'ca = /etc/ca.pem')
check_contains "TLS files with an http address refused" "$out" "is only used with an https:// address"
out=$(bad_config b4 'token = two words')
check_contains "a token with a blank refused" "$out" "store consul.token: must be printable ASCII"
check "the refused token is not echoed" bash -c "! grep -q words <<<'$out'"
out=$(bad_config b5 'ttl = 0' 'wait = 20m')
check_contains "ttl below 1s refused" "$out" "store consul.ttl"
check_contains "wait above 10m refused" "$out" "store consul.wait"
out=$(bad_config b6 'address = unix://relative')
check_contains "relative unix socket refused" "$out" "unix:///absolute/path"

host_config() { # NAME ID PORT [store lines...]
	local n=$1 id=$2 port=$3; shift 3
	echo "$id svc-$n 127.0.0.1 $port" >"$T/$n.txt"
	{ printf '[agent]\nnode = %s\ndebounce = 10ms\nstate_dir = %s\n' "$n" "$H_TMP/state-$n"
	  printf '[source testsource]\nfile = %s\ninterval = 50ms\n' "$T/$n.txt"
	  printf '[store consul]\nttl = 2s\nderegister_after = 2s\nderegister_on_stop = true\n'
	  printf '%s\n' "$@"
	  printf '[sink testsink]\nfile = %s\n' "$T/$n.sink"; } >"$T/$n.ini"
}

# ---- unix socket (and a datacenter that exists)
daemon_start uproxy "$PYTHON3" "$PROXY" unix "$T/consul.sock" "$AGENT_PORT"
check "waited for: grep -q ready (daemon_log uproxy)" wait_for --timeout 10 grep -q ready "$(daemon_log uproxy)"
host_config u u1/c/80 7001 "address = unix://$T/consul.sock" "datacenter = dc1"
regent_start u "$T/u.ini"
check "unix socket: registered" wait_for --timeout 10 agent_has u1/c/80
check "unix socket: discovered" wait_for --timeout 10 snapshot_has "$T/u.sink" "u1/c/80 127.0.0.1:7001"

# ---- TLS with a client certificate
cd "$T" || exit 1
ossl() { openssl "$@" >/dev/null 2>&1; }
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
ossl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=regent-test-ca
for who in server client; do
	ossl req "${ec[@]}" -keyout "$who.key" -out "$who.csr" -subj "/CN=$who"
	printf 'subjectAltName=IP:127.0.0.1\n' >"$who.ext"
	ossl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" \
		-days 2 -extfile "$who.ext"
done
ossl req -x509 "${ec[@]}" -keyout other.key -out other.pem -days 2 -subj /CN=other-ca
cd - >/dev/null || exit 1
check "test certificates made" test -s "$T/client.pem" -a -s "$T/server.pem"
TP=$(free_port)
daemon_start tproxy "$PYTHON3" "$PROXY" tls "$TP" "$AGENT_PORT" "$T/server.pem" "$T/server.key" "$T/ca.pem"
check "waited for: grep -q ready (daemon_log tproxy)" wait_for --timeout 10 grep -q ready "$(daemon_log tproxy)"
host_config s s1/c/80 7002 "address = https://127.0.0.1:$TP" "ca = $T/ca.pem" \
	"cert = $T/client.pem" "key = $T/client.key"
regent_start s "$T/s.ini"
check "https + client certificate: registered" wait_for --timeout 10 agent_has s1/c/80
check "https + client certificate: discovered" wait_for --timeout 10 snapshot_has "$T/s.sink" "s1/c/80 127.0.0.1:7002"
check "https + client certificate: sees the unix-socket host too" \
	wait_for --timeout 10 snapshot_has "$T/s.sink" "u1/c/80 127.0.0.1:7001"

# No client certificate: the handshake is refused, clearly, and nothing is registered.
host_config n n1/c/80 7003 "address = https://127.0.0.1:$TP" "ca = $T/ca.pem"
regent_start n "$T/n.ini"
check "https without a client certificate: refused by the agent" \
	wait_for --timeout 10 grep -q "TLS handshake refused" "$(daemon_log tproxy)"
check "https without a client certificate: the error names the agent" \
	wait_for --timeout 10 grep -q "cannot list the services of the Consul agent at https://127.0.0.1:$TP" "$(regent_log n)"
check "https without a client certificate: unhealthy" grep -q "store consul: unhealthy" "$(regent_log n)"
check "https without a client certificate: nothing registered" agent_lacks n1/c/80
daemon_stop regent-n
# A CA that did not sign the agent's certificate.
host_config w w1/c/80 7004 "address = https://127.0.0.1:$TP" "ca = $T/other.pem" \
	"cert = $T/client.pem" "key = $T/client.key"
regent_start w "$T/w.ini"
check "https with the wrong CA: certificate error logged" \
	wait_for --timeout 10 grep -qi "cannot list the services of the Consul agent at https://127.0.0.1:$TP: .*certificate" "$(regent_log w)"
check "https with the wrong CA: nothing registered" agent_lacks w1/c/80
daemon_stop regent-w

# ---- a datacenter that does not exist: reads fail clearly, no empty catalog
host_config d d1/c/80 7005 "address = $AGENT_URL" "datacenter = nowhere"
regent_start d "$T/d.ini"
# Both catalog reads (the service list and the health of every check) go to the missing
# datacenter; whichever fails first is the one logged.
check "unknown datacenter: the read error is logged" \
	wait_for --timeout 10 grep -qE "cannot read (the service list|the health of every check) from $AGENT_URL: HTTP 500" "$(regent_log d)"
check "unknown datacenter: registration (agent-local) still works" wait_for --timeout 10 agent_has d1/c/80
check "unknown datacenter: the sink never got an empty catalog" test ! -s "$T/d.sink"
daemon_stop regent-d

daemon_stop regent-s
check "https: deregistered on SIGTERM" agent_lacks s1/c/80
daemon_stop regent-u
check "unix socket: deregistered on SIGTERM" agent_lacks u1/c/80
check_regent_logs_clean
harness_summary
