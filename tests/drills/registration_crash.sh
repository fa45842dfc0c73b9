#!/usr/bin/env bash
# registration_crash.sh - registration_restart.sh's crash case with the etcd store: the backend agent
# SIGKILLed and started again a second later (as systemd's Restart= does), 10 times under load.
DRILL_STORE=etcd DRILL_KILL=KILL exec bash "$(dirname "$0")/registration_restart.sh"
