#!/usr/bin/env bash
# deb_test.sh - the Debian packages: packaging/build-deb.sh builds regent and
# regent-dev (dpkg-buildpackage -us -uc -b on a copy of the tree), lintian
# passes (tags explained by overrides), `dpkg -c` lists the expected files
# and no test-only plugin, the package version is `regent --version`, the
# packaged unit verifies, the maintainer scripts do the right thing to
# regent.service on install, upgrade (restarted, never stopped first),
# remove (stopped) and purge (/var/lib/regent removed) (maintscripts.sh),
# and the example plugin builds against the extracted regent-dev and loads
# into the extracted regent.
# Skipped (exit 77) when dpkg-buildpackage is missing, and in the sanitizer
# build (the packages do not depend on the build dir: the normal run covers
# them).
set -u
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/maintscripts.sh"
if ! command -v dpkg-buildpackage >/dev/null; then
	echo "skip - dpkg-buildpackage not found: apt-get install dpkg-dev debhelper lintian to test the Debian packaging"
	exit 77
fi
if [ "${REGENT_SANITIZE:-0}" = 1 ]; then
	# The packages are built from the source tree, not from this build dir:
	# the normal build's run of this test covers them; don't build twice.
	echo "skip - sanitizer build: the .deb does not depend on this build (the normal build's packaging_deb covers it)"
	exit 77
fi
S=$REGENT_SOURCE_DIR
CONTROL=$S/packaging/debian/control

# Every library the build requires (regent_require(VAR module debian-pkg)
# outside tests/) is a build dependency of the package.
for pkg in $(grep -h -o 'regent_require([A-Z_]* [^ ]* [^ )]*)' "$S/CMakeLists.txt" "$S"/plugins/*/CMakeLists.txt "$S/core/CMakeLists.txt" 2>/dev/null |
	sed 's/.* \([^ )]*\))$/\1/' | sort -u); do
	check "Build-Depends lists $pkg (required by the build)" grep -q "^ *\(Build-Depends: *\)\?$pkg\b" "$CONTROL"
done

version=$("$REGENT_BIN" --version | cut -d' ' -f2)
lint=--lintian
command -v lintian >/dev/null || { lint=; skip "lintian not installed (apt-get install lintian)"; }
start=$(date +%s)
bash "$S/packaging/build-deb.sh" $lint "$T/out" >"$T/build.log" 2>&1; rc=$?
echo "build-deb.sh took $(($(date +%s) - start)) s"
sed -n '/lintian/,$p' "$T/build.log" | grep -v '^N:' | head -40
check "build-deb.sh builds the packages${lint:+ and lintian passes}" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -40 "$T/build.log"
arch=$(dpkg --print-architecture)
DEB=$T/out/regent_${version}_$arch.deb
DEV=$T/out/regent-dev_${version}_$arch.deb
check "regent_${version}_$arch.deb built (version = regent --version)" [ -f "$DEB" ]
check "regent-dev_${version}_$arch.deb built" [ -f "$DEV" ]
if [ ! -f "$DEB" ] || [ ! -f "$DEV" ]; then summary; exit 1; fi
check "package version equals regent --version ($version)" [ "$(dpkg-deb -f "$DEB" Version)" = "$version" ]
check "regent-dev version equals regent --version" [ "$(dpkg-deb -f "$DEV" Version)" = "$version" ]

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
dpkg -c "$DEB" | awk '{print $6}' | sed 's#^\./#/#' >"$T/regent.list"
dpkg -c "$DEV" | awk '{print $6}' | sed 's#^\./#/#' >"$T/dev.list"
lists() { grep -qx "$2" "$T/$1.list"; }
for f in /usr/sbin/regent /etc/regent/regent.ini /lib/systemd/system/regent.service \
	/usr/lib/sysusers.d/regent.conf /usr/share/man/man8/regent.8.gz /usr/share/man/man5/regent.ini.5.gz \
	/usr/share/doc/regent/copyright /usr/share/doc/regent/README.Debian; do
	check "regent contains $f" lists regent "$f"
done
for p in $(ls "$S"/plugins/*/CMakeLists.txt 2>/dev/null | sed 's#.*/plugins/\([^/]*\)/CMakeLists.txt#\1#'); do
	check "regent contains the $p plugin" lists regent "/usr/lib/$multiarch/regent/plugins/$p.so"
done
check "regent contains no test-only plugin" bash -c "! grep -E '/(test[a-z]*|broken_[a-z]*|synthsource|[a-z]+_[a-z]+)\.so$' '$T/regent.list'"
check "regent's plugins are all in ${multiarch}/regent/plugins" bash -c "! grep '\.so$' '$T/regent.list' | grep -v '^/usr/lib/$multiarch/regent/plugins/'"
check "regent.ini is a conffile" grep -qx /etc/regent/regent.ini <(dpkg-deb -f "$DEB" Conffiles 2>/dev/null; dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles)
for f in /usr/include/regent/plugin.h /usr/include/regent/plugin_host.h "/usr/lib/$multiarch/pkgconfig/regent-plugin.pc" \
	"/usr/lib/$multiarch/cmake/regent/regentConfig.cmake" "/usr/lib/$multiarch/cmake/regent/regentConfigVersion.cmake" \
	/usr/share/doc/regent-dev/examples/jsonfile/jsonfile.c /usr/share/doc/regent-dev/examples/jsonfile/Makefile \
	/usr/share/doc/regent-dev/examples/jsonfile/CMakeLists.txt \
	/usr/share/doc/regent-dev/examples/nginx/nginx.c /usr/share/doc/regent-dev/examples/nginx/Makefile \
	/usr/share/doc/regent-dev/examples/nginx/CMakeLists.txt; do
	check "regent-dev contains $f" lists dev "$f"
