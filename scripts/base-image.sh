#!/usr/bin/env bash
# Builds the Debian images the Dockerfile and the fleet start FROM, offline
# from any registry: debootstrap a minimal Debian suite from the Debian
# mirror, then `docker import` it as debian:SUITE-slim. Each debootstrap tree
# is cached, so a later run only imports (or does nothing if the tag exists).
#
#   scripts/base-image.sh [SUITE...]   (default: trixie, what the Dockerfile uses)
#
# Environment:
#   DEBIAN_MIRROR  mirror for debootstrap (default: the Debian archive the
#                  host's apt sources name, else http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR  its security archive (default: the host's, else
#                  debian-security beside DEBIAN_MIRROR)
#   NETFS_CACHE    cache directory (default /var/cache/netfs)
#   DOCKER_HOST    the dockerd to import into (default: the machine's)
#   FORCE=1        re-import even if the tag exists
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh first"
need_debian_mirror

[ $# -gt 0 ] || set -- trixie

mkdir -p "$NETFS_CACHE"
exec 9>"$NETFS_CACHE/base-image.lock"
flock 9

base_image() {
    local suite=$1 image=debian:$1-slim
    local rootfs=$NETFS_CACHE/debootstrap-$suite done=$NETFS_CACHE/debootstrap-$suite.done

    if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
        say "$image already present"
        return 0
    fi

    if [ ! -e "$done" ]; then
        command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; run scripts/setup.sh first"
        # A tree without the marker is a debootstrap that was interrupted; it
        # may still have proc or sys mounted inside, which must not be deleted into.
        if [ -e "$rootfs" ]; then
            findmnt -rn -o TARGET | grep -F "$rootfs/" | sort -r | xargs -r -n 1 umount -l
            rm -rf --one-file-system "$rootfs"
        fi
        # The host's debootstrap may be older than the suite: testing (forky)
        # is bootstrapped like sid.
        local script=/usr/share/debootstrap/scripts/$suite
        [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
        say "debootstrap $suite from $DEBIAN_MIRROR into $rootfs (about a minute, once)"
        debootstrap --variant=minbase "$suite" "$rootfs" "$DEBIAN_MIRROR" "$script" \
            >"$NETFS_CACHE/debootstrap-$suite.log" 2>&1 || {
            tail -n 20 "$NETFS_CACHE/debootstrap-$suite.log" >&2
            die "debootstrap failed; see $NETFS_CACHE/debootstrap-$suite.log"
        }

        # Shape it like Debian's slim image: updates and security sources, no
        # downloaded packages or indexes kept, no documentation installed later.
        cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb $DEBIAN_SECURITY_MIRROR $suite-security main
SOURCES
        cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
        touch "$done"
    fi

    say "importing $rootfs as $image"
    tar --numeric-owner --xattrs -C "$rootfs" -c . |
        "$DOCKER" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            - "$image" >/dev/null
    say "$image ready"
}

for suite in "$@"; do
    base_image "$suite"
done
