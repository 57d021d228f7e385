#!/bin/sh
# An rclone volume: any backend rclone knows (sftp, S3, WebDAV, ...),
# through `rclone mount`.
#
#   examples/volumes/rclone.sh NAME SOURCE
#   docker run --rm -v NAME:/data busybox ls /data
#
# SOURCE is either
#   - REMOTE:PATH, a remote of the rclone config file; the managed plugin
#     reads rclone.conf from its sshkeys mount (RCLONE_CONFIG, by default
#     /root/.ssh/rclone.conf in the plugin), e.g. for files:/srv/data
#         [files]
#         type = sftp
#         host = files.example.com
#         user = me
#         key_file = /root/.ssh/id_ed25519
#   - an on-the-fly remote, no config needed:
#         :sftp,host=files.example.com,user=me,key_file=/root/.ssh/id_ed25519:/srv/data
#     (keep secrets out of it: it is visible in the process list)
#
# Environment:
#   NETFS_DRIVER    the driver (default netfs)
#   RCLONE_OPTIONS  mount options, each one an rclone flag without its
#                   dashes (default vfs-cache-mode=writes), e.g.
#                   vfs-cache-mode=full,dir-cache-time=30s,allow-other
#                   (containers that run as uid 1000, not root:
#                   allow-other,uid=1000,gid=1000,umask=0022)
set -eu

[ $# -eq 2 ] || {
    echo "usage: $0 NAME SOURCE" >&2
    exit 2
}

# vfs-cache-mode=writes: files can be opened for writing and reading at
# once, as most programs expect of a disk.
docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=rclone \
    -o "source=$2" \
    -o "o=${RCLONE_OPTIONS:-vfs-cache-mode=writes}" \
    "$1"
