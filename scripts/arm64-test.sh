#!/usr/bin/env bash
# netfs's unit tests on arm64, under QEMU's user-mode emulator: cross-compiled
# with Debian's cross toolchain (the packages the Dockerfile's build stage
# uses for ARCH=arm64: rustc, libstd-rust-dev:arm64, gcc-aarch64-linux-gnu)
# in a container of debian:forky-slim (the test-only crates need a newer
# rustc than trixie's 1.85, which builds netfs), then run there as arm64
# programs (the
# kernel hands them to the emulator, see scripts/binfmt.sh). What the tests
# start themselves (sh, sleep) is the container's own.
#
#   scripts/arm64-test.sh [cargo test arguments]
#
# By default the library's tests, but for two that QEMU's user-mode emulator
# cannot pass: it runs glibc's posix_spawn as a plain fork, so a program that
# does not exist is seen as a child exiting 127 rather than as the spawn's
# ENOENT, which these two tests check netfs reports (they pass on arm64
# hardware, and on amd64 in `make test`).
#
# Crates and the arm64 target directory are kept in the cache between runs.
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh first"
"$NETFS_TOP/scripts/base-image.sh" forky
"$NETFS_TOP/scripts/binfmt.sh"
[ $# -gt 0 ] || set -- --lib -- \
    --skip connections::tests::a_login_that_fails_fails_its_waiters_and_is_retried_with_backoff \
    --skip driver::versions::tests::a_missing_tool_is_said_so

cache=$NETFS_CACHE/arm64-test
mkdir -p "$cache/cargo" "$cache/target"
exec 9>"$cache.lock"
flock 9
image=netfs-arm64-toolchain:forky
if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    say "making $image: Debian's Rust and its arm64 cross toolchain"
    container=netfs-arm64-toolchain-$$
    trap '"$DOCKER" rm -f "$container" >/dev/null 2>&1 || true' EXIT
    "$DOCKER" run --name "$container" --network host \
        -e "APT_OPTIONS=${APT_OPTIONS--o Acquire::Check-Valid-Until=false}" debian:forky-slim bash -euc '
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

# For crates.io, as scripts/plugin.sh passes them to the build stage.
host_certs

say "cargo test --target aarch64-unknown-linux-gnu $* (arm64, under emulation)"
"$DOCKER" run --rm --network host "${HOST_CERTS[@]}" \
    -v "$NETFS_TOP:/src:ro" -v "$cache/cargo:/cargo" -v "$cache/target:/target" \
    -e CARGO_HOME=/cargo -e CARGO_TARGET_DIR=/target \
    -e CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    -w /src "$image" \
    sh -c 'update-ca-certificates >/dev/null 2>&1; exec "$@"' sh \
    cargo test --locked --target aarch64-unknown-linux-gnu "$@"