done
check "regent-dev contains the plugin author's guide" grep -Eq '^/usr/share/doc/regent-dev/plugin-api\.md(\.gz)?$' "$T/dev.list"
check "the plugin author's guide ships once (not in regent)" bash -c "! grep -Eq '/plugin-api\.md(\.gz)?$' '$T/regent.list'"
check "regent has no /usr/bin/regent (the daemon is in /usr/sbin, beside regent(8))" bash -c "! grep -qx /usr/bin/regent '$T/regent.list'"
# The docs the shipped regent.ini points to are in the package, under the
# name it gives (NAME.md, or NAME.md.gz which it mentions too).
dpkg-deb --fsys-tarfile "$DEB" | tar -xOf - ./etc/regent/regent.ini >"$T/shipped.ini"
check "the shipped regent.ini points to /usr/share/doc/regent/NAME.md (or .md.gz)" \
	grep -qF "/usr/share/doc/regent/NAME.md" "$T/shipped.ini"
for p in $(ls "$S"/plugins/*/CMakeLists.txt 2>/dev/null | sed 's#.*/plugins/\([^/]*\)/CMakeLists.txt#\1#'); do
	check "the $p plugin's doc is where regent.ini says" grep -Eqx "/usr/share/doc/regent/$p\.md(\.gz)?" "$T/regent.list"
done
# The maintainer is a real address, said in debian/copyright.
maint=$(dpkg-deb -f "$DEB" Maintainer)
check "Maintainer is not on an example domain ($maint)" bash -c "! grep -Eq '\.(example|invalid|test)>|example\.(com|org|net)>' <<<'$maint'"
addr=$(sed -n 's/.*<\(.*\)>.*/\1/p' <<<"$maint")
check "debian/copyright names the maintainer address ($addr)" grep -qF "$addr" "$S/packaging/debian/copyright"
check "debian/copyright declares the MIT (Expat) license of LICENSE" bash -c "grep -qx 'License: Expat' '$S/packaging/debian/copyright' && grep -q 'MIT' '$S/LICENSE'"
check "regent-dev depends on libuv1-dev (regent-plugin.pc requires libuv)" grep -qw libuv1-dev <(dpkg-deb -f "$DEV" Depends)

# The maintainer scripts, run as dpkg would against a stand-in systemd.
dpkg-deb -e "$DEB" "$T/ctrl"
maint_check "$T/ctrl"

# The packaged files work: extract both packages into one root.
X=$T/x
dpkg-deb -x "$DEB" "$X" && dpkg-deb -x "$DEV" "$X"
check "the packaged regent --version is $version" grep -q "^regent $version " <("$X/usr/sbin/regent" --version)
check "the packaged regent's default plugin dir is where the plugins are" grep -qF "or /usr/lib/$multiarch/regent/plugins)" <("$X/usr/sbin/regent" --help)
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/unit"
	sed -e "s#^ExecStart=/usr/sbin/regent #ExecStart=$X/usr/sbin/regent #" \
	    -e "s#^ExecReload=/usr/sbin/regent #ExecReload=$X/usr/sbin/regent #" \
		"$X/lib/systemd/system/regent.service" >"$T/unit/regent.service"
	MANPATH=$X/usr/share/man systemd-analyze verify "$T/unit/regent.service" >"$T/verify.log" 2>&1; rc=$?
	check "systemd-analyze verify passes on the packaged unit" [ $rc -eq 0 -a ! -s "$T/verify.log" ]
	cat "$T/verify.log"
fi
cp -r "$X/usr/share/doc/regent-dev/examples/jsonfile" "$T/jsonfile"
PKG_CONFIG_PATH=$X/usr/lib/$multiarch/pkgconfig PKG_CONFIG_SYSROOT_DIR=$X \
	make -C "$T/jsonfile" CFLAGS="-O2 -Werror" CPPFLAGS="-MD -MF $T/jsonfile.d" >"$T/make.log" 2>&1; rc=$?
check "the example builds against the extracted regent-dev" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$T/make.log"
check "... using its plugin.h" grep -qF "$X/usr/include/regent/plugin.h" "$T/jsonfile.d"
mkdir -p "$T/plugins" && cp "$T/jsonfile/jsonfile.so" "$T/plugins/" 2>/dev/null
check "the packaged regent loads it" grep -Eq "^jsonfile +sink " <(env -u REGENT_PLUGIN_DIR "$X/usr/sbin/regent" --list-plugins --plugin-dir "$T/plugins")

summary
