# scenario.sh - the seed's demo on one machine, shared by the end-to-end
# test and scripts/demo.sh: a registry (etcd, or the Consul emulator), two
# backend "hosts" (each its own dockerd and its own regent with source
# docker + a store, host_ip 127.0.0.2 and 127.0.0.3), whoami containers
# on host networking, and a client host regent (store + sink haproxy with
# a managed haproxy + sink stats).  Source tests/harness/lib.sh and call
# harness_init first.  Loopback only.
#
#   scenario_up etcd|consul   start everything, wait until haproxy listens
#   whoami_start HOST NAME    start a whoami container on backend HOST (1|2)
#   sc_get                    one request through haproxy (prints the body)
#   sc_ids [N]                the container ids answering over N requests

: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_SOURCE_DIR:?}"
SC_HAPROXY_PORT=${SC_HAPROXY_PORT:-$(free_port)}
SC_STATS_PORT=${SC_STATS_PORT:-$(free_port)}
SC_REGENT_STATS_PORT=${SC_REGENT_STATS_PORT:-$(free_port)}
SC_TTL=${SC_TTL:-5s}
SC_IMAGE=jwilder/whoami:latest

# The one section that differs between an etcd and a Consul fleet.
store_section() {
	case "$SC_STORE" in
	etcd)
		printf '[store etcd]\nendpoints = %s\nprefix    = /backends\nttl       = %s\n' \
			"$SC_REGISTRY" "$SC_TTL" ;;
	consul)
		printf '[store consul]\naddress = %s\nttl     = %s\nwait    = 30s\n' \
			"$SC_REGISTRY" "$SC_TTL" ;;
	esac
}

write_configs() {
	local n
	for n in 1 2; do
		cat >"$H_TMP/backend-$n.ini" <<EOF
; backend host $n: registers its containers
[agent]
node      = backend-$n
host_ip   = 127.0.0.$((n + 1))
state_dir = $H_TMP/state-backend-$n

[source docker]
socket         = $(docker_sock "b$n")
allow_loopback = true      ; the demo's hosts are loopback addresses

$(store_section)
EOF
	done
	mkdir -p "$H_TMP/haproxy"
	cat >"$H_TMP/client.ini" <<EOF
; client host: watches the registry, routes through haproxy
[agent]
node      = client-1
state_dir = $H_TMP/state-client-1

$(store_section)

[sink haproxy]
manage          = true
keep_running    = false
config_file     = $H_TMP/haproxy/regent.cfg
bind_address    = 127.0.0.1
stats           = 127.0.0.1:$SC_STATS_PORT
reload_interval = 200ms

[sink stats]
listen = 127.0.0.1:$SC_REGENT_STATS_PORT

[service whoami]
port           = $SC_HAPROXY_PORT
mode           = http
check          = /health
check_interval = 500ms
; a joining server's check is pending (not forced up): one pass, checked every 100 ms while down
server_options = rise 1, downinter 100ms
EOF
}

scenario_up() {
	SC_STORE=$1
	case "$SC_STORE" in
	etcd)
		SC_REGISTRY=$(etcd_start registry) || return 1 ;;
	consul)
		local p; p=$(free_port)
		daemon_start consul "${PYTHON3:-python3}" "$REGENT_SOURCE_DIR/tests/consul/consul_emulator.py" \
			--http-addr 127.0.0.1 --port "$p" --node registry
		SC_REGISTRY=http://127.0.0.1:$p
		wait_for --timeout 15 http_get "$SC_REGISTRY/v1/status/leader" >/dev/null || return 1 ;;
	*) echo "scenario_up: etcd or consul, not '$SC_STORE'" >&2; return 1 ;;
	esac
	# The two backend hosts' dockerd and image side by side (they share nothing; the harness
	# keeps its state in files, so b2's start in a background job is recorded and stopped like
	# b1's; its DOCKER_SOCK_b2 export is lost there: docker_sock b2 gives it).
	local b2
	{ dockerd_start b2 >/dev/null && image_build_whoami b2 "$SC_IMAGE" >/dev/null; } &
	b2=$!
	if ! { dockerd_start b1 >/dev/null && image_build_whoami b1 "$SC_IMAGE" >/dev/null; }; then
		wait "$b2"
		return 1
	fi
	wait "$b2" || return 1
	write_configs
	local f
	for f in backend-1 backend-2 client; do
		"$REGENT_BIN" --check-config -c "$H_TMP/$f.ini" >/dev/null || return 1
		daemon_start "regent-$f" "$REGENT_BIN" -c "$H_TMP/$f.ini"
	done
	# haproxy comes up once the client's store has read the registry.
	wait_for --timeout 30 http_get "http://127.0.0.1:$SC_STATS_PORT/" >/dev/null
}

# whoami_start HOST NAME [docker run args...]: prints the 64-hex id
whoami_start() {
	local host=$1 name=$2; shift 2
	local addr=127.0.0.$((host + 1)) port
	port=$(free_port "$addr")
	whoami_run "b$host" "$SC_IMAGE" "$name" "$addr" "$port" "$@"
}

sc_get() {
	curl -s --noproxy '*' --max-time 5 "http://127.0.0.1:$SC_HAPROXY_PORT/"
}

# The distinct ids answering through haproxy over N requests (default 40).
sc_ids() {
	local i n=${1:-40}
	for ((i = 0; i < n; i++)); do sc_get; echo; done |
		sed -n "s/^I'm \([0-9a-f]\{12\}\)$/\1/p" | sort -u
}
