#!/usr/bin/env bash
# Prepares this machine for netfs tests, the demo and plugin builds: Debian
# packages, /dev/fuse, a running dockerd, the tiny test image and the pinned
# rclone (scripts/rclone.sh). Safe to run any number of times; every step
# checks first and does only what is missing.
#
# Environment:
#   DOCKERD_FLAGS  extra flags for dockerd when this script has to start it
#   SKIP_PACKAGES  set to 1 to skip the package step (offline machines)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/netfs-dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/run/netfs-dockerd.pid}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}

# One setup at a time: tests may call this from several processes at once.
exec 9>/run/netfs-setup.lock
flock 9

PACKAGES=(
    docker.io docker-compose iptables kmod
    sshfs openssh-server openssh-client rclone fuse3 nfs-common
    apache2 samba vsftpd sqlite3 python3-pip bc
    busybox-static debootstrap ca-certificates
    procps psmisc iproute2 util-linux
    gcc libc6-dev
    # systemd-socket-activate, for the socket-activation tests; installing
    # the package starts nothing and does not make systemd PID 1.
    systemd
)

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    say "installing ${missing[*]}"
    # Without systemd, maintainer scripts would start sshd, rpcbind and
    # dockerd from /etc/init.d; keep them from doing so (this script starts
    # dockerd itself, and the tests run their own sshd on a free port).
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [ ! -d /run/systemd/system ] && [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    # A third-party source that is unreachable must not stop Debian's
    # packages from installing, so a failed update is only a warning.
    apt-get update -q || warn "apt-get update reported errors; trying the install anyway"
    local rc=0
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    [ -n "$added_policy" ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install failed (exit $rc)"
}

ensure_fuse() {
    if [ ! -c /dev/fuse ]; then
        say "creating /dev/fuse"
        rm -f /dev/fuse
        mknod -m 0666 /dev/fuse c 10 229
    fi
}

# Flags for dockerd, from what this kernel and filesystem can do.
#
# Found on the reference machine (Debian 12, kernel 6.18, ext4 root, cgroup v1
# hybrid, iptables-nft): plain `dockerd` works with no flags at all; it picks
# overlay2 by itself, iptables NAT works, so containers and `docker build`
# reach the Debian mirror over the default bridge. The probes below only add
# flags on machines where that is not so:
#   - overlayfs cannot be mounted where /var/lib/docker lives (docker in
#     docker, some CI sandboxes): --storage-driver=vfs (slow but works);
#   - no usable iptables: --iptables=false --ip-masq=false (containers get no
#     outbound network; plugin.sh then builds with --network host);
#   - no bridge devices: --bridge=none.
dockerd_flags() {
    local flags=() probe root=/var/lib/docker
    mkdir -p "$root"
    if [ ! -d "$root/overlay2" ] && [ ! -d "$root/vfs" ]; then
        probe=$(mktemp -d "$root/.netfs-overlay-probe.XXXXXX")
        mkdir -p "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
        if mount -t overlay overlay \
            -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
            "$probe/merged" 2>/dev/null; then
            umount "$probe/merged"
        else
            warn "overlayfs does not mount on $root; dockerd will use the vfs storage driver"
            flags+=(--storage-driver=vfs)
        fi
        rm -rf "$probe"
    fi
    if ! iptables -t nat -L -n >/dev/null 2>&1; then
        warn "iptables does not work here; dockerd runs without NAT"
        flags+=(--iptables=false --ip-masq=false)
    fi
    if ! ip link show docker0 >/dev/null 2>&1; then
        if ip link add netfs-probe0 type bridge 2>/dev/null; then
            ip link del netfs-probe0
        else
            warn "cannot create bridge devices; dockerd runs with --bridge=none"
            flags+=(--bridge=none)
        fi
    fi
    # shellcheck disable=SC2206 # DOCKERD_FLAGS is a list of words on purpose
    flags+=(${DOCKERD_FLAGS:-})
    [ ${#flags[@]} -eq 0 ] || printf '%s\n' "${flags[@]}"
}

docker_answers() {
    pick_docker && "$DOCKER" info >/dev/null 2>&1
}

ensure_dockerd() {
    docker_answers && return 0

    if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
        say "started docker.service"
    else
        local flags pid
        mapfile -t flags < <(dockerd_flags)
        say "starting dockerd${flags[*]:+ ${flags[*]}} (log: $DOCKERD_LOG)"
        # setsid: dockerd must outlive this script and the make that ran it.
        # 9>&-: the daemon must not inherit the setup lock.
        setsid dockerd "${flags[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$DOCKERD_PIDFILE"
    fi

    local i
    for ((i = 0; i < DOCKERD_WAIT; i++)); do
        docker_answers && return 0
        if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up; see $DOCKERD_LOG"
        fi
        sleep 1
    done
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within ${DOCKERD_WAIT}s; see $DOCKERD_LOG"
}

# A busybox image for test containers, made from the host's busybox-static:
# there is no registry to pull one from.
ensure_busybox_image() {
    "$DOCKER" image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1 && return 0

    say "building $BUSYBOX_IMAGE from /bin/busybox"
    local root applet
    root=$(mktemp -d /tmp/netfs-busybox.XXXXXX)
    mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev,usr,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 700 "$root/root"
    ln -s bin "$root/sbin"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

    tar --numeric-owner -C "$root" -c . |
        "$DOCKER" import \
            --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["/bin/sh"]' \
            - "$BUSYBOX_IMAGE" >/dev/null
    rm -rf "$root"
    "$DOCKER" run --rm "$BUSYBOX_IMAGE" true ||
        die "$BUSYBOX_IMAGE was imported but a container from it does not run"
}

# Sockets that the test suites and the benchmark name after themselves, left
# by a run that was killed, answer no one: dockerd would wait on each for
# ~30 s at every lookup of a volume name it does not know. Only those names,
# and only when nothing listens on them.
remove_dead_test_sockets() {
    local dir=/run/docker/plugins live sock
    [ -d "$dir" ] || return 0
    # Without ss nothing tells a live socket from a dead one: leave them all.
    command -v ss >/dev/null 2>&1 || return 0
    live=$(ss -xlH 2>/dev/null | awk '{ sub(/^\/var\/run\//, "/run/", $5); print $5 }')
    for sock in "$dir"/netfs-t*.sock "$dir"/netfs-bench-*.sock "$dir"/rclone-bench-*.sock; do
        [ -S "$sock" ] || continue
        grep -qxF "$sock" <<<"$live" && continue
        say "removing $sock: a test's socket nobody answers on"
        rm -f "$sock"
    done
}

# An image with the host's sqlite3 and the libraries it links, for the
# sqlite-on-rclone Compose example (examples/rclone-sqlite.yml).
ensure_sqlite_image() {
    "$DOCKER" image inspect "$SQLITE_IMAGE" >/dev/null 2>&1 && return 0

    say "building $SQLITE_IMAGE from /usr/bin/sqlite3"
    local root lib
    root=$(mktemp -d /tmp/netfs-sqlite.XXXXXX)
    mkdir -p "$root/usr/bin" "$root/tmp" "$root/data"
    chmod 1777 "$root/tmp"
    cp /usr/bin/sqlite3 "$root/usr/bin/sqlite3"
    for lib in $(ldd /usr/bin/sqlite3 | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    tar --numeric-owner -C "$root" -c . |
        "$DOCKER" import --change 'ENV PATH=/usr/bin' - "$SQLITE_IMAGE" >/dev/null
    rm -rf "$root"
    "$DOCKER" run --rm --entrypoint sqlite3 "$SQLITE_IMAGE" :memory: 'select 1' >/dev/null ||
        die "$SQLITE_IMAGE was imported but sqlite3 does not run in it"
}

# The rclone that scripts/rclone.lock pins, for the tests and the plugin build.
ensure_rclone() {
    "$NETFS_TOP/scripts/rclone.sh" >/dev/null || die "could not fetch the pinned rclone (scripts/rclone.sh)"
}

check_cargo() {
    command -v cargo >/dev/null 2>&1 ||
        warn "cargo is not in PATH; install a Rust toolchain (1.80 or newer, e.g. with rustup) to build netfs"
}

if [ "${SKIP_PACKAGES:-0}" != 1 ]; then
    install_packages
fi
ensure_fuse
remove_dead_test_sockets
ensure_dockerd
ensure_busybox_image
ensure_sqlite_image
ensure_rclone
check_cargo
say "ready: dockerd answers ($("$DOCKER" version --format '{{.Server.Version}}')), $BUSYBOX_IMAGE present"
