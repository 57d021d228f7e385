#!/bin/sh
# An sshfs volume: a directory on an ssh server, logged in with a key.
#
#   examples/volumes/sshfs.sh NAME USER@HOST:/PATH [KEY]
#   docker run --rm -v NAME:/data busybox ls /data
#
# KEY (default /root/.ssh/id_ed25519) is the key's path as netfs sees it:
# the managed plugin reads its keys from the sshkeys mount, /root/.ssh in the
# plugin (docs/install.md). The server must be in known_hosts there, or add
# StrictHostKeyChecking=accept-new to SSHFS_OPTIONS.
#
# Environment:
#   NETFS_DRIVER   the driver (default netfs)
#   SSHFS_OPTIONS  more sshfs options, e.g. port=2222,allow_other
#                  (containers that run as uid 1000, not root:
#                  allow_other,uid=1000,gid=1000,umask=0022)
#
# With a password instead of a key (it reaches sshfs on stdin, never its
# argv; docker volume inspect shows it under Options, as given):
#   docker volume create -d netfs -o source=me@files:/srv -o password=... NAME
set -eu

[ $# -ge 2 ] || {
    echo "usage: $0 NAME USER@HOST:/PATH [KEY]" >&2
    exit 2
}
name=$1
source=$2
key=${3:-/root/.ssh/id_ed25519}

# reconnect and ServerAlive*: a network blip does not end the mount under
# running containers.
docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o "source=$source" \
    -o "o=IdentityFile=$key,reconnect,ServerAliveInterval=15,ServerAliveCountMax=3${SSHFS_OPTIONS:+,$SSHFS_OPTIONS}" \
    "$name"
