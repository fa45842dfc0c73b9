#!/usr/bin/env bash
# migration.sh - the seed fleet moved to regent host by host under load
# (tests/migration/migration_test.sh; also a ctest entry, migration_seed).
exec bash "$(dirname "$0")/../migration/migration_test.sh"
