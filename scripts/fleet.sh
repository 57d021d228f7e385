#!/usr/bin/env bash
# A fleet of Docker 28 nodes on this machine's dockerd, for trying netfs on a
# multi-node swarm and for the fleet tests (tests/integration/fleet):
#   netfs-fleet-node1..N  Debian forky with dockerd 28 and Compose v2, in
#                         Docker (no --privileged: see run_node), in a swarm
#                         with node1 as its manager
#   netfs-fleet-files     an sshd test host with Debian's stock configuration;
#                         root logs in with the fleet's key, user netfs with the
#                         password in FLEET_DIR/ssh/password; /srv is FLEET_DIR/files
#   netfs-fleet-registry  Debian's docker-registry, which the nodes trust
# all on the network netfs-fleet: --internal, an explicit subnet, DNS at
# 127.0.0.1 and no default route, so nothing reaches beyond the fleet. Only
# while `build` runs, a fifth member is there:
#   netfs-fleet-proxy     an HTTP proxy to the Debian mirror, crates.io and
#                         PyPI, and to nothing else, on the fleet's network
#                         and on netfs-fleet-out (an explicit subnet, NAT)
#
#   scripts/fleet.sh up              create or start what is missing (idempotent)
#   scripts/fleet.sh down            remove the containers, the network and their data
#   scripts/fleet.sh exec NODE CMD.. run CMD in node1.., files or registry
#   scripts/fleet.sh status          what runs, the engines' versions, the swarm
#   scripts/fleet.sh publish TAG     build the plugin from this tree (scripts/push.sh)
#                                    and push it to the fleet's registry as
#                                    10.231.0.10:5000/netfs:TAG
#   scripts/fleet.sh build TAG       the same, but node1 builds it with its own
#                                    Docker and nothing else (see cmd_build)
#   scripts/fleet.sh purge           down, then remove the cached fleet image
#
# The image is built once (debootstrap forky, then docker build) and reused;
# `down` keeps it. The host's own containers, images and plugins are not
# touched. Commands hold a shared lock on /run/netfs-test/dockerd.lock, as
# the tests do, so the test that restarts dockerd waits for them; `down`
# waits for the fleet test that holds /run/netfs-test/fleet.lock.
# Node N's API is also at unix://FLEET_DIR/nodeN/run/docker.sock on the host.
#
# Environment:
#   FLEET_NODES    number of Docker nodes (default 3, at most 9)
#   FLEET_DIR      host directory for the fleet's data (default /var/lib/netfs-fleet)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

FLEET_NODES=${FLEET_NODES:-3}
FLEET_DIR=${FLEET_DIR:-/var/lib/netfs-fleet}
FLEET_IMAGE=netfs-fleet:latest
NETWORK=netfs-fleet
PREFIX=10.231.0
SUBNET=$PREFIX.0/24
SWARM_POOL=10.232.0.0/16
REGISTRY_IP=$PREFIX.10
FILES_IP=$PREFIX.11
REGISTRY=$REGISTRY_IP:5000
PROXY_IP=$PREFIX.12
PROXY=http://$PROXY_IP:3128
OUT_NETWORK=netfs-fleet-out
OUT_SUBNET=10.233.0.0/24
LABEL=org.netfs.fleet
WAIT=${FLEET_WAIT:-60}

[[ $FLEET_NODES =~ ^[1-9]$ ]] || die "FLEET_NODES must be 1 to 9"
mkdir -p /run/netfs-test

node_ip() { echo "$PREFIX.2$1"; }
container_of() {
    case $1 in
    node[1-9]) echo "netfs-fleet-$1" ;;
    files | registry) echo "netfs-fleet-$1" ;;
    *) die "unknown fleet member '$1' (node1..node$FLEET_NODES, files, registry)" ;;
    esac
}

lock_dockerd() {
    exec 7>>/run/netfs-test/dockerd.lock
    flock -s 7
}

