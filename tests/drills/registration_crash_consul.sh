#!/usr/bin/env bash
# registration_crash_consul.sh - registration_restart.sh's crash case with the Consul store (the
# emulator): the backend agent SIGKILLed and started again a second later, 10 times under load.
DRILL_STORE=consul DRILL_KILL=KILL exec bash "$(dirname "$0")/registration_restart.sh"
