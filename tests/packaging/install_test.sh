#!/usr/bin/env bash
# install_test.sh - `cmake --install` into a DESTDIR, then the plugin SDK as
# a third party uses it: the example plugin (examples/jsonfile, taken from
# the install) built out of tree against that install alone, with its
# Makefile (pkg-config regent-plugin) and with CMake (find_package(regent));
# the installed regent loads it and it writes the catalog file; a plugin
# built for a future ABI major (or a newer minor) is refused.
set -u
source "$(dirname "$0")/lib.sh"
unset REGENT_PLUGIN_DIR_OVERRIDE CPATH C_INCLUDE_PATH
TESTPLUGINS=$REGENT_PLUGIN_DIR
unset REGENT_PLUGIN_DIR # the installed regent must not see the build's plugins by default

R=$T/root
install_destdir "$R"; rc=$?
check "cmake --install into a DESTDIR" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { cat "$T/install.log"; summary; exit 1; }
BIN=$R$PREFIX/sbin/regent
SYSCONF=$PREFIX/etc; [ "$PREFIX" = /usr ] && SYSCONF=/etc
# REGENT_CONFIG_FILE: SYSCONF/regent/regent.ini unless the build set another
CONFIG=$(cache_get REGENT_CONFIG_FILE)
UNIT=$(cache_get REGENT_SYSTEMD_UNIT_DIR | sed "s#^#$R#")/regent.service

# ---- the layout ----
check "regent binary installed in sbin (a daemon)" [ -x "$BIN" ]
check "no regent in bin" [ ! -e "$R$PREFIX/bin/regent" ]
# One configuration path: where the example is installed, the binary's
# default -c and the unit's -c (issue 17: /usr/local/etc vs /etc/regent).
check "the binary's default -c is the installed regent.ini ($CONFIG)" \
	grep -qF -- "-c, --config FILE     configuration (default $CONFIG)" <("$BIN" --help)
check "the unit runs the installed binary with the installed regent.ini" \
	grep -qx "ExecStart=$PREFIX/sbin/regent -c $CONFIG" "$UNIT"
check "the unit's reload checks the same file" \
	grep -qx "ExecReload=$PREFIX/sbin/regent --check-config -c $CONFIG" "$UNIT"
check "the shipped regent.ini names itself and the installed docs" \
	bash -c "head -1 '$R$CONFIG' | grep -qxF '; $CONFIG - regent'\''s configuration (regent.ini(5)).' && grep -qF '$PREFIX/share/doc/regent/NAME.md' '$R$CONFIG'"
check "plugin.h installed, identical to the source" cmp -s "$R$PREFIX/include/regent/plugin.h" "$REGENT_SOURCE_DIR/include/regent/plugin.h"
check "plugin_host.h (the host table, which plugin.h includes) installed, identical to the source" \
    cmp -s "$R$PREFIX/include/regent/plugin_host.h" "$REGENT_SOURCE_DIR/include/regent/plugin_host.h"
