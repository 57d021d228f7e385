#!/usr/bin/env bash
# Builds the managed plugin from this tree (the Dockerfile, as
# scripts/plugin.sh does) and pushes it to a registry, so that any Docker
# host can `docker plugin install REGISTRY/NAME:TAG` (docs/install.md).
#
#   REGISTRY=registry.example.com:5000 scripts/push.sh     (or: make push REGISTRY=...)
#
# The image is built by this machine's dockerd; the plugin is created and
# pushed by PUSH_DOCKER_HOST's, which must be able to reach REGISTRY (and
# trust it, if it serves plain HTTP: insecure-registries in its daemon.json).
# Nothing is left installed there: the plugin is removed after the push.
#
# Environment:
#   REGISTRY          registry host[:port][/path] (required)
#   PUSH_NAME         repository name (default netfs)
#   PUSH_TAG          tag (default: the version in Cargo.toml)
#   PUSH_DOCKER_HOST  the dockerd that pushes (default: this machine's)
#   PLUGIN_ARCH       amd64 (default) or arm64; an arm64 plugin's tag gets
#                     `-arm64` added (plugins have no multi-arch manifests)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

[ -n "${REGISTRY:-}" ] || die "set REGISTRY to the registry to push to, e.g. make push REGISTRY=registry.example.com:5000"
tag=${PUSH_TAG:-$(cargo_version)}
case ${PLUGIN_ARCH:-amd64} in
amd64 | x86_64) ;;
arm64 | aarch64) tag=$tag-arm64 ;;
*) die "PLUGIN_ARCH must be amd64 or arm64, not $PLUGIN_ARCH" ;;
esac
ref=$REGISTRY/${PUSH_NAME:-netfs}:$tag
build=$NETFS_TOP/.work/push
pick_docker || die "dockerd does not answer: start it"

PLUGIN_NAME=push PLUGIN_BUILD_DIR=$build PLUGIN_DIR_ONLY=1 "$NETFS_TOP/scripts/plugin.sh"
# Each push is a build of its own, even of the same tree: `docker plugin
# upgrade` then always has something new, and the plugin says which build it is.
printf 'netfs %s built %s\n' "$(cargo_version)" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" \
    >"$build/plugin/rootfs/etc/netfs-build"

pusher() {
    if [ -n "${PUSH_DOCKER_HOST:-}" ]; then
        DOCKER_HOST=$PUSH_DOCKER_HOST "$DOCKER" "$@"
    else
        "$DOCKER" "$@"
    fi
}
# A plugin of the same name left by an earlier push.
if pusher plugin inspect "$ref" >/dev/null 2>&1; then
    pusher plugin rm -f "$ref" >/dev/null
fi
say "docker plugin create $ref"
pusher plugin create "$ref" "$build/plugin" >/dev/null
trap 'pusher plugin rm -f "$ref" >/dev/null 2>&1 || true' EXIT
say "docker plugin push $ref"
pusher plugin push "$ref" >/dev/null
rm -rf --one-file-system "$build/plugin"
say "pushed $ref"
echo "$ref"
