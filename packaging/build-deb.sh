#!/usr/bin/env bash
# build-deb.sh - builds regent's Debian packages (regent, regent-dev) from
# this source tree.  The top-level layout is fixed, so the packaging lives
# in packaging/debian: this script copies the tree into a temporary
# directory, puts packaging/debian at its top as ./debian, runs
# dpkg-buildpackage -us -uc -b there and leaves the results in OUTDIR.
#
#   packaging/build-deb.sh [--committed] [--lintian] OUTDIR
#
#   --committed  build what is committed (git archive HEAD) instead of the
#                working tree (tracked and untracked files, minus ignored)
#   --lintian    run lintian on the result; fail on any error or warning
#                that packaging/debian/*.lintian-overrides does not explain
#
# The package version is the project version in CMakeLists.txt (the one
# source of truth, also what `regent --version` prints): the script refuses
# to build when packaging/debian/changelog's top entry says otherwise.
set -euo pipefail

committed=0 lintian=0
while [ $# -gt 0 ]; do
	case $1 in
	--committed) committed=1 ;;
	--lintian) lintian=1 ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "build-deb.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 1 ] || { echo "usage: build-deb.sh [--committed] [--lintian] OUTDIR" >&2; exit 2; }

for tool in dpkg-buildpackage dpkg-parsechangelog; do
	command -v "$tool" >/dev/null || {
		echo "build-deb.sh: $tool not found: apt-get install dpkg-dev debhelper" >&2
		exit 3
	}
done

src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

version=$(sed -n 's/^project(regent VERSION \([0-9][0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || { echo "build-deb.sh: no project(regent VERSION x.y.z) in $src/CMakeLists.txt" >&2; exit 1; }
chversion=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
if [ "$version" != "$chversion" ]; then
	echo "build-deb.sh: CMakeLists.txt says version $version but packaging/debian/changelog says" \
	     "$chversion: add a changelog entry for $version (dch -c packaging/debian/changelog -v $version)" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/regent-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/regent-$version"
mkdir "$tree"
if [ "$committed" = 1 ]; then
	git -C "$src" archive --format=tar HEAD | tar -xf - -C "$tree"
elif git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
	[ "$(git -C "$src" rev-parse --show-toplevel)" = "$src" ]; then
	# Tracked and untracked files, without what .gitignore excludes (build dirs).
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$tree"
else
	tar -C "$src" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./debian \
		-cf - . | tar -xf - -C "$tree"
fi
rm -rf "$tree/debian"
cp -r "$tree/packaging/debian" "$tree/debian"

echo "build-deb.sh: building regent $version in $tree"
jobs=$(nproc 2>/dev/null || echo 1)
(cd "$tree" && DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -60 "$work/build.log" >&2
	echo "build-deb.sh: dpkg-buildpackage failed (last lines above)" >&2
	exit 1
}
shopt -s nullglob
results=("$work"/*.deb "$work"/*.ddeb "$work"/*.changes "$work"/*.buildinfo)
cp "${results[@]}" "$out/"
cp "$work/build.log" "$out/regent_${version}_build.log"
for f in "${results[@]}"; do echo "build-deb.sh: $out/${f##*/}"; done

if [ "$lintian" = 1 ]; then
	command -v lintian >/dev/null || { echo "build-deb.sh: lintian not found: apt-get install lintian" >&2; exit 3; }
	changes=("$out"/regent_"$version"_*.changes)
	echo "build-deb.sh: lintian ${changes[0]##*/}"
	lintian --fail-on error,warning --info --display-info --show-overrides "${changes[0]}"
fi
