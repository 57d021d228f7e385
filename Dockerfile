# Root filesystem of the netfs managed plugin (see scripts/plugin.sh).
#
# netfs is built here, in a build stage, so the image does not depend on the
# host's toolchain or libc. Build and runtime are both Debian trixie: a binary
# linked against trixie's glibc does not run on an older one. The base image
# is imported locally by scripts/base-image.sh (debootstrap), so this builds
# without a registry; the build stage fetches crates from crates.io.
#
# Build arguments (scripts/plugin.sh sets both):
#   APT_OPTIONS      extra apt-get options, e.g. -o Acquire::Check-Valid-Until=false
#                    on a machine whose clock is past the Release files' Valid-Until
#   EXTRA_CA_CERTS   PEM certificates the build stage trusts besides Debian's,
#                    for a network whose proxy re-signs TLS (crates.io); they
#                    do not reach the plugin image

FROM debian:trixie-slim AS build
# Marks the build stage's images, which the classic builder leaves untagged
# as its cache: scripts/plugin.sh keeps the newest and removes the others.
LABEL org.netfs.stage=build
ARG APT_OPTIONS=
RUN apt-get $APT_OPTIONS update \
    && DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends \
        cargo rustc gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
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
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin netfs \
    && rm -rf src target/release/.fingerprint/netfs-* target/release/deps/netfs-* \
        target/release/deps/libnetfs-* target/release/netfs

COPY src ./src
# COPY keeps the files' times, which may be older than the placeholders'.
RUN find src -type f -exec touch {} + \
    && cargo build --release --locked --bin netfs \
    && install -m 755 target/release/netfs /usr/local/bin/netfs

FROM debian:trixie-slim
ARG APT_OPTIONS=
RUN apt-get $APT_OPTIONS update \
    && DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTIONS install -y --no-install-recommends \
        sshfs rclone nfs-common fuse3 openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mnt/volumes /data/staged /data/published /var/lib/netfs/state /run/docker/plugins /root/.ssh \
    && chmod 700 /root/.ssh

COPY --from=build /usr/local/bin/netfs /usr/bin/netfs

ENTRYPOINT ["/usr/bin/netfs"]
