#!/bin/sh
# A volume of type command: netfs runs the binary the plugin is configured
# with, with an argv of the volume's choosing, and supervises it like the
# other backends. Here the binary is sshfs, given its arguments in a
# different order; the same goes for any FUSE tool in the plugin (or, for
# netfs as a host service, on the host: gocryptfs, s3fs, ...).
#
# Once, for the plugin (every command volume runs this binary, with the
# volume's merged mount options after -o):
#   docker plugin disable -f netfs
#   docker plugin set netfs VOLUME_PROCESS_BINARY=/usr/bin/sshfs \
#       MOUNT_OPTIONS_VOLUME_PROCESS_OPTION=-o
#   docker plugin enable netfs
#
# Then:
#   examples/volumes/command.sh NAME USER@HOST:/PATH [KEY]
#
# gives the argv `/usr/bin/sshfs USER@HOST:/PATH <mountpoint> -f -o <options>`:
# c is a list of arguments separated by &, with {source}, {mountPoint} and
# {name} replaced. The tool must stay in the foreground (-f) for netfs to
# watch the process; one that mounts and exits 0 is watched through its
# mount instead (docs/backends.md).
#
# Environment:
#   NETFS_DRIVER   the driver (default netfs)
#   SSHFS_OPTIONS  more options, e.g. port=2222
set -eu

[ $# -ge 2 ] || {
    echo "usage: $0 NAME USER@HOST:/PATH [KEY]" >&2
    exit 2
}
key=${3:-/root/.ssh/id_ed25519}

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=command \
    -o "source=$2" \
    -o "c={source}&{mountPoint}&-f" \
    -o "o=IdentityFile=$key,reconnect${SSHFS_OPTIONS:+,$SSHFS_OPTIONS}" \
    "$1"
