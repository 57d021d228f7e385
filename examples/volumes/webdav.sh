#!/bin/sh
# A WebDAV volume (Nextcloud, ownCloud, Apache mod_dav, nginx, SharePoint,
# ...) through `rclone mount`.
#
#   WEBDAV_USER=me WEBDAV_PASS_OBSCURED="$(rclone obscure 'my password')" \
#       examples/volumes/webdav.sh NAME https://dav.example.com/remote.php/dav/files/me [PATH]
#   docker run --rm -v NAME:/data busybox ls /data
#
# rclone takes the password obscured (`rclone obscure`, reversible: keep it
# as secret as the password). netfs hands it to rclone in its environment,
# never in its argv; dockerd keeps the volume's options, so for a password
# dockerd must not hold, use a remote of rclone.conf and rclone.sh.
#
# Environment:
#   WEBDAV_USER            the user (required)
#   WEBDAV_PASS_OBSCURED   the password as `rclone obscure` prints it (required)
#   WEBDAV_VENDOR          nextcloud, owncloud, sharepoint, fastmail, other (default other)
#   NETFS_DRIVER           the driver (default netfs)
#   RCLONE_OPTIONS         mount options (default none: vfs-cache-mode=writes)
set -eu

[ $# -eq 2 ] || [ $# -eq 3 ] || {
    echo "usage: $0 NAME URL [PATH]" >&2
    exit 2
}
: "${WEBDAV_USER:?set WEBDAV_USER}" "${WEBDAV_PASS_OBSCURED:?set WEBDAV_PASS_OBSCURED}"

quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

params="url=$(quote "$2"),vendor=${WEBDAV_VENDOR:-other}"
params="$params,user=$(quote "$WEBDAV_USER"),pass=$(quote "$WEBDAV_PASS_OBSCURED")"

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=rclone \
    -o "source=:webdav,$params:${3:-}" \
    ${RCLONE_OPTIONS:+-o "o=$RCLONE_OPTIONS"} \
    "$1"
