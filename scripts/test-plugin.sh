#!/usr/bin/env bash
# Builds the managed plugin the integration tests install volumes with
# (tests/integration/managed_plugin): scripts/plugin.sh, so the real
# Dockerfile and config.json, under a name of its own. It replaces the
# plugin only under the lock a test holds while it uses it.
#
# Environment:
#   NETFS_TEST_PLUGIN  plugin name (default netfs-e2e); `make test` passes the
#                      same name to the tests
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

name=${NETFS_TEST_PLUGIN:-netfs-e2e}
lock=/run/netfs-test/managed-plugin.lock

# Before taking the lock: a dockerd started here must not inherit it.
"$NETFS_TOP/scripts/setup.sh"
mkdir -p "$(dirname "$lock")"
exec 8>"$lock"
if ! flock -n 8; then
    say "waiting for the tests that use $name to finish"
    flock 8
fi
PLUGIN_NAME=$name PLUGIN_TAG=latest PLUGIN_STATE_DIR='' PLUGIN_ENABLE=0 \
    "$NETFS_TOP/scripts/plugin.sh" 8>&-
