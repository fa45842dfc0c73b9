#!/usr/bin/env bash
# files_test.sh - the haproxy sink's files (#14.3, #15.2), against the real haproxy 2.6:
#  - config_file (or state_file) in a directory others can write is refused by --check-config,
#    naming the directory and its mode (0777 and 1777 alike); 0750 is accepted;
#  - temporary files are per instance (CONFIG.PID-N.new/.tmp): during a make-before-break
#    trial (a SIGHUP that changes [sink haproxy]) the old and the new instance use different
#    names, and none is left once the new one has proven itself;
#  - at start, temporary files of a process that is gone are removed (regular files of ours
#    only: a symlink, or one of a live pid, stays);
#  - the generated files (config_file, the state file) are mode 0640;
#  - runtime changes are written over their own server lines in place (same inode, no reload),
#    and the patched file is byte for byte what a new instance's whole render gives;
#  - after a power loss (haproxy gone, config_file its text plus zeroed blocks, the state file
#    garbage: what writes without fsync may leave), the next start rewrites it and routes;
#  - haproxy's output file past output_max_size is kept as .log.1 and emptied, haproxy writing
#    on into it (no NUL); a step that fails is named once and the next check trims it.
set -u
: "${REGENT_BIN:?}" "${REGENT_PLUGIN_DIR:?}" "${REGENT_TEST_DIR:?}"
# shellcheck source=../harness/lib.sh
source "$REGENT_TEST_DIR/harness/lib.sh"
harness_init || exit 1
# shellcheck source=hxlib.sh
source "$REGENT_TEST_DIR/haproxy/hxlib.sh"

PY=${PYTHON3:-python3}
TOOL=("$PY" "$REGENT_TEST_DIR/haproxy/hxtool.py")
T=$H_TMP
INST=$T/instances
HX=$T/hx
mkdir -p "$HX"
chmod 0750 "$HX"
CFG=$HX/haproxy.cfg
MASTER=$HX/haproxy-master.sock
P_W=$(free_port); P_STATS=$(free_port); P_B=$(free_port); P_A=$(free_port)
daemon_start be "${TOOL[@]}" backend "$P_B" b1
wait_for --timeout 20 http_get "http://127.0.0.1:$P_B/" >/dev/null || { echo "backend did not start" >&2; exit 1; }
echo "w-1 web 127.0.0.1 $P_B" > "$INST"

INI=$T/regent.ini
mkini() { # mkini FILE CONFIG_FILE [extra [sink haproxy] lines]
    cat > "$1" <<EOF
[agent]
node = hx-files
debounce = 5ms
state_dir = $T/state
log_level = debug

[source testsource]
file = $INST
interval = 10ms

[store teststore]

[sink haproxy]
manage = true
config_file = $2
bind_address = 127.0.0.1
stats = 127.0.0.1:$P_STATS
reload_interval = 200ms
check_interval = 1s
${3:-}

[service web]
port = $P_W
mode = http

[service api]
port = $P_A
EOF
}
check_config() { "$REGENT_BIN" --check-config -c "$1" -p "$REGENT_PLUGIN_DIR" 2>&1; }

# --- a directory others can write is refused -------------------------------------------------
for mode in 0777 1777; do
    d=$T/open-$mode
    mkdir -p "$d" && chmod "$mode" "$d"
    mkini "$T/open.ini" "$d/haproxy.cfg"
    out=$(check_config "$T/open.ini"); rc=$?
    check "dir mode $mode: --check-config fails" test "$rc" -ne 0
    check_contains "dir mode $mode: the error names the directory and its mode" "$out" \
        "the directory $d of $d/haproxy.cfg is writable by others (mode $mode)"
done
mkini "$T/st.ini" "$CFG" "state_file = $T/open-0777/haproxy.state"
check_contains "state_file in a directory others can write: refused, named" \
    "$(check_config "$T/st.ini")" "the directory $T/open-0777 of $T/open-0777/haproxy.state is writable by others"
mkini "$INI" "$CFG" "threads = 1"
check "dir mode 0750: --check-config accepts it" check_config "$INI"
sed -e 's#^manage = true$#manage = false\nadmin_socket = /run/none.sock\nreload_command = /bin/true#' \
    -e 's#^threads = 1$#threads = 2#' "$INI" > "$T/thr-drive.ini"
check_contains "threads without manage: refused, named" "$(check_config "$T/thr-drive.ini")" \
    "sink haproxy.threads: needs manage = true (a haproxy regent does not start has its own global section: set \`nbthread\` there)"

