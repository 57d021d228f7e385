#!/usr/bin/env bash
# netfs's unit tests on arm64, under QEMU's user-mode emulator: cross-compiled
# with Debian's cross toolchain (what the Dockerfile's build stage uses for
# ARCH=arm64: rustc, libstd-rust-dev:arm64, gcc-aarch64-linux-gnu) in a
# container of debian:trixie-slim, then run there as arm64 programs (the
# kernel hands them to the emulator, see scripts/binfmt.sh). What the tests
# start themselves (sh, sleep) is the container's own.
#
#   scripts/arm64-test.sh [cargo test arguments]   (default: --lib)
#
# Crates and the arm64 target directory are kept in the cache between runs.
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh first"
"$NETFS_TOP/scripts/base-image.sh" trixie
"$NETFS_TOP/scripts/binfmt.sh"
[ $# -gt 0 ] || set -- --lib

cache=$NETFS_CACHE/arm64-test
mkdir -p "$cache/cargo" "$cache/target"
exec 9>"$cache.lock"
flock 9
image=netfs-arm64-toolchain:trixie
if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    say "making $image: Debian's Rust and its arm64 cross toolchain"
    container=netfs-arm64-toolchain-$$
    trap '"$DOCKER" rm -f "$container" >/dev/null 2>&1 || true' EXIT
    "$DOCKER" run --name "$container" --network host \
        -e "APT_OPTIONS=${APT_OPTIONS--o Acquire::Check-Valid-Until=false}" debian:trixie-slim bash -euc '
            dpkg --add-architecture arm64
            apt-get $APT_OPTIONS update -qq
            DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y -qq --no-install-recommends \
                cargo rustc gcc libc6-dev ca-certificates \
                libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
            rm -rf /var/lib/apt/lists/*
        ' >"$cache.log" 2>&1 || {
        tail -n 20 "$cache.log" >&2
        die "cannot install the cross toolchain; see $cache.log"
    }
    "$DOCKER" commit "$container" "$image" >/dev/null
    "$DOCKER" rm -f "$container" >/dev/null
    trap - EXIT
fi

say "cargo test --target aarch64-unknown-linux-gnu $* (arm64, under emulation)"
"$DOCKER" run --rm --network host \
    -v "$NETFS_TOP:/src:ro" -v "$cache/cargo:/cargo" -v "$cache/target:/target" \
    -e CARGO_HOME=/cargo -e CARGO_TARGET_DIR=/target \
    -e CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    -w /src "$image" \
    cargo test --locked --target aarch64-unknown-linux-gnu "$@"
