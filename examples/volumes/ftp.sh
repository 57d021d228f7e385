#!/bin/sh
# An FTP volume (FTP or FTPS) through `rclone mount`.
#
#   FTP_USER=me FTP_PASS_OBSCURED="$(rclone obscure 'my password')" \
#       examples/volumes/ftp.sh NAME ftp.example.com [PATH]
#   docker run --rm -v NAME:/data busybox ls /data
#
# The password is obscured (`rclone obscure`) and reaches rclone in its
# environment, never its argv (see webdav.sh on dockerd's copy). Plain FTP
# sends it over the network in clear: prefer FTP_TLS=explicit.
#
# Environment:
#   FTP_USER, FTP_PASS_OBSCURED   the account (required)
#   FTP_PORT        the server's port (default 21)
#   FTP_TLS         explicit (AUTH TLS, port 21), implicit (port 990) or
#                   empty for plain FTP
#   NETFS_DRIVER    the driver (default netfs)
#   RCLONE_OPTIONS  mount options (default none: vfs-cache-mode=writes)
set -eu

[ $# -eq 2 ] || [ $# -eq 3 ] || {
    echo "usage: $0 NAME HOST [PATH]" >&2
    exit 2
}
: "${FTP_USER:?set FTP_USER}" "${FTP_PASS_OBSCURED:?set FTP_PASS_OBSCURED}"

quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

params="host=$2,port=${FTP_PORT:-21},user=$(quote "$FTP_USER")"
params="$params,pass=$(quote "$FTP_PASS_OBSCURED")"
case "${FTP_TLS:-}" in
explicit) params="$params,explicit_tls=true" ;;
implicit) params="$params,tls=true" ;;
"") ;;
*)
    echo "FTP_TLS must be explicit, implicit or empty" >&2
    exit 2
    ;;
esac

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=rclone \
    -o "source=:ftp,$params:${3:-}" \
    ${RCLONE_OPTIONS:+-o "o=$RCLONE_OPTIONS"} \
    "$1"
