#!/usr/bin/env bash
# Lets this amd64 machine run arm64 programs, as building the arm64 plugin
# needs (debootstrap's second stage and the image's apt run arm64 programs):
# QEMU's user-mode emulator, registered with the kernel's binfmt_misc for
# aarch64 ELF files, with the F flag, so that the kernel opens the emulator
# once, here, and arm64 programs then run in any chroot or container too.
# Nothing is installed on the host: the emulator is taken from Debian's
# qemu-user-static package, unpacked in a container, into the cache.
#
#   scripts/binfmt.sh            register (idempotent)
#   scripts/binfmt.sh status     say whether arm64 programs run here
#
# The registration lasts until reboot (or `echo -1 >
# /proc/sys/fs/binfmt_misc/qemu-aarch64`); it changes nothing for amd64
# programs.
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ENTRY=/proc/sys/fs/binfmt_misc/qemu-aarch64
QEMU_DIR=$NETFS_CACHE/qemu
QEMU=$QEMU_DIR/qemu-aarch64-static

registered() {
    [ -e "$ENTRY" ] && grep -qx enabled "$ENTRY"
}

if [ "${1:-}" = status ]; then
    if registered; then
        say "arm64 programs run here through $(sed -n 's/^interpreter //p' "$ENTRY")"
        exit 0
    fi
    say "arm64 programs do not run here; run scripts/binfmt.sh"
    exit 1
fi

need_root
if registered; then
    say "qemu-aarch64 already registered"
    exit 0
fi
if [ ! -d /proc/sys/fs/binfmt_misc ] || [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mkdir -p /proc/sys/fs/binfmt_misc
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        die "cannot mount binfmt_misc: this kernel cannot run programs of another architecture"
fi

mkdir -p "$QEMU_DIR"
exec 9>"$QEMU_DIR.lock"
flock 9
if [ ! -x "$QEMU" ]; then
    pick_docker || die "dockerd does not answer; run scripts/setup.sh first"
    image=${BOOTSTRAP_IMAGE:-debian:trixie-slim}
    "$DOCKER" image inspect "$image" >/dev/null 2>&1 ||
        "$NETFS_TOP/scripts/base-image.sh" trixie
    say "unpacking qemu-aarch64 from Debian's qemu-user in a container of $image"
    "$DOCKER" run --rm --network host -v "$QEMU_DIR:/out" \
        -e "APT_OPTIONS=${APT_OPTIONS--o Acquire::Check-Valid-Until=false}" "$image" bash -euc '
            cd /tmp
            apt-get $APT_OPTIONS update -qq
            apt-get $APT_OPTIONS download -qq qemu-user >/dev/null
            # trixie builds its user-mode emulators statically
            dpkg-deb --fsys-tarfile qemu-user_*.deb | tar -x ./usr/bin/qemu-aarch64
            install -m 755 usr/bin/qemu-aarch64 /out/qemu-aarch64-static.new
            mv /out/qemu-aarch64-static.new /out/qemu-aarch64-static
        ' >"$QEMU_DIR.log" 2>&1 || {
        tail -n 20 "$QEMU_DIR.log" >&2
        die "cannot unpack qemu-aarch64; see $QEMU_DIR.log"
    }
fi

# An aarch64 ELF executable, as QEMU's qemu-binfmt-conf.sh matches it, run
# by this emulator with the F flag (the kernel keeps the emulator open, so
# it runs inside chroots and containers without a copy there).
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
printf '%s' ":qemu-aarch64:M::$magic:$mask:$QEMU:F" >/proc/sys/fs/binfmt_misc/register ||
    die "the kernel refused to register $QEMU"
registered || die "qemu-aarch64 is registered but not enabled"
say "qemu-aarch64 registered: arm64 programs run here through $QEMU"