# --- leftovers of a run that is gone -----------------------------------------------------------
echo stale > "$CFG.new"                       # the older fixed name
echo stale > "$CFG.999999999-3.new"           # a pid that cannot exist
echo stale > "$HX/haproxy.state.999999999-3.tmp"
echo live > "$CFG.1-1.tmp"                    # pid 1 lives: not ours to remove
echo victim > "$T/victim"
ln -s "$T/victim" "$CFG.999999998-1.tmp"      # a link is never followed nor removed

LOG=$(daemon_log regent)
daemon_start regent "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
check "regent routes web" wait_for --timeout 30 http_get "http://127.0.0.1:$P_W/"
hx_track_master "$MASTER"
check "ready (the sink proved itself)" wait_for --timeout 15 grep -q 'info: sink haproxy: ready' "$LOG"
check "manage, no include: the global skips the httpclient's CA store" \
    grep -qx '    httpclient.ssl.verify none' "$CFG"
check "threads = 1: nbthread in the global section" grep -qx '    nbthread 1' "$CFG"
check_eq "threads = 1: the worker runs one thread" 1 \
    "$(haproxy_master_cmd --sock "$MASTER" "@1 show info" 2>/dev/null | awk -F': ' '$1 == "Nbthread" { print $2 }')"
for f in "$CFG.new" "$CFG.999999999-3.new" "$HX/haproxy.state.999999999-3.tmp"; do
    check "start: the leftover $(basename "$f") is removed" test ! -e "$f"
done
check "start: the removal is logged" grep -q "removed $CFG.999999999-3.new, a temporary file of a run that is gone" "$LOG"
check "start: a live pid's file stays" test -f "$CFG.1-1.tmp"
check "start: the symlink stays" test -L "$CFG.999999998-1.tmp"
check_eq "start: its target untouched" victim "$(cat "$T/victim")"
rm -f "$CFG.1-1.tmp" "$CFG.999999998-1.tmp"

# --- modes -----------------------------------------------------------------------------------
check_eq "config_file is mode 640" 640 "$(stat -c %a "$CFG")"

# --- make-before-break: per-instance temporary files --------------------------------------------
tmpnames() { grep -o 'temporary files of this instance: [^,]*' "$LOG" | awk '{ print $NF }'; }
check_eq "one instance so far" 1 "$(tmpnames | wc -l)"
mkini "$INI" "$CFG" "slots = 4"   # another file: the trial instance writes a candidate
daemon_kill regent HUP
check "the new instance proved itself and took over" \
    wait_for --timeout 20 grep -q 'sink haproxy: the new configuration took over' "$LOG"
mapfile -t names < <(tmpnames)
check_eq "two instances" 2 "${#names[@]}"
check "their candidate files differ (${names[0]:-?} / ${names[1]:-?})" test "${names[0]:-x}" != "${names[1]:-x}"
check_contains "the candidate name carries the pid" "${names[1]:-}" "$CFG.$(daemon_pid regent)-"
check "the new file (4 slots) is installed" wait_for --timeout 10 grep -q 'server s4 ' "$CFG"
check "web still routed" http_get "http://127.0.0.1:$P_W/"
settled() { ! grep -q . <(find "$HX" -name '*.new' -o -name '*.tmp'); }
check "no temporary file left" wait_for --timeout 10 settled
check_eq "config_file still mode 640 after the reload" 640 "$(stat -c %a "$CFG")"
if [[ -f "$HX/haproxy.state" ]]; then
    check_eq "the state file is mode 640" 640 "$(stat -c %a "$HX/haproxy.state")"
fi

# --- the mirror writes runtime changes in place (#15.1) ------------------------------------------
# Instances join and leave within the 4 slots: no reload; each change is written over its own
# server lines (host->file_patch), so the file keeps its inode; then a new instance of the sink
# (a SIGHUP that changes only how long `haproxy -c` may take) renders the whole file from the
# same catalog, and it must be byte for byte the patched one (a changed text would be written:
# a SIGHUP that changed timeout_check here failed this check).
setinst() { printf '%s\n' "$@" > "$INST.tmp" && mv "$INST.tmp" "$INST"; }
ino0=$(stat -c %i "$CFG")
nrel0=$(grep -c 'sink haproxy: haproxy reloaded' "$LOG")
P_X=$(free_port); P_Y=$(free_port); P_Z=$(free_port)
setinst "w-1 web 127.0.0.1 $P_B" "w-2 web 127.0.0.1 $P_X" "w-3 web 127.0.0.1 $P_Y" "w-4 web ::1 $P_Z"
check "mirror: w-2 and w-3 written into the file" \
    wait_for --timeout 10 eval "grep -q '# w-2\$' '$CFG' && grep -q '# w-3\$' '$CFG'"