check "regent-plugin.pc installed" [ -f "$R$PREFIX/$LIBDIR/pkgconfig/regent-plugin.pc" ]
check "CMake package config installed" [ -f "$R$PREFIX/$LIBDIR/cmake/regent/regentConfig.cmake" -a -f "$R$PREFIX/$LIBDIR/cmake/regent/regentConfigVersion.cmake" ]
check "regent.ini installed in sysconfdir" [ -f "$R$CONFIG" ]
check "systemd unit installed" [ -f "$UNIT" ]
check "sysusers.d entry installed" [ -f "$(cache_get REGENT_SYSUSERS_DIR | sed "s#^#$R#")/regent.conf" ]
check "docs installed" [ -f "$R$PREFIX/share/doc/regent/README.md" -a -f "$R$PREFIX/share/doc/regent/plugin-api.md" ]
check "example plugin source installed" [ -f "$R$PREFIX/share/doc/regent/examples/jsonfile/jsonfile.c" -a -f "$R$PREFIX/share/doc/regent/examples/jsonfile/Makefile" ]
if [ -n "$(cache_get SCDOC | grep -v NOTFOUND)" ]; then
	check "man page regent(8) installed" [ -s "$R$PREFIX/share/man/man8/regent.8" ]
	check "man page regent.ini(5) installed" [ -s "$R$PREFIX/share/man/man5/regent.ini.5" ]
	check "regent(8) names the compiled-in plugin dir" grep -qF "$PLUGINDIR" "$R$PREFIX/share/man/man8/regent.8"
else
	skip "man pages: scdoc was not found when this build was configured (apt-get install scdoc)"
fi
check "the compiled-in default plugin dir is the installed one" grep -qF "or $PLUGINDIR)" <("$BIN" --help)
for p in $(built_plugins); do
	check "in-tree plugin $p installed in the plugin dir" [ -f "$R$PLUGINDIR/$p.so" ]
done
leaked=$(find "$R" -name 'test*.so' -o -name 'broken_*.so' -o -name 'synthsource.so' | head -1)
check "no test-only plugin installed" [ -z "$leaked" ]
check "installed regent runs" grep -Eq '^regent [0-9]+\.[0-9]+\.[0-9]+ \(plugin ABI 1\.[0-9]+\)$' <("$BIN" --version)

# The shipped regent.ini: all comments (regent refuses to run on it with one
# clear error), and its [agent] keys, once uncommented, are valid.
"$BIN" --check-config -c "$R$CONFIG" >"$T/stdout" 2>"$T/err"; rc=$?
check "shipped regent.ini alone is refused (nothing to run)" [ $rc -eq 1 ]
check "... with exactly that one error" grep -qx "regent: 1 error in $R$CONFIG" "$T/err"
sed -E 's/^; ((node|host_ip|log_level|debounce|debounce_max|stop_timeout|plugin_dir) +=)/\1/' \
	"$R$CONFIG" >"$T/agent.ini"
printf '[store teststore]\n' >>"$T/agent.ini"
"$BIN" --check-config -c "$T/agent.ini" --plugin-dir "$TESTPLUGINS" >"$T/stdout" 2>"$T/err"; rc=$?
check "shipped [agent] keys, uncommented, are valid" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$T/err"

# ---- the example plugin, built out of tree against the install alone ----
export PKG_CONFIG_PATH=$R$PREFIX/$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
check "pkg-config finds regent-plugin in the DESTDIR" pkg-config --exists regent-plugin
check "regent-plugin.pc version is the project version" [ "$(pkg-config --modversion regent-plugin)" = "$("$BIN" --version | cut -d' ' -f2)" ]
check "regent-plugin.pc requires libuv (plugin.h includes uv.h)" grep -qw libuv <(pkg-config --print-requires regent-plugin)
check "regent-plugin.pc Cflags point into the DESTDIR" grep -qF -- "-I$R$PREFIX/include" <(pkg-config --cflags regent-plugin)
check "regent-plugin.pc plugindir is regent's default plugin dir" [ "$(pkg-config --variable=plugindir regent-plugin)" = "$R$PLUGINDIR" ]
check "regent-plugin.pc abi_major matches the header" [ "$(pkg-config --variable=abi_major regent-plugin)" = "$(sed -n 's/^#define REGENT_ABI_MAJOR //p' "$R$PREFIX/include/regent/plugin.h")" ]
cp -r "$R$PREFIX/share/doc/regent/examples/jsonfile" "$T/jsonfile"
make -C "$T/jsonfile" CFLAGS="-O2 -g -Werror" CPPFLAGS="-MD -MF $T/jsonfile.d" >"$T/make.log" 2>&1; rc=$?
check "example plugin builds with its Makefile (pkg-config regent-plugin, -Werror)" [ $rc -eq 0 -a -f "$T/jsonfile/jsonfile.so" ]
[ $rc -eq 0 ] || cat "$T/make.log"
check "the build used no path into the source tree" bash -c "! grep -qF '$REGENT_SOURCE_DIR' '$T/make.log' '$T/jsonfile.d'"
check "the build used the DESTDIR's plugin.h" grep -qF "$R$PREFIX/include/regent/plugin.h" "$T/jsonfile.d"
check "the plugin exports only regent_plugin_entry" [ "$(nm -D --defined-only "$T/jsonfile/jsonfile.so" | awk '{print $3}' | sort | tr '\n' ' ')" = "regent_plugin_entry " ]
make -C "$T/jsonfile" install >"$T/make-install.log" 2>&1; rc=$?
check "make install puts it in the (DESTDIR's) plugin dir" [ $rc -eq 0 -a -f "$R$PLUGINDIR/jsonfile.so" ]
rm -f "$R$PLUGINDIR/jsonfile.so"

# The same with CMake: find_package(regent) -> regent::plugin, relocated.
if command -v cmake >/dev/null; then
	# No sysroot needed: the package config is relocatable (the DESTDIR is
	# found from where regentConfig.cmake is).
	env -u PKG_CONFIG_SYSROOT_DIR -u PKG_CONFIG_PATH \
	cmake -S "$T/jsonfile" -B "$T/jsonfile-cmake" -DCMAKE_PREFIX_PATH="$R$PREFIX" \
		-DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_C_FLAGS="-Werror -Wall -Wextra" >"$T/cmake.log" 2>&1 &&
		cmake --build "$T/jsonfile-cmake" >>"$T/cmake.log" 2>&1; rc=$?
	check "example plugin builds with CMake (find_package(regent), regent::plugin)" [ $rc -eq 0 -a -f "$T/jsonfile-cmake/jsonfile.so" ]
	[ $rc -eq 0 ] || tail -30 "$T/cmake.log"
	check "... against the DESTDIR's header" grep -qE -- "(-I|-isystem )$R$PREFIX/include" "$T/jsonfile-cmake/compile_commands.json"
	check "... and no path into the source tree" bash -c "! grep -qF '$REGENT_SOURCE_DIR' '$T/jsonfile-cmake/compile_commands.json'"
	cmake --install "$T/jsonfile-cmake" >>"$T/cmake.log" 2>&1; rc=$?
	check "... and installs into REGENT_PLUGIN_DIR (relocated into the DESTDIR)" [ $rc -eq 0 -a -f "$R$PLUGINDIR/jsonfile.so" ]
	rm -f "$R$PLUGINDIR/jsonfile.so"
fi

# ---- the installed regent loads it and it writes the catalog ----
P=$T/plugins
mkdir -p "$P" "$T/out"
cp "$T/jsonfile/jsonfile.so" "$TESTPLUGINS/testsource.so" "$TESTPLUGINS/teststore.so" "$P/"
printf 'n1/aaaa/80 whoami 127.0.0.2 18001\nn1/bbbb/80 whoami 127.0.0.3 18002 udp a,b\nn1/cccc/53 dns 127.0.0.4 5353\n' >"$T/instances.txt"
cat >"$T/r.ini" <<EOF2
[agent]
node = pkg-1
debounce = 20ms
[source testsource]
file = $T/instances.txt
interval = 50ms
[store teststore]
[sink jsonfile]
file = $T/out/catalog.json
mode = 0640
EOF2
check "--list-plugins shows the example as a sink" grep -Eq "^jsonfile +sink +1\.0\.0 +$P/jsonfile.so$" <("$BIN" --list-plugins --plugin-dir "$P")
check "--check-config accepts [sink jsonfile]" grep -q "configuration OK" <("$BIN" --check-config -c "$T/r.ini" --plugin-dir "$P" 2>&1)
"$BIN" -c "$T/r.ini" --plugin-dir "$P" >"$T/run.log" 2>&1 &
RP=$!; PIDS+=("$RP")
inst() { # id address port proto service_port tags
	printf '{"id":"%s","address":"%s","port":%s,"proto":"%s","service_port":%s,"node":"pkg-1","tags":%s,"meta":{}}' "$@"
}
want1="{\"node\":\"pkg-1\",\"services\":{\"dns\":[$(inst n1/cccc/53 127.0.0.4 5353 tcp 5353 '[]')],\"whoami\":[$(inst n1/aaaa/80 127.0.0.2 18001 tcp 18001 '[]'),$(inst n1/bbbb/80 127.0.0.3 18002 udp 18002 '["a","b"]')]}}"
check "the installed regent loads it and it writes the catalog" wait_for 10 "$PYTHON3" "$(dirname "$0")/check_catalog.py" "$T/out/catalog.json" "$want1"
check "the file has the configured mode (0640, whatever the umask)" [ "$(stat -c %a "$T/out/catalog.json" 2>/dev/null)" = 640 ]
printf 'n1/aaaa/80 whoami 127.0.0.2 18001\n' >"$T/instances.txt"
want2="{\"node\":\"pkg-1\",\"services\":{\"whoami\":[$(inst n1/aaaa/80 127.0.0.2 18001 tcp 18001 '[]')]}}"
check "a change of the catalog rewrites the file" wait_for 10 "$PYTHON3" "$(dirname "$0")/check_catalog.py" "$T/out/catalog.json" "$want2"
check "no temporary file is left behind" [ "$(ls -A "$T/out")" = catalog.json ]
kill -TERM "$RP"; wait_pid "$RP"; rc=$?
check "regent stops cleanly (exit 0)" [ $rc -eq 0 ]
check "the log names the sink and the file" grep -q "sink jsonfile: writing the catalog to $T/out/catalog.json" "$T/run.log"

# A directory that does not exist yet: retried with backoff, then written.
sed "s#$T/out/catalog.json#$T/later/catalog.json#" "$T/r.ini" >"$T/later.ini"
"$BIN" -c "$T/later.ini" --plugin-dir "$P" >"$T/later.log" 2>&1 &
RP=$!; PIDS+=("$RP")
check "a failed write is logged with the file and the cause, and retried" wait_for 10 grep -qF "sink jsonfile: cannot write $T/later/catalog.json: cannot create the temporary file $T/later/catalog.json.tmp: No such file or directory; retrying in" "$T/later.log"
mkdir "$T/later"
check "the retry writes the file once it can" wait_for 10 "$PYTHON3" "$(dirname "$0")/check_catalog.py" "$T/later/catalog.json" "$want2"
check "and the sink is healthy again" wait_for 5 grep -q "sink jsonfile: healthy" "$T/later.log"
kill -TERM "$RP"; wait_pid "$RP"; rc=$?
check "regent stops cleanly after the retries (exit 0)" [ $rc -eq 0 ]

# valgrind: the example plugin through writes, a failed write, a reload and a
# stop (under ASan, LeakSanitizer checks the runs above at exit instead).
if [ "${REGENT_SANITIZE:-0}" != 1 ] && command -v valgrind >/dev/null; then
	rm -rf "$T/later"
	printf 'n1/aaaa/80 whoami 127.0.0.2 18001\nn1/bbbb/80 whoami 127.0.0.3 18002 udp a,b\n' >"$T/instances.txt"
	REGENT_NO_DLCLOSE=1 valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
		"$BIN" -c "$T/later.ini" --plugin-dir "$P" >"$T/vg.log" 2>&1 &
	VG=$!; PIDS+=("$VG")
	check "valgrind: the plugin retries its first write" wait_for 30 grep -q "retrying in" "$T/vg.log"
	mkdir "$T/later"
	check "valgrind: the catalog reaches the file" wait_for 30 grep -q n1/bbbb/80 "$T/later/catalog.json"
	printf 'n1/aaaa/80 whoami 127.0.0.2 18001\n' >"$T/instances.txt"
	check "valgrind: a removal reaches the file" wait_for 30 bash -c "! grep -q n1/bbbb/80 '$T/later/catalog.json'"
	kill -HUP "$VG"; sleep 1
	kill -TERM "$VG"; wait_pid "$VG"; rc=$?
	check "valgrind: the example plugin leaks nothing and has no errors" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || tail -40 "$T/vg.log"
elif [ "${REGENT_SANITIZE:-0}" = 1 ]; then
	echo "# valgrind run not done: sanitizer build (ASan covers it)"
else
	skip "valgrind run: valgrind not installed (apt-get install valgrind)"
fi

# Bad keys are reported as FILE:LINE by the plugin's validate().
printf '[agent]\n[sink jsonfile]\nfile = relative.json\nmode = 0999\n' >"$T/bad.ini"
"$BIN" --check-config -c "$T/bad.ini" --plugin-dir "$P" >"$T/out.txt" 2>"$T/err"; rc=$?
check "a relative file is refused with FILE:LINE" grep -qx "$T/bad.ini:3: sink jsonfile.file: expected an absolute file path, got \"relative.json\"" "$T/err"
check "a bad mode is refused with FILE:LINE" grep -qx "$T/bad.ini:4: sink jsonfile.mode: expected an octal mode such as 0644, got \"0999\"" "$T/err"
check "--check-config exits 1 on them" [ $rc -eq 1 ]

# ---- a plugin built for another ABI is refused ----
MAJ=$(sed -n 's/^#define REGENT_ABI_MAJOR //p' "$R$PREFIX/include/regent/plugin.h")
MIN=$(sed -n 's/^#define REGENT_ABI_MINOR //p' "$R$PREFIX/include/regent/plugin.h")
abi_build() { # NAME MAJOR MINOR [CPPFLAGS]: the example built against a patched copy of the installed header
	local d=$T/abi-$1
	mkdir -p "$d/include/regent" "$d/src" "$d/plugins"
	sed -e "s/^#define REGENT_ABI_MAJOR .*/#define REGENT_ABI_MAJOR $2/" \
	    -e "s/^#define REGENT_ABI_MINOR .*/#define REGENT_ABI_MINOR $3/" \
		"$R$PREFIX/include/regent/plugin.h" >"$d/include/regent/plugin.h"
	cp "$R$PREFIX/include/regent/plugin_host.h" "$d/include/regent/"
	grep -q "^#define REGENT_ABI_MAJOR $2\$" "$d/include/regent/plugin.h" || return 1
	cp "$T/jsonfile/jsonfile.c" "$T/jsonfile/Makefile" "$d/src/"
	make -C "$d/src" CPPFLAGS="-I$d/include ${4:-}" >"$d/make.log" 2>&1 || { cat "$d/make.log"; return 1; }
	cp "$d/src/jsonfile.so" "$TESTPLUGINS/testsource.so" "$TESTPLUGINS/teststore.so" "$d/plugins/"
}
check "the example builds against a header patched to ABI $((MAJ + 1)).0" abi_build major $((MAJ + 1)) 0
D=$T/abi-major/plugins
"$BIN" --check-config -c "$T/r.ini" --plugin-dir "$D" >"$T/out.txt" 2>"$T/err"; rc=$?
check "--check-config refuses the ABI $((MAJ + 1)) plugin (exit 1)" [ $rc -eq 1 ]
check "... with the expected message" grep -qx "$T/r.ini:8: \[sink jsonfile\]: $D/jsonfile.so: built for plugin ABI $((MAJ + 1)).0, this regent supports ABI $MAJ (rebuild the plugin against this regent's plugin.h)" "$T/err"
rm -rf "$T/out"; mkdir "$T/out"
timeout 20 "$BIN" -c "$T/r.ini" --plugin-dir "$D" >"$T/out.txt" 2>"$T/err"; rc=$?
check "running with it exits 1 before touching anything" [ $rc -eq 1 -a ! -e "$T/out/catalog.json" ]
check "... with the same message" grep -q "built for plugin ABI $((MAJ + 1)).0, this regent supports ABI $MAJ " "$T/err"
"$BIN" --list-plugins --plugin-dir "$D" >"$T/out.txt" 2>"$T/err"
check "--list-plugins names the refused file and why" grep -qx "regent: $D/jsonfile.so: built for plugin ABI $((MAJ + 1)).0, this regent supports ABI $MAJ (rebuild the plugin against this regent's plugin.h)" "$T/err"
check "the example builds against a header patched to ABI $MAJ.$((MIN + 1))" abi_build minor "$MAJ" $((MIN + 1))
D=$T/abi-minor/plugins
"$BIN" --check-config -c "$T/r.ini" --plugin-dir "$D" >"$T/out.txt" 2>"$T/err"; rc=$?
check "a plugin needing a newer ABI minor is refused" grep -qx "$T/r.ini:8: \[sink jsonfile\]: $D/jsonfile.so: needs plugin ABI $MAJ.$((MIN + 1)) but this regent provides $MAJ.$MIN (upgrade regent)" "$T/err"
# The same newer header, but the plugin declares the minor it needs (ABI 1.4):
# it uses no entry of the newer minor, so this (older) regent loads and runs it.
check "the example builds against ABI $MAJ.$((MIN + 1)) declaring it needs $MAJ.$MIN" \
	abi_build needs "$MAJ" $((MIN + 1)) "-DREGENT_PLUGIN_MIN_MINOR=$MIN"
D=$T/abi-needs/plugins
"$BIN" --check-config -c "$T/r.ini" --plugin-dir "$D" >"$T/out.txt" 2>"$T/err"; rc=$?
check "... and this regent ($MAJ.$MIN) accepts it" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$T/err"
rm -rf "$T/out"; mkdir "$T/out"
printf 'n1/aaaa/80 whoami 127.0.0.2 18001\n' >"$T/instances.txt"
"$BIN" -c "$T/r.ini" --plugin-dir "$D" >"$T/needs.log" 2>&1 &
RP=$!; PIDS+=("$RP")
check "... and runs it: the catalog reaches the file" wait_for 10 "$PYTHON3" "$(dirname "$0")/check_catalog.py" "$T/out/catalog.json" "$want2"
kill -TERM "$RP"; wait_pid "$RP"; rc=$?
check "... and stops cleanly (exit 0)" [ $rc -eq 0 ]

summary
