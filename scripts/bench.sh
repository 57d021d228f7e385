#!/usr/bin/env bash
# Benchmarks netfs against the plugin users would pick instead (rclone serve
# docker) and the tool it wraps (bare sshfs), on the same work in the same
# run, over one loopback sshd (parts 6 and 7 also over one with Debian's
# stock sshd_config); prints the table and writes it into
# docs/benchmarks.md. `make bench` runs scripts/setup.sh first (packages,
# dockerd, the test image), then this. Takes about 15 minutes.
#
# Environment:
#   BENCH_RUNS             runs; every figure is a median over them (default 3)
#   BENCH_PEER_RUNS        runs that also measure rclone's slow parts: its
#                          thousand Creates, memory and restore (default 1;
#                          0: no rclone in parts 1, 2 and 6)
#   BENCH_VOLUMES          volumes for the control plane and memory (default 1000)
#   BENCH_RCLONE_VOLUMES   the same for rclone, if fewer (default BENCH_VOLUMES)
#   BENCH_RESTORE_VOLUMES  volumes restored at start (default 100)
#   BENCH_DATA_MIB         size of the data-path file (default 256)
#   BENCH_DATA_DETAIL      1 (default): also the netfs volume on the host and
#                          the bare mount in a container, to tell the
#                          container's share from netfs's; 0: only the two
#   BENCH_PARTS            parts to run, e.g. 1,2,5 (default 1,2,3,4,5,6,7,8)
#   BENCH_OUT              file to write the results into (default
#                          docs/benchmarks.md; empty: print only)
#   BENCH_CHARTS           directory part 7 writes its SVG charts into
#                          (default docs; empty: none)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

for tool in sshfs rclone /usr/sbin/sshd ssh-keygen /bin/busybox; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; run scripts/setup.sh"
done
pick_docker || warn "no docker CLI talks to a running dockerd; the data path (part 4) will be skipped"

cd "$NETFS_TOP"
say "building netfs"
cargo build --release --locked
say "building the benchmark"
cargo build --release --locked -p netfs-bench

args=(
    --netfs target/release/netfs
    --runs "${BENCH_RUNS:-3}"
    --peer-runs "${BENCH_PEER_RUNS:-1}"
    --volumes "${BENCH_VOLUMES:-1000}"
    --restore-volumes "${BENCH_RESTORE_VOLUMES:-100}"
    --data-mib "${BENCH_DATA_MIB:-256}"
    --parts "${BENCH_PARTS:-1,2,3,4,5,6,7,8}"
)
[ -n "${BENCH_RCLONE_VOLUMES:-}" ] && args+=(--rclone-volumes "$BENCH_RCLONE_VOLUMES")
[ "${BENCH_DATA_DETAIL:-1}" = 1 ] && args+=(--data-detail)
out=${BENCH_OUT-docs/benchmarks.md}
[ -n "$out" ] && args+=(--out "$out")
charts=${BENCH_CHARTS-docs}
[ -n "$charts" ] && args+=(--charts "$charts")

say "running target/release/netfs-bench ${args[*]}"
exec target/release/netfs-bench "${args[@]}"
