#!/bin/sh
# Entry point of a fleet container (scripts/fleet.sh): `node`, `sshd`,
# `registry` or `proxy`. Nothing but the proxy can leave the test network:
# the default route is deleted and DNS points at 127.0.0.1.
set -eu

role=${1:?role: node, sshd, registry or proxy}
shift
[ "$role" = proxy ] || ip route del default 2>/dev/null || true

case $role in
node)
    # Docker in Docker without --privileged (see scripts/fleet.sh): the
    # cgroup and /sys mounts are read-only until remounted, and the managed
    # plugin's propagated mount needs / shared.
    mount -o remount,rw /sys
    for cg in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
        mount -o remount,bind,rw "$cg" 2>/dev/null || true
    done
    mount --make-rshared /
    # The plugin's default state and rclone directories: dockerd refuses to enable a
    # plugin whose mount sources are missing.
    mkdir -p /var/lib/docker-plugins/netfs /etc/netfs/rclone /var/cache/netfs-rclone
    chmod 700 /var/lib/docker-plugins/netfs /etc/netfs/rclone /var/cache/netfs-rclone
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    # The second socket is in a host directory: the host reaches this
    # node's API there (DOCKER_HOST=unix://...) without a TCP port.
    mkdir -p /run/fleet
    rm -f /run/fleet/docker.sock
    exec env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 dockerd --config-file /etc/netfs-fleet/daemon.json \
        -H unix:///var/run/docker.sock -H unix:///run/fleet/docker.sock
    ;;
sshd)
    # Debian's stock sshd_config; only the host key, root's key and a user
    # `netfs` who logs in with the fleet's password (in /srv/netfs) are added.
    # The one host key is the ed25519 key fleet.sh mounts and lists in the
    # plugins' read-only known_hosts: with more keys a client that prefers
    # another type (rclone's Go ssh) would find no match and refuse.
    mkdir -p /run/sshd /root/.ssh
    chmod 700 /root/.ssh
    cp /etc/netfs-fleet/ssh/id_ed25519.pub /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
    id netfs >/dev/null 2>&1 || useradd -M -d /srv/netfs -s /bin/sh netfs
    printf 'netfs:%s\n' "$(cat /etc/netfs-fleet/ssh/password)" | chpasswd
    mkdir -p /srv/netfs
    chown netfs: /srv/netfs
    exec /usr/sbin/sshd -D -e
    ;;
registry)
    # Debian's package configures authentication; the fleet's registry is
    # open to the test network only.
    mkdir -p /var/lib/docker-registry
    cat >/etc/docker/registry/fleet.yml <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
CONFIG
    exec docker-registry serve /etc/docker/registry/fleet.yml
    ;;
proxy)
    # The fleet's one way out, there only while `fleet.sh build` runs: an
    # HTTP proxy for FLEET_SUBNET that reaches the hosts named as arguments
    # (what a plugin build fetches from), tunnelling (CONNECT) only to their
    # port 443, and nothing else. Each connection is logged.
    filter=/run/fleet-proxy.filter
    : >"$filter"
    for host in "$@"; do
        printf '^%s$\n' "$(printf '%s' "$host" | sed 's/[.]/\\./g')" >>"$filter"
    done
    cat >/run/fleet-proxy.conf <<CONFIG
User tinyproxy
Group tinyproxy
Port 3128
Timeout 600
LogLevel Connect
MaxClients 64
Allow ${FLEET_SUBNET:?}
ConnectPort 443
Filter "$filter"
FilterType ere
FilterDefaultDeny Yes
DisableViaHeader Yes
CONFIG
    exec tinyproxy -d -c /run/fleet-proxy.conf
    ;;
*)
    echo "unknown role $role" >&2
    exit 2
    ;;
esac
