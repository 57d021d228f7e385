#!/usr/bin/env bash
# Builds the image the Dockerfile starts FROM, offline from any registry:
# debootstrap a minimal Debian bookworm from the Debian mirror, then
# `docker import` it under the tag the Dockerfile names. The debootstrap tree
# is cached, so a second run only imports (or does nothing if the tag exists).
#
# Environment:
#   BASE_IMAGE     tag to create (default debian:bookworm-slim)
#   DEBIAN_MIRROR  mirror for debootstrap (default http://deb.debian.org/debian)
#   NETFS_CACHE    cache directory (default /var/cache/netfs)
#   FORCE=1        re-import even if the tag exists
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh first"

SUITE=bookworm
ROOTFS=$NETFS_CACHE/debootstrap-$SUITE
DONE=$NETFS_CACHE/debootstrap-$SUITE.done

if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "$BASE_IMAGE already present"
    exit 0
fi

mkdir -p "$NETFS_CACHE"
exec 9>"$NETFS_CACHE/base-image.lock"
flock 9

if [ ! -e "$DONE" ]; then
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; run scripts/setup.sh first"
    # A tree without the marker is a debootstrap that was interrupted; it may
    # still have proc or sys mounted inside, which must not be deleted into.
    if [ -e "$ROOTFS" ]; then
        findmnt -rn -o TARGET | grep -F "$ROOTFS/" | sort -r | xargs -r -n 1 umount -l
        rm -rf --one-file-system "$ROOTFS"
    fi
    say "debootstrap $SUITE from $DEBIAN_MIRROR into $ROOTFS (a few minutes, once)"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >"$NETFS_CACHE/debootstrap.log" 2>&1 || {
        tail -n 20 "$NETFS_CACHE/debootstrap.log" >&2
        die "debootstrap failed; see $NETFS_CACHE/debootstrap.log"
    }

    # Shape it like Debian's slim image: updates and security sources, no
    # downloaded packages or indexes kept, no documentation installed later.
    cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $SUITE-security main
SOURCES
    cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
    touch "$DONE"
fi

say "importing $ROOTFS as $BASE_IMAGE"
tar --numeric-owner --xattrs -C "$ROOTFS" -c . |
    "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "$BASE_IMAGE" >/dev/null
say "$BASE_IMAGE ready"
