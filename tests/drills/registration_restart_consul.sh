#!/usr/bin/env bash
# registration_restart_consul.sh - registration_restart.sh with the Consul store (the emulator): the
# backend agent restarted (SIGTERM, start) 10 times under load; also the ctest entry
# drill_consul_restart_smoke (DRILL_SMOKE=1).
DRILL_STORE=consul DRILL_KILL=TERM exec bash "$(dirname "$0")/registration_restart.sh"
