# shellcheck shell=bash
# consul_lib.sh - what the Consul plugin's script tests share: one Consul
# "agent" (the emulator, or a real `consul agent -dev` when
# REGENT_CONSUL_MODE=real), regent instances with the test plugins, and
# readers of the testsink's snapshots.  Built on tests/harness/lib.sh
# (daemon_start/stop by pid, free_port, check, wait_for).
#
#   source "$REGENT_TEST_DIR/consul/consul_lib.sh"
#   consul_test_init                 # harness_init + mode (exits 77 when real is impossible)
#   agent_start [TOKEN]              # -> $AGENT_PORT, $AGENT_URL (also consul_agent_start:
#                                    # tests/etcd/lib.sh's agent_start, sourced after, is regent)
#                                    # AGENT_DATA_DIR=DIR: the agent keeps its services, checks
#                                    # and check state there across restarts (the emulator's
#                                    # --state-file DIR/emulator-state.json; -data-dir DIR)
#   regent_start NAME INI            # daemon "regent-NAME", log $H_TMP/regent-NAME.log
#   last_snapshot FILE               # the last "apply ... end" block of a testsink file
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}" "${PYTHON3:=python3}"

# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"

EMULATOR="$REGENT_TEST_DIR/consul/consul_emulator.py"
CONSUL_MODE=${REGENT_CONSUL_MODE:-emulator}
AGENT_TOKEN=""

consul_test_init() {
	case "$CONSUL_MODE" in
	emulator) ;;
	real)
		if ! command -v consul >/dev/null 2>&1; then
			echo "SKIP: REGENT_CONSUL_MODE=real needs a \`consul\` binary on PATH (none is" \
			     "installed here); the same test runs against tests/consul/consul_emulator.py" \
			     "as its emulator variant"
			exit 77
		fi ;;
	*) echo "REGENT_CONSUL_MODE must be emulator or real, got $CONSUL_MODE" >&2; exit 2 ;;
	esac
	harness_init || exit 1
	echo "# Consul: $CONSUL_MODE$([[ $CONSUL_MODE == real ]] && echo " ($(command -v consul))")"
	# Timing knobs: the emulator takes short reaping; real Consul raises
	# DeregisterCriticalServiceAfter to 1m and reaps every 30 s.
	if [[ $CONSUL_MODE == real ]]; then
		REAP_SLACK=100
	else
		REAP_SLACK=8
	fi
}

# agent_start [TOKEN]: a fresh agent on loopback (daemon "consul").  consul_agent_start is the
# same under a name that does not clash with tests/etcd/lib.sh (the drills source both).
agent_start() { consul_agent_start "$@"; }
consul_agent_start() {
	AGENT_TOKEN=${1:-}
	[[ -z "${AGENT_DATA_DIR:-}" ]] || mkdir -p "$AGENT_DATA_DIR" || return 1
	if [[ $CONSUL_MODE == emulator ]]; then
		local args=(--http-addr 127.0.0.1 --port "${AGENT_PORT:-0}" --reap-interval 0.3
		            --min-deregister 1 --check-update-interval 0)
		[[ -n "$AGENT_TOKEN" ]] && args+=(--acl-token "$AGENT_TOKEN")
		[[ -n "${EMU_VERBOSE:-}" ]] && args+=(--verbose)   # one log line per request
		[[ -n "${AGENT_DATA_DIR:-}" ]] && args+=(--state-file "$AGENT_DATA_DIR/emulator-state.json")
		# shellcheck disable=SC2206
		[[ -n "${EMU_EXTRA:-}" ]] && args+=($EMU_EXTRA)    # more emulator options
		local log skip=0
		log=$(daemon_log consul)
		[[ -f "$log" ]] && skip=$(wc -l <"$log")
		daemon_start consul "$PYTHON3" "$EMULATOR" "${args[@]}" || return 1
		if [[ -z "${AGENT_PORT:-}" ]]; then
			# The first stdout line of this run: "listening 127.0.0.1:PORT".
			emu_port() { tail -n +"$((skip + 1))" "$log" | sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -1; }
			emu_has_port() { [[ -n "$(emu_port)" ]]; }
			# (python3 may be a slow pyenv shim on a loaded machine)
			wait_for --timeout 30 emu_has_port || return 1
			AGENT_PORT=$(emu_port)
		fi
	else
		[[ -n "${AGENT_PORT:-}" ]] || AGENT_PORT=$(free_port)
		[[ -n "${AGENT_SERF:-}" ]] || AGENT_SERF=$(free_port)
		[[ -n "${AGENT_SERFW:-}" ]] || AGENT_SERFW=$(free_port)
		[[ -n "${AGENT_SERVER:-}" ]] || AGENT_SERVER=$(free_port)
		local hcl=""
		[[ -n "$AGENT_TOKEN" ]] && hcl=$(printf 'acl {\n enabled = true\n default_policy = "deny"\n tokens {\n  initial_management = "%s"\n  agent = "%s"\n }\n}\n' "$AGENT_TOKEN" "$AGENT_TOKEN")
		daemon_start consul consul agent -dev -node regent-test -bind 127.0.0.1 \
			-client 127.0.0.1 -http-port "$AGENT_PORT" -dns-port -1 -grpc-port -1 \
			-serf-lan-port "$AGENT_SERF" -serf-wan-port "$AGENT_SERFW" \
			-server-port "$AGENT_SERVER" ${hcl:+-hcl "$hcl"} \
			${AGENT_DATA_DIR:+-data-dir "$AGENT_DATA_DIR"} || return 1
	fi
	AGENT_URL="http://127.0.0.1:$AGENT_PORT"
	wait_for --timeout 30 agent_ready || return 1
}
agent_ready() { [[ "$(curl -s -m 2 --noproxy '*' "$AGENT_URL/v1/status/leader")" == *:* ]]; }
agent_kill() { daemon_kill consul KILL; }
agent_stop() { daemon_stop consul; }

