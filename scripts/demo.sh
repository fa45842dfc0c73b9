#!/usr/bin/env bash
# demo.sh - the interim demo: one agent with the test plugins (a source
# that reads instances from a file, an in-memory store, a sink that prints
# every catalog snapshot), narrated step by step.  The seed's full scenario
# (etcd, dockerd backends, haproxy) replaces this once its plugins land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
D=$(mktemp -d /tmp/regent-demo.XXXXXX)
AGENT=
cleanup() { [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sed "s|/tmp/regent-demo/instances.txt|$D/instances.txt|" examples/demo.ini >"$D/regent.ini"
printf 'backend-1/0a1b2c3d4e5f/8000 whoami 127.0.0.2 32768\n' >"$D/instances.txt"

say "the configuration ($D/regent.ini)"
cat "$D/regent.ini"
say "regent --check-config"
build/core/regent --check-config -c "$D/regent.ini" --plugin-dir build/plugins
say "starting the agent: every catalog snapshot is printed below"
build/core/regent -c "$D/regent.ini" --plugin-dir build/plugins --log-level warn &
AGENT=$!
sleep 1
say "two more whoami instances start"
printf 'backend-2/1a2b3c4d5e6f/8000 whoami 127.0.0.3 32769\nbackend-2/2b3c4d5e6f70/8000 whoami 127.0.0.3 32770\n' >>"$D/instances.txt"
sleep 1
say "the first one dies"
sed -i '/^backend-1/d' "$D/instances.txt"
sleep 1
say "SIGTERM: the agent stops its plugins in reverse order and exits"
kill -TERM "$AGENT"; wait "$AGENT"; AGENT=
echo "done"
