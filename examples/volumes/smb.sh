#!/bin/sh
# An SMB volume (Windows shares, Samba, NAS boxes) through rclone's smb
# backend: a client in user space, so neither the host nor the plugin needs
# the kernel's CIFS module.
#
#   SMB_USER=me SMB_PASS_OBSCURED="$(rclone obscure 'my password')" \
#       examples/volumes/smb.sh NAME fileserver.example.com SHARE[/PATH]
#   docker run --rm -v NAME:/data busybox ls /data
#
# The password is obscured (`rclone obscure`) and reaches rclone in its
# environment, never its argv (see webdav.sh on dockerd's copy).
#
# Environment:
#   SMB_USER, SMB_PASS_OBSCURED   the account (required)
#   SMB_DOMAIN      the Windows domain (default WORKGROUP)
#   SMB_PORT        the server's port (default 445)
#   NETFS_DRIVER    the driver (default netfs)
#   RCLONE_OPTIONS  mount options (default none: vfs-cache-mode=writes)
set -eu

[ $# -eq 3 ] || {
    echo "usage: $0 NAME HOST SHARE[/PATH]" >&2
    exit 2
}
: "${SMB_USER:?set SMB_USER}" "${SMB_PASS_OBSCURED:?set SMB_PASS_OBSCURED}"

quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

params="host=$2,port=${SMB_PORT:-445},user=$(quote "$SMB_USER")"
params="$params,pass=$(quote "$SMB_PASS_OBSCURED")"
[ -z "${SMB_DOMAIN:-}" ] || params="$params,domain=$(quote "$SMB_DOMAIN")"

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=rclone \
    -o "source=:smb,$params:$3" \
    ${RCLONE_OPTIONS:+-o "o=$RCLONE_OPTIONS"} \
    "$1"
