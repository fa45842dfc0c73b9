#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it: installs missing Debian
# packages, builds regent twice (RelWithDebInfo, then ASan+UBSan) and runs
# every test (unit tests and the integration tests that start real etcd,
# dockerd and haproxy on loopback) under ctest in each build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== build (RelWithDebInfo) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== tests (RelWithDebInfo)"
(cd build && ctest --output-on-failure --timeout 900)

echo "== build (ASan+UBSan) in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DREGENT_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests (ASan+UBSan)"
# The harness selftest checks the test harness, not regent's code: once is enough.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export REGENT_NO_DLCLOSE=1
(cd build-asan && ctest --output-on-failure --timeout 900 -E '^harness_selftest$')
