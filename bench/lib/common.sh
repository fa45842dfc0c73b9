# shellcheck shell=bash
# bench/lib/common.sh - shared by the bench subcommands: build discovery, results paths,
# machine description, small statistics helpers.  Sourced by bench/run.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
BENCH_PY=${PYTHON3:-/usr/bin/python3}
[[ -x "$BENCH_PY" ]] || BENCH_PY=python3

b_log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
b_die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# bench_setup_build DIR: REGENT_BIN, REGENT_PLUGIN_DIR, REGENT_SOURCE_DIR for the harness and
# scenario.sh.  DIR defaults to $REGENT_BUILD_DIR, else <repo>/build.
bench_setup_build() {
	local b=${1:-${REGENT_BUILD_DIR:-$REPO_DIR/build}}
	[[ -x "$b/core/regent" ]] || b_die "no regent binary in $b/core (build first, or pass --build DIR)"
	export REGENT_BIN=$b/core/regent REGENT_PLUGIN_DIR=$b/plugins REGENT_SOURCE_DIR=$REPO_DIR
	export PYTHON3=$BENCH_PY BENCH_BUILD_DIR=$b
}

# bench_need_plugins NAME...: fail early when the build lacks a plugin.
bench_need_plugins() {
	local p
	for p in "$@"; do
		[[ -f "$REGENT_PLUGIN_DIR/$p.so" ]] || b_die "plugin $p.so not in $REGENT_PLUGIN_DIR"
	done
}

# bench_results_paths NAME [DIR]: sets B_CSV, B_MD, B_ROWS (DIR default bench/results).
bench_results_paths() {
	local name=$1 dir=${2:-$BENCH_DIR/results} stamp
	stamp=$(date +%Y%m%d-%H%M%S)
	mkdir -p "$dir"
	B_CSV=$dir/$name-$stamp.csv
	B_MD=$dir/$name-$stamp.md
	B_ROWS=$dir/.$name-$stamp.rows.jsonl
	: > "$B_ROWS"
}

# bench_machine FILE: the machine and versions, as Markdown lines.
bench_machine() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	{
		printf -- '- date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
		printf -- '- machine: %s cores (nproc), CPU "%s", kernel %s, %s MB RAM\n' "$(nproc)" "$cpu" \
			"$(uname -r)" "$(awk '/^MemTotal/ { print int($2/1024) }' /proc/meminfo)"
		printf -- '- load average at start: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
		local src
		src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BENCH_BUILD_DIR/CMakeCache.txt" 2>/dev/null)
		printf -- '- regent %s (%s build of %s), haproxy %s, etcd %s, dockerd %s\n' \
			"$(cat "$src/.commit" 2>/dev/null || git -C "${src:-$REPO_DIR}" describe --always --dirty 2>/dev/null)" \
			"$(grep -m1 CMAKE_BUILD_TYPE: "$BENCH_BUILD_DIR/CMakeCache.txt" 2>/dev/null | cut -d= -f2)" "$src" \
			"$(haproxy -v 2>/dev/null | awk 'NR==1 { print $3 }')" \
			"$(etcd --version 2>/dev/null | awk 'NR==1 { print $3 }')" \
			"$(dockerd --version 2>/dev/null | awk '{ print $3 }' | tr -d ,)"
	} > "$1"
}

# bench_report TITLE: print the table, write CSV + Markdown.
bench_report() {
	local title=$1
	[[ -f "${B_MACHINE:-}" ]] || { B_MACHINE=$(mktemp); bench_machine "$B_MACHINE"; }
	"$BENCH_PY" "$BENCH_DIR/lib/report.py" "$B_ROWS" "$B_CSV" "$B_MD" "$title" "$B_MACHINE"
	echo
	echo "CSV:      $B_CSV"
	echo "Markdown: $B_MD"
}

# cpu_ns PID: CPU time (user+system) of every thread of PID, in ns (schedstat).
cpu_ns() {
	local f s=0 v
	for f in /proc/"$1"/task/*/schedstat; do
		read -r v _ < "$f" 2>/dev/null && s=$((s + v))
	done
	echo "$s"
}

# mem_kb PID FIELD: VmRSS / VmHWM in kB.
mem_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# now_ns: wall clock in ns.
now_ns() { date +%s%N; }

# bench_track_masters: call from the exit trap before harness_cleanup.  A managed haproxy runs
# in its own session (it outlives regent), so the harness's process-group stop of a regent
# that had to be SIGKILLed, or of a run cut short, does not reach it even with keep_running =
# false: every master still answering on a master socket under $H_TMP is recorded as a harness
# daemon (by its pid and start time: tests/haproxy/hxlib.sh hx_track_master) and stopped with
# the rest.
bench_track_masters() {
	[[ -n "${H_TMP:-}" && -d "$H_TMP" ]] || return 0
	# shellcheck source=../../tests/haproxy/hxlib.sh
	source "$REPO_DIR/tests/haproxy/hxlib.sh"
	local sock
	while IFS= read -r sock; do
		hx_track_master "$sock" || true
	done < <(find "$H_TMP" -name 'haproxy-master.sock' -type s 2>/dev/null)
}
