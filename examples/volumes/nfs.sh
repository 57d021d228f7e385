#!/bin/sh
# An NFS volume: an export mounted by mount.nfs, which netfs runs again if
# the mount disappears.
#
#   examples/volumes/nfs.sh NAME SERVER:/EXPORT
#   docker run --rm -v NAME:/data busybox ls /data
#
# The host kernel needs its NFS client (modprobe nfs); without it Create
# fails with "No such device".
#
# Environment:
#   NETFS_DRIVER  the driver (default netfs)
#   NFS_OPTIONS   mount options (default vers=4.2,soft,timeo=100,retrans=3:
#                 a server that does not answer gives I/O errors after about
#                 30 s instead of hanging the containers; NFSv3 without
#                 rpc.statd also needs nolock)
set -eu

[ $# -eq 2 ] || {
    echo "usage: $0 NAME SERVER:/EXPORT" >&2
    exit 2
}

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=nfs \
    -o "source=$2" \
    -o "o=${NFS_OPTIONS:-vers=4.2,soft,timeo=100,retrans=3}" \
    "$1"
