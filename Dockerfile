# Root filesystem of the netfs managed plugin (see scripts/plugin.sh).
#
# The base image is imported locally by scripts/base-image.sh (debootstrap),
# so this builds without a registry. There is no build stage: netfs is built
# on the host with `cargo build --release` and copied in; host and image are
# both Debian bookworm, so the binary's glibc matches.
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        sshfs rclone nfs-common fuse3 openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mnt/volumes /var/lib/netfs/state /run/docker/plugins /root/.ssh \
    && chmod 700 /root/.ssh

COPY target/release/netfs /usr/bin/netfs

ENTRYPOINT ["/usr/bin/netfs"]
