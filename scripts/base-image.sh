#!/usr/bin/env bash
# Builds the Debian images the Dockerfile and the fleet start FROM, offline
# from any registry: debootstrap a minimal Debian suite from the Debian
# mirror, then `docker import` it as debian:SUITE-slim. Each debootstrap tree
# is cached, so a later run only imports (or does nothing if the tag exists).
# Nothing but docker is needed on the host: where the host has no
# debootstrap, it runs in a container of any Debian image dockerd has (or
# can pull), which installs it there.
#
#   scripts/base-image.sh [SUITE...]   (default: trixie, what the Dockerfile uses)
#
# Environment:
#   DEBIAN_MIRROR    mirror for debootstrap (default: the Debian archive the
#                    host's apt sources name)
#   DEBIAN_SECURITY_MIRROR  its security archive (default: the host's, else
#                    debian-security beside DEBIAN_MIRROR)
#   NETFS_CACHE      cache directory (default /var/cache/netfs)
#   DOCKER_HOST      the dockerd to import into (default: the machine's)
#   FORCE=1          re-import even if the tag exists
#   PULL=1           first try `docker pull debian:SUITE-slim` (a host that
#                    reaches Docker Hub or a mirror of it needs no debootstrap)
#   BASE_REPO        repository of the images made (default debian)
#   BOOTSTRAP_IMAGE  the image debootstrap runs in when the host has none
#                    (default: the first debian:* image dockerd has)
#   IN_CONTAINER=1   run debootstrap in that container even if the host has it
#   BASE_ARCH=arm64  an arm64 image, debian:SUITE-slim-arm64 (default: amd64,
#                    this machine's): debootstrap's second stage runs under
#                    QEMU's user-mode emulator, which scripts/binfmt.sh
#                    registers with the kernel
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh first"
need_debian_mirror

[ $# -gt 0 ] || set -- trixie
ARCH=${BASE_ARCH:-amd64}
case $ARCH in
amd64) ;;
arm64) "$NETFS_TOP/scripts/binfmt.sh" ;;
*) die "BASE_ARCH must be amd64 or arm64, not $ARCH" ;;
esac

mkdir -p "$NETFS_CACHE"
exec 9>"$NETFS_CACHE/base-image.lock"
flock 9

# Runs debootstrap for SUITE into ROOTFS, on the host or in a container;
# its output goes to LOG. A foreign architecture's first stage only
# unpacks; its second stage runs the arm64 programs under emulation.
run_debootstrap() {
    local suite=$1 rootfs=$2 log=$3
    local foreign=() second=true
    if [ "$ARCH" != amd64 ]; then
        foreign=(--arch="$ARCH" --foreign)
        second="chroot /rootfs /debootstrap/debootstrap --second-stage"
    fi
    # The host's debootstrap may be older than the suite: testing (forky)
    # is bootstrapped like sid.
    if [ "${IN_CONTAINER:-0}" != 1 ] && command -v debootstrap >/dev/null 2>&1; then
        local script=/usr/share/debootstrap/scripts/$suite
        [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
        debootstrap --variant=minbase "${foreign[@]}" "$suite" "$rootfs" "$DEBIAN_MIRROR" "$script" >"$log" 2>&1 &&
            if [ "$ARCH" != amd64 ]; then chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$log" 2>&1; fi
        return
    fi
    local image=${BOOTSTRAP_IMAGE:-$("$DOCKER" images --format '{{.Repository}}:{{.Tag}}' debian | grep -v -e '<none>' -e '-arm64$' | head -n 1)}
    [ -n "$image" ] || die "no debootstrap on this host and no debian image in dockerd to run it in: \
load one (docker pull debian:trixie-slim, or docker load) or set BOOTSTRAP_IMAGE"
    say "no debootstrap on this host: running it in a container of $image"
    mkdir -p "$rootfs"
    # debootstrap's second stage chroots, makes device nodes and mounts
    # /proc. Not --privileged, which fails where the capability bounding set
    # lacks one (see scripts/fleet.sh). The tree goes straight into the cache.
    "$DOCKER" run --rm --network host --cap-add SYS_ADMIN --cap-add MKNOD \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        -e "SUITE=$suite" -e "MIRROR=$DEBIAN_MIRROR" -e "APT_OPTIONS=${APT_OPTIONS--o Acquire::Check-Valid-Until=false}" \
        -e "FOREIGN=${foreign[*]}" -e "SECOND=$second" \
        -v "$rootfs:/rootfs" "$image" bash -euc '
            apt-get $APT_OPTIONS update -qq
            DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y -qq --no-install-recommends debootstrap ca-certificates >/dev/null
            script=/usr/share/debootstrap/scripts/$SUITE
            [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
            debootstrap --variant=minbase $FOREIGN "$SUITE" /rootfs "$MIRROR" "$script"
            $SECOND
        ' >"$log" 2>&1
}

base_image() {
    local suite=$1 image=${BASE_REPO:-debian}:$1-slim tree=debootstrap-$1
    if [ "$ARCH" != amd64 ]; then
        image=$image-$ARCH tree=$tree-$ARCH
    fi
    local rootfs=$NETFS_CACHE/$tree done=$NETFS_CACHE/$tree.done

    if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
        say "$image already present"
        return 0
    fi

    if [ "${PULL:-0}" = 1 ] && [ "${BASE_REPO:-debian}" = debian ] &&
        timeout 300 "$DOCKER" pull -q "$image" >/dev/null 2>&1; then
        say "$image pulled"
        return 0
    fi

    if [ ! -e "$done" ]; then
        # A tree without the marker is a debootstrap that was interrupted; it
        # may still have proc or sys mounted inside, which must not be deleted into.
        if [ -e "$rootfs" ]; then
            findmnt -rn -o TARGET | grep -F "$rootfs/" | sort -r | xargs -r -n 1 umount -l
            rm -rf --one-file-system "$rootfs"
        fi
        say "debootstrap $suite from $DEBIAN_MIRROR into $rootfs (about a minute, once)"
        run_debootstrap "$suite" "$rootfs" "$NETFS_CACHE/$tree.log" || {
            tail -n 20 "$NETFS_CACHE/$tree.log" >&2
            die "debootstrap failed; see $NETFS_CACHE/$tree.log"
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
