#!/usr/bin/env bash
# netfs against `rclone serve docker` on two of rclone's own remotes, S3
# (`rclone serve s3`) and WebDAV (Apache mod_dav), both on 127.0.0.1: the
# same pinned rclone binary (scripts/rclone.lock) and the same server serve
# both plugins, and both get the same volume options. For each remote and
# plugin, in one run, side by side:
#   - time to ready: `docker volume create` until a first container has read
#     a file of the volume (containers are started until one does), and the
#     create alone;
#   - the data path in a container: write N MiB (dd conv=fsync) and read back
#     a file of N MiB that is on the server and in no cache; the container
#     marks each phase on a FIFO that this script timestamps, so container
#     start-up is not counted. vfs-cache-mode=off on both sides, so that a
#     write is done when the server has it (with writes, it would end in the
#     local cache). Medians over BENCH_RUNS rounds, the order alternating.
# Prints a Markdown table; writes it into BENCH_RCLONE_OUT too.
#
# Environment:
#   BENCH_RUNS        rounds (default 3)
#   BENCH_DATA_MIB    file size in MiB (default 128)
#   BENCH_LOGS        a directory to keep the servers' and plugins' logs in
#   BENCH_RCLONE_OUT  file the table is written to (default
#                     docs/benchmarks-rclone.md; empty: print only)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

RUNS=${BENCH_RUNS:-3}
MIB=${BENCH_DATA_MIB:-128}
OUT=${BENCH_RCLONE_OUT-$NETFS_TOP/docs/benchmarks-rclone.md}
pick_docker || die "no docker CLI talks to a running dockerd; run scripts/setup.sh"
RCLONE=$("$NETFS_TOP/scripts/rclone.sh")
RCLONE_VERSION=$("$RCLONE" version)
RCLONE_VERSION=${RCLONE_VERSION%%$'\n'*}
cd "$NETFS_TOP"
say "building netfs"
cargo build --release --locked --bin netfs
NETFS=$NETFS_TOP/target/release/netfs

