#!/usr/bin/env bash
# client_restart_consul.sh - client_restart.sh with the Consul store (the emulator): the client
# agent SIGTERMed / SIGKILLed and started again under load, its haproxy adopted, 5x each.
DRILL_STORE=consul exec bash "$(dirname "$0")/client_restart.sh"
