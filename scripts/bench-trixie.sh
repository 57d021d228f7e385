#!/usr/bin/env bash
# Parts 6 and 7 of the benchmark (restores, shared connections) with Debian
# 13's OpenSSH 10 at both ends: its stock sshd and sshd_config for the
# server, and the ssh and sshfs the managed plugin ships (also Debian 13's)
# for netfs. OpenSSH 10 agrees on mlkem768x25519-sha256 for the key
# exchange; this host's OpenSSH 9.2 (Debian 12) has no ML-KEM and agrees on
# sntrup761x25519-sha512, whose key generation costs the client about a
# tenth of a second of CPU per login. The benchmark runs in a container of
# debian:trixie-slim with those packages (made once, netfs-bench-trixie),
# on this host's network and /dev/fuse; netfs and the benchmark are this
# tree's release builds. Prints the table; docs/benchmarks.md quotes it.
#
# Environment:
#   BENCH_RUNS             runs; every figure is a median over them (default 3)
#   BENCH_RESTORE_VOLUMES  volumes restored at start (default 100)
#   BENCH_DATA_MIB         size of the data-path file (default 64)
#   BENCH_PARTS            parts to run (default 6,7)
#   BENCH_SERVER_CPUS      CPUs for the sshd servers alone (say 1); netfs and
#                          its clients get the others, as if the server were
#                          another machine (default: all share every CPU)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root
pick_docker || die "dockerd does not answer; run scripts/setup.sh"

cd "$NETFS_TOP"
say "building netfs and the benchmark"
cargo build --release --locked -p netfs -p netfs-bench

image=netfs-bench-trixie:latest
if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    "$NETFS_TOP/scripts/base-image.sh" trixie
    say "making $image: Debian 13's openssh-server, openssh-client and sshfs"
    container=netfs-bench-trixie-$$
    "$DOCKER" run --name "$container" --network host debian:trixie-slim bash -euc '
        apt-get -o Acquire::Check-Valid-Until=false update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openssh-server openssh-client sshfs fuse3 busybox procps util-linux >/dev/null
        rm -rf /var/lib/apt/lists/*' >&2 || {
        "$DOCKER" rm -f "$container" >/dev/null 2>&1
        die "cannot install OpenSSH in a container of debian:trixie-slim"
    }
    "$DOCKER" commit "$container" "$image" >/dev/null
    "$DOCKER" rm -f "$container" >/dev/null
fi

# What a fleet node gets (scripts/fleet.sh): every capability but
# CAP_SYS_RESOURCE, which --privileged would need, and no seccomp filter,
# for FUSE mounts and the Debian sshd's mount namespace.
say "running netfs-bench in $image ($("$DOCKER" run --rm "$image" ssh -V 2>&1))"
exec "$DOCKER" run --rm --network host --device /dev/fuse \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --security-opt systempaths=unconfined \
    -v "$NETFS_TOP/target/release:/netfs:ro" -w /tmp "$image" \
    /netfs/netfs-bench --netfs /netfs/netfs \
    --runs "${BENCH_RUNS:-3}" --peer-runs 0 \
    --restore-volumes "${BENCH_RESTORE_VOLUMES:-100}" \
    --data-mib "${BENCH_DATA_MIB:-64}" \
    --parts "${BENCH_PARTS:-6,7}" \
    ${BENCH_SERVER_CPUS:+--server-cpus "$BENCH_SERVER_CPUS"}