running() { [ "$("$DOCKER" container inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# The fleet image, rebuilt only when its Dockerfile or entry point changes.
ensure_image() {
    local context=$NETFS_TOP/scripts/fleet digest
    digest=$(cat "$context/Dockerfile" "$context/init.sh" | sha256sum | cut -c1-16)
    if [ "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL.digest\"}}" "$FLEET_IMAGE" 2>/dev/null)" = "$digest" ]; then
        return 0
    fi
    "$NETFS_TOP/scripts/base-image.sh" forky
    mkdir -p "$NETFS_CACHE"
    say "docker build $FLEET_IMAGE (Debian forky, Docker 28; once)"
    if ! DOCKER_BUILDKIT=0 "$DOCKER" build \
        --build-arg "APT_OPTIONS=-o Acquire::Check-Valid-Until=false" \
        --label "$LABEL.digest=$digest" -t "$FLEET_IMAGE" "$context" \
        >"$NETFS_CACHE/fleet-build.log" 2>&1; then
        tail -n 30 "$NETFS_CACHE/fleet-build.log" >&2
        die "docker build failed; see $NETFS_CACHE/fleet-build.log"
    fi
}

ensure_network() {
    "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1 && return 0
    say "docker network create $NETWORK ($SUBNET, internal)"
    "$DOCKER" network create --internal --subnet "$SUBNET" --label "$LABEL=1" "$NETWORK" >/dev/null
}

# The fleet's ssh keys and what the plugin on each node reads through its
# sshkeys mount (FLEET_DIR/keys): root's key, known_hosts with the sshd
# host's key, and an rclone.conf with an sftp remote `files`. Host key
# checking stays on, as it should in production.
ensure_files() {
    mkdir -p "$FLEET_DIR/ssh" "$FLEET_DIR/keys" "$FLEET_DIR/files"
    chmod 700 "$FLEET_DIR/ssh" "$FLEET_DIR/keys"
    if [ ! -e "$FLEET_DIR/ssh/id_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C netfs-fleet -f "$FLEET_DIR/ssh/id_ed25519"
    fi
    if [ ! -e "$FLEET_DIR/ssh/ssh_host_ed25519_key" ]; then
        ssh-keygen -q -t ed25519 -N '' -C files -f "$FLEET_DIR/ssh/ssh_host_ed25519_key"
    fi
    printf '%s %s\n' "$FILES_IP" "$(cut -d' ' -f1,2 "$FLEET_DIR/ssh/ssh_host_ed25519_key.pub")" \
        >"$FLEET_DIR/keys/known_hosts"
    if [ ! -e "$FLEET_DIR/ssh/password" ]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$FLEET_DIR/ssh/password")
    fi
    install -m 600 "$FLEET_DIR/ssh/id_ed25519" "$FLEET_DIR/keys/id_ed25519"
    cat >"$FLEET_DIR/keys/rclone.conf" <<CONF
[files]
type = sftp
host = $FILES_IP
user = root
key_file = /root/.ssh/id_ed25519
known_hosts_file = /root/.ssh/known_hosts
shell_type = unix
CONF
    chmod 600 "$FLEET_DIR/keys/rclone.conf"
}

# Runs a fleet container unless it exists; starts it if it is stopped.
start_member() {
    local name=$1
    shift
    if "$DOCKER" container inspect "$name" >/dev/null 2>&1; then
        running "$name" || "$DOCKER" start "$name" >/dev/null
        return 0
    fi
    # The CLI warns that DNS at 127.0.0.1 may fail: that is the point.
    "$DOCKER" run -d --name "$name" --label "$LABEL=1" \
        --network "$NETWORK" --dns 127.0.0.1 "$@" \
        2> >(grep -v 'Localhost DNS' >&2) >/dev/null
}

# --privileged does not work where the capability bounding set lacks
# CAP_SYS_RESOURCE; all other capabilities, no seccomp filter, writable
# /proc and /sys paths and every device node do for dockerd. /var/lib/docker
# is a host directory, so overlay2 works inside.
run_node() {
    local i=$1 dir=$FLEET_DIR/node$1
    mkdir -p "$dir/docker" "$dir/etc" "$dir/run"
    cat >"$dir/etc/daemon.json" <<JSON
{
  "insecure-registries": ["$REGISTRY"],
  "bip": "10.240.$i.1/24",
  "default-address-pools": [{"base": "10.241.$i.0/24", "size": 28}],
  "dns": ["127.0.0.1"],
  "storage-driver": "overlay2"
}
JSON
    start_member "netfs-fleet-node$i" --hostname "node$i" --ip "$(node_ip "$i")" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
        --security-opt apparmor=unconfined \
        --device-cgroup-rule 'a *:* rwm' --device /dev/fuse \
        -v "$dir/docker:/var/lib/docker" -v "$dir/run:/run/fleet" \
        -v "$dir/etc/daemon.json:/etc/netfs-fleet/daemon.json:ro" \
        -v "$FLEET_DIR/keys:/etc/netfs-fleet/keys" \
        "$FLEET_IMAGE" node
}

node_docker() {
    local i=$1
    shift
    "$DOCKER" exec "netfs-fleet-node$i" docker "$@"
}

wait_node() {
    local i=$1 n
    for ((n = 0; n < WAIT * 4; n++)); do
        node_docker "$i" info >/dev/null 2>&1 && return 0
        running "netfs-fleet-node$i" || break
        sleep 0.25
    done
    "$DOCKER" logs --tail 20 "netfs-fleet-node$i" >&2 || true
    die "dockerd in node$i did not answer within ${WAIT}s"
}

# The busybox test image, loaded from the host (nothing can be pulled).
load_test_image() {
    local i=$1
    node_docker "$i" image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1 && return 0
    "$DOCKER" save "$BUSYBOX_IMAGE" | "$DOCKER" exec -i "netfs-fleet-node$i" docker load >/dev/null
}

# No member keeps a default route, whatever set one up (the entry point
# deletes it too, but a restart by dockerd can bring it back): traffic has
# nowhere to go but the fleet's own subnet.
seal() {
    local name pid
    for name in $("$DOCKER" ps --format '{{.Names}}' --filter "label=$LABEL=1"); do
        # The build's proxy is the one way out, while it is there.
        [ "$name" != netfs-fleet-proxy ] || continue
        pid=$("$DOCKER" container inspect -f '{{.State.Pid}}' "$name")
        [ "$pid" -gt 0 ] 2>/dev/null || continue
        while nsenter -t "$pid" -n ip route show default | grep -q .; do
            nsenter -t "$pid" -n ip route del default
        done
    done
}

swarm_state() { node_docker "$1" info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }

ensure_swarm() {
    local i token
    if [ "$(swarm_state 1)" != active ]; then
        say "docker swarm init on node1 (address pool $SWARM_POOL)"
        node_docker 1 swarm init --advertise-addr "$(node_ip 1)" \
            --default-addr-pool "$SWARM_POOL" --default-addr-pool-mask-length 24 >/dev/null
    fi
    token=$(node_docker 1 swarm join-token -q worker)
    for ((i = 2; i <= FLEET_NODES; i++)); do
        [ "$(swarm_state "$i")" = active ] && continue
        say "node$i joins the swarm"
        node_docker "$i" swarm join --advertise-addr "$(node_ip "$i")" \
            --token "$token" "$(node_ip 1):2377" >/dev/null
    done
    # After a restart of the fleet the manager takes a few seconds to see
    # every node again; tasks placed meanwhile would all go to the others.
    local n ready
    for ((n = 0; n < WAIT * 4; n++)); do
        ready=$(node_docker 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
        [ "$ready" -ge "$FLEET_NODES" ] && return 0
        sleep 0.25
    done
    node_docker 1 node ls >&2 || true
    die "not every node is ready in the swarm after ${WAIT}s"
}

cmd_up() {
    "$NETFS_TOP/scripts/setup.sh"
    pick_docker || die "dockerd does not answer"
    lock_dockerd
    ensure_image
    ensure_network
    ensure_files
    start_member netfs-fleet-registry --hostname registry --ip "$REGISTRY_IP" "$FLEET_IMAGE" registry
    start_member netfs-fleet-files --hostname files --ip "$FILES_IP" \
        -v "$FLEET_DIR/ssh/id_ed25519.pub:/etc/netfs-fleet/ssh/id_ed25519.pub:ro" \
        -v "$FLEET_DIR/ssh/password:/etc/netfs-fleet/ssh/password:ro" \
        -v "$FLEET_DIR/ssh/ssh_host_ed25519_key:/etc/ssh/ssh_host_ed25519_key:ro" \
        -v "$FLEET_DIR/ssh/ssh_host_ed25519_key.pub:/etc/ssh/ssh_host_ed25519_key.pub:ro" \
        -v "$FLEET_DIR/files:/srv" "$FLEET_IMAGE" sshd
    local i
    for ((i = 1; i <= FLEET_NODES; i++)); do
        run_node "$i"
    done
    for ((i = 1; i <= FLEET_NODES; i++)); do
        wait_node "$i"
        load_test_image "$i"
    done
    ensure_swarm
    seal
    say "fleet up: $FLEET_NODES nodes, registry $REGISTRY, sshd root@$FILES_IP:/srv (host: $FLEET_DIR/files)"
}

cmd_down() {
    pick_docker || die "dockerd does not answer"
    # Not while a fleet test of any test process holds the fleet.
    exec 6>>/run/netfs-test/fleet.lock
    flock 6
    lock_dockerd
    local ids
    ids=$("$DOCKER" ps -aq --filter "label=$LABEL=1")
    if [ -n "$ids" ]; then
        say "removing the fleet's containers"
        # shellcheck disable=SC2086 # one id a word
        "$DOCKER" rm -f -v $ids >/dev/null
    fi
    local network
    for network in "$NETWORK" "$OUT_NETWORK"; do
        if "$DOCKER" network inspect "$network" >/dev/null 2>&1; then
            "$DOCKER" network rm "$network" >/dev/null
        fi
    done
    if [ -d "$FLEET_DIR" ]; then
        rm -rf --one-file-system "$FLEET_DIR"
    fi
    say "fleet down"
}

cmd_purge() {
    cmd_down
    "$DOCKER" rmi "$FLEET_IMAGE" >/dev/null 2>&1 || true
    say "removed $FLEET_IMAGE (debian:forky-slim and the debootstrap tree stay in $NETFS_CACHE)"
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: fleet.sh exec NODE CMD..."
    pick_docker || die "dockerd does not answer"
    local name tty=()
    name=$(container_of "$1")
    shift
    [ -t 0 ] && [ -t 1 ] && tty=(-t)
    exec "$DOCKER" exec -i "${tty[@]}" "$name" "$@"
}

cmd_status() {
    pick_docker || die "dockerd does not answer"
    "$DOCKER" ps -a --filter "label=$LABEL=1" --format 'table {{.Names}}\t{{.Status}}'
    local i
    for ((i = 1; i <= FLEET_NODES; i++)); do
        running "netfs-fleet-node$i" || continue
        printf 'node%s: docker %s, swarm %s\n' "$i" \
            "$(node_docker "$i" version -f '{{.Server.Version}}' 2>/dev/null || echo '?')" \
            "$(swarm_state "$i")"
    done
    if running netfs-fleet-node1; then
        node_docker 1 node ls 2>/dev/null || true
    fi
    printf 'registry: %s, sshd: root@%s:/srv (host: %s/files), keys: %s/keys\n' \
        "$REGISTRY" "$FILES_IP" "$FLEET_DIR" "$FLEET_DIR"
}

# Builds the plugin from this tree (scripts/push.sh) and pushes it from
# node1: the host's dockerd does not trust the fleet's registry, and must
# not be reconfigured for it.
cmd_publish() {
    [ $# -eq 1 ] || die "usage: fleet.sh publish TAG"
    pick_docker || die "dockerd does not answer"
    running netfs-fleet-node1 || die "the fleet is not up: scripts/fleet.sh up"
    lock_dockerd
    REGISTRY=$REGISTRY PUSH_TAG=$1 PUSH_DOCKER_HOST=unix://$FLEET_DIR/node1/run/docker.sock \
        "$NETFS_TOP/scripts/push.sh" 7>&-
}

# The hosts a plugin build fetches from: the Debian archives the base image
# names (this host's), crates.io's index and downloads, PyPI's index and files.
build_hosts() {
    local url host
    for url in "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR"; do
        host=${url#*://}
        host=${host%%/*}
        echo "${host%:*}"
    done | sort -u
    printf '%s\n' index.crates.io static.crates.io pypi.org files.pythonhosted.org
}

start_proxy() {
    stop_proxy
    "$DOCKER" network create --subnet "$OUT_SUBNET" --label "$LABEL=1" "$OUT_NETWORK" >/dev/null
    local hosts
    mapfile -t hosts < <(build_hosts)
    say "netfs-fleet-proxy: the fleet's way to ${hosts[*]} for the build"
    "$DOCKER" run -d --name netfs-fleet-proxy --label "$LABEL=1" \
        --network "$OUT_NETWORK" -e "FLEET_SUBNET=$SUBNET" "$FLEET_IMAGE" proxy "${hosts[@]}" >/dev/null
    "$DOCKER" network connect --ip "$PROXY_IP" "$NETWORK" netfs-fleet-proxy
    # It refuses what it does not list (asked for this host's loopback, so
    # that nothing would leave even if it did not).
    local answer n
    for ((n = 0; n < 40; n++)); do
        # shellcheck disable=SC2016 # expanded in node1
        answer=$("$DOCKER" exec netfs-fleet-node1 bash -c 'exec 3<>"/dev/tcp/$1/3128" &&
            printf "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n" >&3 &&
            timeout 5 head -n 1 <&3' check "$PROXY_IP" 2>/dev/null || true)
        [ -n "$answer" ] && break
        sleep 0.25
    done
    case $answer in
    "HTTP/1.1 403 "*) ;;
    *) die "netfs-fleet-proxy does not refuse a host it does not list: '${answer:-no answer}'" ;;
    esac
}

stop_proxy() {
    "$DOCKER" rm -f netfs-fleet-proxy >/dev/null 2>&1 || true
    if "$DOCKER" network inspect "$OUT_NETWORK" >/dev/null 2>&1; then
        "$DOCKER" network rm "$OUT_NETWORK" >/dev/null
    fi
}

# node1 builds the plugin from a copy of this tree and pushes it to the
# fleet's registry as a user's Docker host would, with nothing but its
# Docker 28: no make, git, python, cargo or debootstrap there, and an
# apt-get that fails (and says so) if anything calls it. The one image a
# Docker host would pull, debian:trixie-slim, is loaded from this machine,
# as nothing can be pulled here. The node reaches the Debian mirror,
# crates.io and PyPI only through netfs-fleet-proxy, which its docker CLI
# hands containers and builds (`proxies` in its config.json, the way Docker
# documents for a host behind a proxy), with the certificates this machine
# trusts. The proxy goes when the build is done.
cmd_build() {
    [ $# -eq 1 ] || die "usage: fleet.sh build TAG"
    pick_docker || die "dockerd does not answer"
    running netfs-fleet-node1 || die "the fleet is not up: scripts/fleet.sh up"
    lock_dockerd
    local node=netfs-fleet-node1 work=/root/netfs-build revision
    if ! node_docker 1 image inspect debian:trixie-slim >/dev/null 2>&1; then
        "$NETFS_TOP/scripts/base-image.sh" trixie
        "$DOCKER" save debian:trixie-slim | "$DOCKER" exec -i "$node" docker load >/dev/null
    fi
    "$DOCKER" exec "$node" sh -c "rm -rf $work && mkdir -p $work/src $work/bin $work/docker /usr/local/share/ca-certificates"
    tar -C "$NETFS_TOP" --exclude=./target --exclude=./.git --exclude=./.work -cf - . |
        "$DOCKER" exec -i "$node" tar -x -C "$work/src"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        tar -C /usr/local/share/ca-certificates -cf - . |
            "$DOCKER" exec -i "$node" tar -x -C /usr/local/share/ca-certificates
    fi
    "$DOCKER" exec -i "$node" sh -c "cat >$work/docker/config.json" <<JSON
{"proxies": {"default": {"httpProxy": "$PROXY", "httpsProxy": "$PROXY", "noProxy": "127.0.0.0/8,localhost,$SUBNET"}}}
JSON
    local tool
    for tool in apt-get apt dpkg; do
        printf '#!/bin/sh\necho "$0 $*" >>%s/apt-was-called\nexit 1\n' "$work" |
            "$DOCKER" exec -i "$node" sh -c "cat >$work/bin/$tool && chmod +x $work/bin/$tool"
    done
    revision=$(source_revision)
    trap 'stop_proxy; seal' EXIT
    start_proxy
    say "node1 builds and pushes the plugin with only its Docker ($(node_docker 1 version -f '{{.Server.Version}}'))"
    "$DOCKER" exec -w "$work/src" -e "DOCKER_CONFIG=$work/docker" \
        -e "PATH=$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        -e "REGISTRY=$REGISTRY" -e "PUSH_TAG=$1" -e "NETFS_REVISION=$revision" \
        "$node" bash scripts/push.sh 7>&-
    if "$DOCKER" exec "$node" test -e "$work/apt-was-called"; then
        "$DOCKER" exec "$node" cat "$work/apt-was-called" >&2
        die "the build on node1 called the package manager"
    fi
}

case ${1:-} in
up | down | status | purge)
    cmd=$1
    shift
    [ $# -eq 0 ] || die "fleet.sh $cmd takes no arguments"
    "cmd_$cmd"
    ;;
exec | publish | build)
    cmd=$1
    shift
    "cmd_$cmd" "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
