#!/usr/bin/env bash
# A complete netfs round trip on one machine: a throwaway sshd on 127.0.0.1
# serves a temporary directory, netfs mounts it as a Docker volume with
# sshfs, a container writes a file into the volume, and the file shows up in
# the directory sshd serves. Everything is removed afterwards, on failure too.
#
# Environment:
#   DEMO_MODE=service  (default) run target/release/netfs as a host service
#                      on /run/docker/plugins/netfs-demo.sock, driver netfs-demo
#   DEMO_MODE=plugin   build and enable the managed plugin with
#                      scripts/plugin.sh (PLUGIN_NAME, default netfs) and use
#                      it as the driver; the plugin stays installed
#   DEMO_VOLUME        volume name (default demo)
#   KEEP=1             keep the temporary directory (logs) after the demo
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

DEMO_MODE=${DEMO_MODE:-service}
VOLUME=${DEMO_VOLUME:-demo}
case $DEMO_MODE in
service) DRIVER=netfs-demo ;;
plugin) DRIVER=${PLUGIN_NAME:-netfs} ;;
*) die "DEMO_MODE must be service or plugin, not $DEMO_MODE" ;;
esac

tmp=
sshd_pid=
netfs_pid=
plugin_key=
volume_created=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$volume_created" ]; then
        say "removing volume $VOLUME"
        "$DOCKER" volume rm -f "$VOLUME" >/dev/null
    fi
    if [ -n "$netfs_pid" ] && kill -0 "$netfs_pid" 2>/dev/null; then
        say "stopping netfs (pid $netfs_pid)"
        kill -TERM "$netfs_pid"
        for _ in $(seq 1 100); do
            kill -0 "$netfs_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$netfs_pid" 2>/dev/null
        wait "$netfs_pid" 2>/dev/null
    fi
    if [ -n "$sshd_pid" ] && kill -0 "$sshd_pid" 2>/dev/null; then
        say "stopping sshd (pid $sshd_pid)"
        kill -TERM "$sshd_pid"
        wait "$sshd_pid" 2>/dev/null
    fi
    [ -n "$plugin_key" ] && rm -f "$plugin_key" "$plugin_key.pub"
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        # Anything still mounted below is let go of, never deleted through.
        findmnt -rn -o TARGET | grep -F "$tmp/" | sort -r | xargs -r -n 1 umount -l 2>/dev/null
        if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
            say "logs kept in $tmp (sshd.log, netfs.log)"
            [ "$rc" -ne 0 ] && [ -f "$tmp/netfs.log" ] && tail -n 20 "$tmp/netfs.log" >&2
        else
            rm -rf --one-file-system "$tmp"
        fi
    fi
    if [ "$rc" -eq 0 ]; then
        say "demo finished"
    else
        printf 'demo FAILED (exit %s)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if [ -z "$(ss -Hltn "sport = :$port")" ]; then
            echo "$port"
            return 0
        fi
    done
    die "no free TCP port found"
}

"$NETFS_TOP/scripts/setup.sh"
pick_docker || die "dockerd does not answer"

if "$DOCKER" volume inspect "$VOLUME" >/dev/null 2>&1; then
    if [ "$("$DOCKER" volume inspect -f '{{.Driver}}' "$VOLUME")" = "$DRIVER" ]; then
        say "removing volume $VOLUME left over from an earlier demo"
        "$DOCKER" volume rm -f "$VOLUME" >/dev/null
    else
        die "a volume named $VOLUME already exists with another driver; set DEMO_VOLUME"
    fi
fi

if [ "$DEMO_MODE" = service ]; then
    say "building netfs"
    (cd "$NETFS_TOP" && cargo build --release --bin netfs)
else
    say "building and enabling the managed plugin $DRIVER"
    PLUGIN_NAME=$DRIVER PLUGIN_ENABLE=1 "$NETFS_TOP/scripts/plugin.sh"
fi

tmp=$(mktemp -d /tmp/netfs-demo.XXXXXX)
remote=$tmp/remote
mkdir -p "$remote"
port=$(free_port)

say "starting sshd on 127.0.0.1:$port serving $remote"
ssh-keygen -q -t ed25519 -N '' -C netfs-demo-host -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -C netfs-demo-client -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
cat >"$tmp/sshd_config" <<CONFIG
ListenAddress 127.0.0.1
Port $port
HostKey $tmp/host_key
AuthorizedKeysFile $tmp/authorized_keys
PidFile $tmp/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CONFIG
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" >"$tmp/sshd.log" 2>&1 &
sshd_pid=$!
for _ in $(seq 1 100); do
    [ -n "$(ss -Hltn "sport = :$port")" ] && break
    kill -0 "$sshd_pid" 2>/dev/null || {
        cat "$tmp/sshd.log" >&2
        die "sshd exited"
    }
    sleep 0.1
done
[ -n "$(ss -Hltn "sport = :$port")" ] || die "sshd does not listen on port $port"

if [ "$DEMO_MODE" = service ]; then
    # Volumes may name key files only in the plugin's key directory.
    install -d -m 700 "$tmp/keys"
    install -m 600 "$tmp/client_key" "$tmp/keys/client_key"
    key=$tmp/keys/client_key
    socket=/run/docker/plugins/$DRIVER.sock
    say "starting netfs as a host service on $socket"
    mkdir -p /run/docker/plugins
    "$NETFS_TOP/target/release/netfs" \
        --socket "$socket" \
        --propagated-mount "$tmp/volumes" \
        --state-file "$tmp/state.json" \
        --key-dir "$tmp/keys" \
        >"$tmp/netfs.log" 2>&1 &
    netfs_pid=$!
    for _ in $(seq 1 100); do
        [ -S "$socket" ] && break
        kill -0 "$netfs_pid" 2>/dev/null || {
            cat "$tmp/netfs.log" >&2
            die "netfs exited"
        }
        sleep 0.1
    done
    [ -S "$socket" ] || die "netfs did not create $socket"
else
    # The plugin sees the host directory of its sshkeys mount as /root/.ssh,
    # so the demo key goes there for the length of the demo.
    keydir=$("$DOCKER" plugin inspect -f \
        '{{range .Config.Mounts}}{{if eq .Name "sshkeys"}}{{.Source}}{{end}}{{end}}' "$DRIVER")
    [ -d "$keydir" ] || die "the plugin's sshkeys mount source $keydir is not a directory"
    plugin_key=$keydir/netfs-demo-$$
    install -m 600 "$tmp/client_key" "$plugin_key"
    key=/root/.ssh/netfs-demo-$$
    say "demo key copied to $plugin_key (the plugin reads it as $key)"
fi

say "docker volume create -d $DRIVER $VOLUME (sshfs root@127.0.0.1:$remote)"
"$DOCKER" volume create -d "$DRIVER" \
    -o "source=root@127.0.0.1:$remote" \
    -o "o=port=$port,IdentityFile=$key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null" \
    "$VOLUME" >/dev/null
volume_created=1

say "a container writes /data/hello.txt into the volume"
"$DOCKER" run --rm -v "$VOLUME:/data" "$BUSYBOX_IMAGE" \
    sh -c 'echo hello from a container > /data/hello.txt'

say "$remote/hello.txt, as sshd serves it:"
cat "$remote/hello.txt"
[ "$(cat "$remote/hello.txt")" = "hello from a container" ] || die "unexpected content in $remote/hello.txt"

say "docker volume inspect $VOLUME"
"$DOCKER" volume inspect "$VOLUME"