work=$(mktemp -d /tmp/netfs-bench-rclone.XXXXXX)
chmod 755 "$work"
pids=()
volumes=()
holders=()
cleanup() {
    if [ -n "${BENCH_LOGS:-}" ]; then
        mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true
    fi
    [ ${#holders[@]} -eq 0 ] || "$DOCKER" rm -f "${holders[@]}" >/dev/null 2>&1 || true
    [ ${#volumes[@]} -eq 0 ] || "$DOCKER" volume rm -f "${volumes[@]}" >/dev/null 2>&1 || true
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | while read -r mp; do
        umount -l "$mp" 2>/dev/null || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # what, seconds, command...
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$what not ready after ${seconds}s"
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
now() { date +%s.%N; }

# The servers. S3: the buckets are the directories of $work/s3.
s3_port=$(free_port)
mkdir -p "$work/s3/bucket"
RCLONE_CONFIG=/dev/null RCLONE_AUTH_KEY='"bench,bench-Secret-1"' \
    "$RCLONE" serve s3 --addr "127.0.0.1:$s3_port" "$work/s3" >"$work/s3.log" 2>&1 &
pids+=($!)
# WebDAV: Apache as www-data over $work/dav.
dav_port=$(free_port)
mkdir -p "$work/dav" "$work/apache"
chown www-data: "$work/dav" "$work/apache"
printf '%s' 'bench-Pass-1' | htpasswd -i -c -B "$work/htpasswd" bench 2>/dev/null
mods=/usr/lib/apache2/modules
{
    printf 'ServerRoot %s\nServerName 127.0.0.1\nListen 127.0.0.1:%s\n' "$work" "$dav_port"
    printf 'PidFile %s/apache/httpd.pid\nDefaultRuntimeDir %s/apache\nMutex file:%s/apache\n' "$work" "$work" "$work"
    printf 'ErrorLog %s/apache/error.log\nUser www-data\nGroup www-data\n' "$work"
    for m in mpm_event authz_core authz_user authn_core authn_file auth_basic dav dav_fs; do
        printf 'LoadModule %s_module %s/mod_%s.so\n' "$m" "$mods" "$m"
    done
    printf 'DavLockDB %s/apache/davlock\nDocumentRoot %s/dav\n<Directory %s/dav>\n' "$work" "$work" "$work"
    printf '  Dav On\n  AuthType Basic\n  AuthName bench\n  AuthUserFile %s/htpasswd\n  Require valid-user\n</Directory>\n' "$work"
} >"$work/httpd.conf"
/usr/sbin/apache2 -f "$work/httpd.conf" -DFOREGROUND >"$work/apache.log" 2>&1 &
pids+=($!)
wait_for "rclone serve s3" 20 listening "$s3_port"
wait_for "apache" 20 listening "$dav_port"

dav_pass=$(printf '%s' 'bench-Pass-1' | "$RCLONE" obscure -)
remote_of() { # kind sub
    case $1 in
    s3) printf ':s3,provider=Other,endpoint="http://127.0.0.1:%s",access_key_id=bench,secret_access_key=bench-Secret-1:bucket/%s' "$s3_port" "$2" ;;
    webdav) printf ':webdav,url="http://127.0.0.1:%s/",vendor=other,user=bench,pass=%s:%s' "$dav_port" "$dav_pass" "$2" ;;
    esac
}
disk_of() { # kind sub
    case $1 in
    s3) printf '%s/s3/bucket/%s' "$work" "$2" ;;
    webdav) printf '%s/dav/%s' "$work" "$2" ;;
    esac
}

# What each volume finds on its server, put on the servers' disks before
# any client lists them (rclone serve s3 caches its directory listings).
for kind in s3 webdav; do
    for plugin in netfs rclone; do
        mkdir -p "$(disk_of "$kind" "$plugin")"
        printf 'hello\n' >"$(disk_of "$kind" "$plugin")/hello"
        head -c "$((MIB * 1048576))" /dev/urandom >"$(disk_of "$kind" "$plugin")/cold.bin"
    done
done
chown -R www-data: "$work/dav"

# The plugins, each finding the same rclone.
tag=$$
netfs_driver=netfs-bench-rclone-$tag
rclone_driver=rclone-bench-rclone-$tag
mkdir -p "$work/netfs/volumes" "$work/rclone/volumes" "$work/rclone/cache" /run/docker/plugins
: >"$work/rclone/rclone.conf"
PATH=$(dirname "$RCLONE"):$PATH RCLONE_CONFIG=$work/rclone/rclone.conf "$NETFS" \
    --socket="/run/docker/plugins/$netfs_driver.sock" \
    --propagated-mount="$work/netfs/volumes" --state-file="$work/netfs/state.json" \
    --mount-timeout=60s --log-level=info >"$work/netfs.log" 2>&1 &
pids+=($!)
"$RCLONE" serve docker --socket-addr "/run/docker/plugins/$rclone_driver.sock" \
    --base-dir "$work/rclone/volumes" --config "$work/rclone/rclone.conf" \
    --cache-dir "$work/rclone/cache" --no-spec -v >"$work/rclone.log" 2>&1 &
pids+=($!)
wait_for "netfs" 20 test -S "/run/docker/plugins/$netfs_driver.sock"
wait_for "rclone serve docker" 20 test -S "/run/docker/plugins/$rclone_driver.sock"

create() { # plugin kind sub volume
    if [ "$1" = netfs ]; then
        "$DOCKER" volume create -d "$netfs_driver" -o type=rclone -o "source=$(remote_of "$2" "$3")" \
            -o o=vfs-cache-mode=off "$4" >/dev/null
    else
        "$DOCKER" volume create -d "$rclone_driver" -o "remote=$(remote_of "$2" "$3")" \
            -o vfs-cache-mode=off "$4" >/dev/null
    fi
    volumes+=("$4")
}

mkfifo "$work/fifo"
chmod 666 "$work/fifo"
exec 3<>"$work/fifo"
declare -A samples
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
add() { samples[$1]="${samples[$1]:-} $2"; }

# One volume per remote and plugin: time to ready, then the rounds.
for kind in s3 webdav; do
    for plugin in netfs rclone; do
        sub=$plugin
        volume=bench-$kind-$plugin-$tag
        t0=$(now)
        create "$plugin" "$kind" "$sub" "$volume"
        t1=$(now)
        # A first container holds the volume mounted for the whole run, as a
        # service would (rclone serve docker unmounts when the last container
        # leaves); ready is when a container reads the file, containers
        # being started until one does.
        holder=bench-hold-$kind-$plugin-$tag
        "$DOCKER" run -d --name "$holder" --network none -v "$volume:/data" "$BUSYBOX_IMAGE" \
            sleep 3600 >/dev/null
        holders+=("$holder")
        tries=0
        until out=$("$DOCKER" run --rm --network none -v "$volume:/data" "$BUSYBOX_IMAGE" \
            cat /data/hello 2>/dev/null) && [ "$out" = hello ]; do
            tries=$((tries + 1))
            if [ "$tries" -ge 30 ]; then
                "$DOCKER" run --rm --network none -v "$volume:/data" "$BUSYBOX_IMAGE" ls -la /data >&2 || true
                die "$plugin on $kind: no container read the volume in 30 tries"
            fi
        done
        t2=$(now)
        add "$kind-$plugin-tries" "$((tries + 1))"
        add "$kind-$plugin-create" "$(echo "($t1 - $t0) * 1000" | bc -l)"
        add "$kind-$plugin-ready" "$(echo "($t2 - $t0) * 1000" | bc -l)"
        say "$kind, $plugin: created in $(echo "($t1 - $t0) * 1000" | bc -l | cut -d. -f1) ms, first read after $(echo "($t2 - $t0) * 1000" | bc -l | cut -d. -f1) ms (container $((tries + 1)))"
    done
done

# The marks the container writes: w (write starts), r (written, read starts), e (read).
mark_at() { # expected mark -> prints its time
    local m
    read -r -t 600 m <&3 || die "no mark $1 within 600s"
    [ "$m" = "$1" ] || die "expected mark $1, got $m"
    now
}
measure() { # kind plugin
    local volume=bench-$1-$2-$tag tw tr te
    "$DOCKER" run --rm --network none -e "N=$MIB" -v "$volume:/data" -v "$work:/marks" "$BUSYBOX_IMAGE" \
        sh -c 'set -e; echo w >/marks/fifo; dd if=/dev/zero of=/data/blob bs=1M count="$N" conv=fsync 2>/dev/null;
               echo r >/marks/fifo; dd if=/data/cold.bin of=/dev/null bs=1M 2>/dev/null; echo e >/marks/fifo;
               rm -f /data/blob' &
    local run=$!
    tw=$(mark_at w)
    tr=$(mark_at r)
    te=$(mark_at e)
    wait "$run" || die "the data script failed on $1, $2"
    add "$1-$2-write" "$(echo "$MIB / ($tr - $tw)" | bc -l)"
    add "$1-$2-read" "$(echo "$MIB / ($te - $tr)" | bc -l)"
}
for ((round = 0; round < RUNS; round++)); do
    for kind in s3 webdav; do
        if ((round % 2 == 0)); then order="netfs rclone"; else order="rclone netfs"; fi
        for plugin in $order; do
            measure "$kind" "$plugin"
        done
    done
    say "round $((round + 1)) of $RUNS done"
done

fmt() { printf '%.*f' "$2" "$(echo "${samples[$1]}" | median)"; }
ratio() { printf '%.2f' "$(echo "$(echo "${samples[$1]}" | median) / $(echo "${samples[$2]}" | median)" | bc -l)"; }
{
    echo "# netfs and rclone serve docker on S3 and WebDAV"
    echo
    echo "Measured by \`scripts/bench-rclone.sh\` (\`make bench-rclone\`) on $(date -u +%Y-%m-%d),"
    echo "$(nproc) cores, $RCLONE_VERSION for both plugins and both servers' clients;"
    echo "S3: \`rclone serve s3\`, WebDAV: Apache mod_dav, on 127.0.0.1. Both plugins"
    echo "mount with \`vfs-cache-mode=off\` here, so a write is done when the server"
    echo "has it. $MIB MiB, medians of $RUNS rounds; time to ready is one volume each."
    echo
    echo "| remote | measure | netfs | rclone serve docker | netfs / rclone |"
    echo "|---|---|---|---|---|"
    for kind in s3 webdav; do
        echo "| $kind | write MiB/s | $(fmt "$kind-netfs-write" 1) | $(fmt "$kind-rclone-write" 1) | $(ratio "$kind-netfs-write" "$kind-rclone-write") |"
        echo "| $kind | read MiB/s (cold) | $(fmt "$kind-netfs-read" 1) | $(fmt "$kind-rclone-read" 1) | $(ratio "$kind-netfs-read" "$kind-rclone-read") |"
        echo "| $kind | create, ms | $(fmt "$kind-netfs-create" 0) | $(fmt "$kind-rclone-create" 0) | |"
        echo "| $kind | create to first read in a container, ms | $(fmt "$kind-netfs-ready" 0) | $(fmt "$kind-rclone-ready" 0) | |"
        echo "| $kind | containers started until one read the volume (after a first that holds it) | $(fmt "$kind-netfs-tries" 0) | $(fmt "$kind-rclone-tries" 0) | |"
    done
    echo
    echo "netfs's Create starts rclone and returns once the mount answers, so its"
    echo "create holds rclone's start-up; rclone serve docker mounts at the first"
    echo "Mount instead. The data path is rclone's own on both sides: netfs adds no"
    echo "process between the container and the FUSE mount."
} >"$work/table.md"
cat "$work/table.md"
[ -z "$OUT" ] || cp "$work/table.md" "$OUT"