# agent_curl METHOD PATH [BODY]: with the management token when there is one.
agent_curl() {
	local m=$1 p=$2 b=${3:-}
	local a=(-s -m 5 --noproxy '*' -X "$m")
	[[ -n "$AGENT_TOKEN" ]] && a+=(-H "X-Consul-Token: $AGENT_TOKEN")
	[[ -n "$b" ]] && a+=(--data "$b")
	curl "${a[@]}" "$AGENT_URL$p"
}
# The agent's services by regent id (Meta "regent-id", else the Consul ID),
# sorted, one a line.
agent_service_ids() {
	agent_curl GET /v1/agent/services | "$PYTHON3" -c \
		'import json,sys; d=json.load(sys.stdin); print("\n".join(sorted((v.get("Meta") or {}).get("regent-id", k) for k, v in d.items())))'
}
# The Consul service IDs themselves.
agent_raw_ids() {
	agent_curl GET /v1/agent/services | "$PYTHON3" -c \
		'import json,sys; print("\n".join(sorted(json.load(sys.stdin))))'
}
agent_has() { agent_service_ids | grep -qxF "$1"; }
agent_lacks() { ! agent_service_ids | grep -qxF "$1"; }

# regent_start NAME INI [ARGS...]
regent_start() {
	local name=$1 ini=$2; shift 2
	daemon_start "regent-$name" "$REGENT_BIN" -c "$ini" --plugin-dir "$REGENT_PLUGIN_DIR" "$@"
}
regent_log() { daemon_log "regent-$1"; }

# last_snapshot FILE: the last complete snapshot a testsink wrote (without
# the "apply N changed=..." and "end" lines).
last_snapshot() {
	awk '/^apply /{buf=""; inblk=1; next} /^end$/{if(inblk){last=buf; inblk=0}; next}
	     inblk{buf=buf $0 "\n"} END{printf "%s", last}' "$1" 2>/dev/null
}
snapshot_has() { last_snapshot "$1" | grep -qF -- "$2"; }
snapshot_lacks() { [[ -s "$1" ]] && ! last_snapshot "$1" | grep -qF -- "$2"; }
# Every snapshot ever written contains NEEDLE (from line FROM on).
all_snapshots_have() {
	local file=$1 needle=$2 from=${3:-1}
	tail -n +"$from" "$file" | awk -v n="$needle" '
		/^apply /{inblk=1; has=0; next}
		/^end$/{if(inblk && !has){bad=1}; inblk=0; next}
		inblk && index($0, n){has=1}
		END{exit bad}'
}

# now_ms: wall clock in ms.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# The [store consul] section for this agent.
store_section() {
	printf '[store consul]\naddress = %s\n' "$AGENT_URL"
	[[ -n "$AGENT_TOKEN" && "${1:-}" != notoken ]] && printf 'token = %s\n' "$AGENT_TOKEN"
	printf 'ttl = %s\nderegister_after = %s\n' "${TTL:-2s}" "${DEREG:-2s}"
	# SIGTERM keeps the services by default; tests of deregistration ask.
	[[ -n "${DEREG_ON_STOP:-}" ]] && printf 'deregister_on_stop = %s\n' "$DEREG_ON_STOP"
	[[ -n "${RECONCILE_WAIT:-}" ]] && printf 'reconcile_wait = %s\n' "$RECONCILE_WAIT"
	return 0
}

# No sanitizer report (ASan/UBSan/LSan builds: REGENT_SANITIZE=1) and no
# crash in any regent log of this test.
check_regent_logs_clean() {
	local n
	# Stop them first: LeakSanitizer reports at exit.
	while read -r n; do
		[[ $n == regent-* ]] && daemon_stop "$n"
	done <"$H_TMP/.h/order"
	check "no sanitizer report in the regent logs" bash -c \
		"! grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' $H_TMP/regent-*.log"
	# the harness collected each exit status (a crash signal already failed the test)
	while read -r n; do
		[[ $n == regent-* ]] || continue
		check "$n exited 0 or was SIGKILLed by the test ($(daemon_status "$n"))" \
			eval '[[ "$(daemon_status "$n")" == "exit 0" || "$(daemon_status "$n")" == "signal 9" ]]'
	done <"$H_TMP/.h/order"
}