# An IPv6 server line (bracketed, padded before its comment), as hx_render_line writes it directly.
check "mirror: w-4's IPv6 line" \
    wait_for --timeout 10 grep -Eq "^    server s[0-9]+ \[::1\]:${P_Z}[ a-z0-9]*  # w-4\$" "$CFG"
setinst "w-1 web 127.0.0.1 $P_B" "w-3 web 127.0.0.1 $P_Y" "w-4 web ::1 $P_Z"
check "mirror: w-2 leaves the file" wait_for --timeout 10 eval "! grep -q '# w-2\$' '$CFG'"
check_eq "mirror: written in place (same inode, no rename)" "$ino0" "$(stat -c %i "$CFG")"
check_eq "mirror: no reload for these changes" "$nrel0" "$(grep -c 'sink haproxy: haproxy reloaded' "$LOG")"
# Two services changed in one batch: the patch walks the services on its list (mirrorq.c), in
# the order they changed, and writes their lines in file order; the whole render below must still
# equal the file.  api's first instance adds its listen (a reload); the batches after it do not.
P_V=$(free_port)
setinst "w-1 web 127.0.0.1 $P_B" "w-3 web 127.0.0.1 $P_Y" "w-4 web ::1 $P_Z" "a-1 api 127.0.0.1 $P_V"
check "mirror: api's listen, after a reload" wait_for --timeout 20 grep -q '# a-1$' "$CFG"
check "mirror: api's reload done" wait_for --timeout 20 eval \
    "[[ \$(grep -c 'sink haproxy: haproxy reloaded' '$LOG') -gt $nrel0 ]] && settled"
ino1=$(stat -c %i "$CFG")
nrel1=$(grep -c 'sink haproxy: haproxy reloaded' "$LOG")
setinst "a-2 api 127.0.0.1 $P_X" "w-1 web 127.0.0.1 $P_B" "w-4 web ::1 $P_Z" "a-1 api 127.0.0.1 $P_V"
check "mirror: a-2 joins and w-3 leaves in one batch" \
    wait_for --timeout 10 eval "grep -q '# a-2\$' '$CFG' && ! grep -q '# w-3\$' '$CFG'"
setinst "w-3 web 127.0.0.1 $P_Y" "w-1 web 127.0.0.1 $P_B" "w-4 web ::1 $P_Z" "a-1 api 127.0.0.1 $P_V"
check "mirror: w-3 joins and a-2 leaves in one batch" \
    wait_for --timeout 10 eval "grep -q '# w-3\$' '$CFG' && ! grep -q '# a-2\$' '$CFG'"
check_eq "mirror: both batches written in place" "$ino1" "$(stat -c %i "$CFG")"
check_eq "mirror: no reload for them" "$nrel1" "$(grep -c 'sink haproxy: haproxy reloaded' "$LOG")"
check "mirror: haproxy -c accepts the patched file" haproxy -c -q -f "$CFG"
# Every server line, rendered whole or patched in place, names its slot's number as its id:
# haproxy 2.6 compares the name of every server without an explicit id with each one before it,
# O(n^2) at every parse (8.3 s of CPU for `haproxy -c` at 16,616 slots in one listen, 0.11 s with
# the ids).
ids_named() {
    local n bad
    n=$(grep -cE '^    server ' "$CFG")
    bad=$(grep -E '^    server ' "$CFG" | grep -cvE '^    server s([0-9]+) [^ ]+ id \1( |$)')
    [[ $n -gt 0 && $bad -eq 0 ]]
}
check "mirror: every server line names its slot's number as its id" ids_named
cp "$CFG" "$T/patched.cfg"
ntook=$(grep -c 'sink haproxy: the new configuration took over' "$LOG")
mkini "$INI" "$CFG" "slots = 4
check_timeout = 25s"
daemon_kill regent HUP
check "mirror: a new instance took over" \
    wait_for --timeout 20 eval "[[ \$(grep -c 'sink haproxy: the new configuration took over' '$LOG') -gt $ntook ]]"
check "mirror: its whole render equals the patched file" cmp "$T/patched.cfg" "$CFG"

# --- after a power loss (#15: a managed haproxy's files are written without fsync) -------------
# No haproxy outlives a power loss, and what the unsynced writes left on the disk is read back
# before haproxy starts: here config_file is its text followed by blocks of zeros (the rename on
# the disk before the data's last blocks) and the state file is garbage.  The next start says so,
# keeps no slot of the file, writes it again (no NUL), and haproxy starts and routes.
mpid=$(hx_master_pid "$MASTER")
hx_track_master "$MASTER"
daemon_stop regent
[[ -n "$mpid" ]] && daemon_stop "haproxy-master-$mpid"
check "power loss: haproxy is gone" eval "! hx_master_pid '$MASTER' | grep -q ."
truncate -s +8192 "$CFG"
printf 'garbage\0\0\0\n' > "$HX/haproxy.state"
nnul=$(grep -c 'has NUL bytes' "$LOG")
daemon_start regent "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
check "power loss: the torn file is named" wait_for --timeout 20 eval \
    "[[ \$(grep -c 'has NUL bytes (cut short by a power loss?)' '$LOG') -gt $nnul ]]"
