#!/usr/bin/env bash
# hup_together_consul.sh - hup_together.sh with the Consul store (the emulator): backends and client
# SIGHUPed together with a [store consul] change, 10 rounds under load.
DRILL_STORE=consul exec bash "$(dirname "$0")/hup_together.sh"
