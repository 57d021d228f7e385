#!/bin/sh
# An S3 volume (AWS, MinIO, Ceph, Garage, Wasabi, ...): a bucket, or a path
# in one, through `rclone mount`.
#
#   S3_ENDPOINT=https://s3.example.com S3_ACCESS_KEY_ID=... \
#   S3_SECRET_ACCESS_KEY=... examples/volumes/s3.sh NAME BUCKET[/PATH]
#   docker run --rm -v NAME:/data busybox ls /data
#
# netfs hands the secret key to rclone in its environment, never in its
# argv, and never shows it in logs, errors or Status. dockerd itself keeps
# the options of a volume (`docker volume inspect` shows them to anyone who
# may use the docker socket): to keep the key out of dockerd as well, put
# the remote in rclone.conf and use rclone.sh (docs/backends.md, S3).
#
# Environment:
#   S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY   the key pair (required)
#   S3_PROVIDER     rclone's provider: AWS, Minio, Ceph, ... (default Other)
#   S3_ENDPOINT     the server's URL (empty for AWS)
#   S3_REGION       the region, if the server wants one
#   NETFS_DRIVER    the driver (default netfs)
#   RCLONE_OPTIONS  mount options, rclone flags without their dashes
#                   (default none: netfs uses vfs-cache-mode=writes)
set -eu

[ $# -eq 2 ] || {
    echo "usage: $0 NAME BUCKET[/PATH]" >&2
    exit 2
}
: "${S3_ACCESS_KEY_ID:?set S3_ACCESS_KEY_ID}" "${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY}"

# A value in double quotes (a " in it doubled): URLs hold ':', keys may hold ','.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

params="provider=${S3_PROVIDER:-Other}"
[ -z "${S3_ENDPOINT:-}" ] || params="$params,endpoint=$(quote "$S3_ENDPOINT")"
[ -z "${S3_REGION:-}" ] || params="$params,region=$(quote "$S3_REGION")"
params="$params,access_key_id=$(quote "$S3_ACCESS_KEY_ID")"
params="$params,secret_access_key=$(quote "$S3_SECRET_ACCESS_KEY")"

docker volume create -d "${NETFS_DRIVER:-netfs}" \
    -o type=rclone \
    -o "source=:s3,$params:$2" \
    ${RCLONE_OPTIONS:+-o "o=$RCLONE_OPTIONS"} \
    "$1"