check "power loss: regent routes web again" wait_for --timeout 30 http_get "http://127.0.0.1:$P_W/"
hx_track_master "$MASTER"
check "power loss: config_file written again, no NUL" eval "tr -d '\\000' < '$CFG' | cmp -s - '$CFG'"
check "power loss: haproxy -c accepts it" haproxy -c -q -f "$CFG"

# --- haproxy's output file kept bounded (output_max_size) ---------------------------------------
# haproxy appends its output to <state_dir>/<config name>.log for as long as it runs (lines per
# runtime change and health change): past output_max_size regent copies it to .log.1 and empties
# it, haproxy writing on into the emptied file (O_APPEND: no hole of NULs before its next line).
# A check every 200 ms here instead of every minute (REGENT_HX_TEST_OUTPUT_CHECK_MS).
OUT=$T/state/haproxy.cfg.log
daemon_stop regent
check "output: haproxy wrote its output file" test -s "$OUT"
out0=$(stat -c %s "$OUT")
mkini "$INI" "$CFG" "slots = 4
output_max_size = 1000"
export REGENT_HX_TEST_OUTPUT_CHECK_MS=200
daemon_start regent "$REGENT_BIN" -c "$INI" -p "$REGENT_PLUGIN_DIR"
unset REGENT_HX_TEST_OUTPUT_CHECK_MS
check "output: past the limit, kept as .log.1 and started anew (logged)" wait_for --timeout 20 \
    grep -q "haproxy's output $OUT passed output_max_size (1000 bytes): its [0-9]* bytes kept as $OUT.1, the file started anew" "$LOG"
check "output: .log.1 holds what the file had (at least its $out0 bytes)" \
    eval "[[ \$(stat -c %s '$OUT.1') -ge $out0 ]]"
check "output: no temporary copy left" test ! -e "$OUT.1.tmp"
check "output: the file emptied" eval "[[ \$(stat -c %s '$OUT') -lt 1000 ]]"
toggle() { # w-2 joins or leaves until haproxy's output file holds more than $1 bytes; a copy
    local i                 # of it then in $T/out.snap (before the next check could trim it)
    for ((i = 0; i < 120; i++)); do
        if ((i % 2 == 0)); then
            setinst "w-1 web 127.0.0.1 $P_B" "w-2 web 127.0.0.1 $P_X"
            wait_for --timeout 10 grep -q '# w-2$' "$CFG" || return 1
        else
            setinst "w-1 web 127.0.0.1 $P_B"
            wait_for --timeout 10 eval "! grep -q '# w-2\$' '$CFG'" || return 1
        fi
        cp "$OUT" "$T/out.snap"
        [[ $(stat -c %s "$T/out.snap") -gt $1 ]] && return 0
    done
    return 1
}
# One join or leave writes at most ~250 bytes: the copy is taken well before 1000.
check "output: haproxy writes on into the emptied file" toggle 300
check "output: no NUL in it (haproxy appends at its new end)" \
    eval "tr -d '\\000' < '$T/out.snap' | cmp -s - '$T/out.snap'"
check "output: haproxy's lines of the changes are there" grep -q 'Server web/s[0-9]* is' "$T/out.snap"
# A step that fails (the temporary copy's name taken by a directory) is named once, the file
# left as it is; once the way is free the next check trims it.
mkdir "$OUT.1.tmp"
ntrim=$(grep -c "haproxy's output $OUT passed output_max_size" "$LOG")
check "output: past the limit again" toggle 1000
check "output: the failure names the step, the file and the cause" wait_for --timeout 10 \
    grep -q "haproxy's output $OUT: cannot keep it within output_max_size (1000 bytes): cannot create $OUT.1.tmp: Is a directory; tried again every 200 ms" "$LOG"
sleep 1
check_eq "output: named once, not at every check" 1 \
    "$(grep -c "haproxy's output $OUT: cannot keep it within output_max_size" "$LOG")"
check "output: the file left as it was" eval "[[ \$(stat -c %s '$OUT') -gt 1000 ]]"
rmdir "$OUT.1.tmp"
check "output: trimmed once the way is free" wait_for --timeout 10 eval \
    "[[ \$(grep -c \"haproxy's output $OUT passed output_max_size\" '$LOG') -gt $ntrim ]]"
check "output: routes all along" http_get "http://127.0.0.1:$P_W/"

daemon_stop regent
harness_summary
