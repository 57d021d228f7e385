#!/usr/bin/env bash
# Builds the managed plugin the integration tests install volumes with
# (tests/integration/managed_plugin): scripts/plugin.sh, so the real
# Dockerfile and config.json, under a name of its own. It replaces the
# plugin only under the lock a test holds while it uses it, and never while
# a test restarts dockerd.
#
# Environment:
#   NETFS_TEST_PLUGIN  plugin name (default netfs-e2e); `make test` passes the
#                      same name to the tests
#   PLUGIN_ARCH        amd64 (default) or arm64 (scripts/plugin.sh); `make
#                      test` also builds NAME-arm64, which runs under QEMU
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

name=${NETFS_TEST_PLUGIN:-netfs-e2e}
# One lock per plugin name: plugins of other names are not ours to wait for.
lock=/run/netfs-test/managed-plugin-$name.lock
# Shared while dockerd is in use; a test that restarts dockerd takes it
# exclusively (tests/support/docker.rs).
daemon_lock=/run/netfs-test/dockerd.lock

# Before taking the locks: a dockerd started here must not inherit them.
"$NETFS_TOP/scripts/setup.sh"
mkdir -p /run/netfs-test
exec 8>"$lock"
if ! flock -n 8; then
    say "waiting for the tests that use $name to finish"
    flock 8
fi
exec 7>>"$daemon_lock"
flock -s 7
PLUGIN_NAME=$name PLUGIN_TAG=latest PLUGIN_STATE_DIR='' PLUGIN_ENABLE=0 \
    "$NETFS_TOP/scripts/plugin.sh" 7>&- 8>&-
