#!/usr/bin/env bash
# What one sftp login costs an OpenSSH server, by what the server runs for
# it: the CPU an sshd and everything it starts spend on one connection that
# opens the sftp subsystem and closes it, measured on the server's side
# alone, for OpenSSH's defaults with internal-sftp (the tests' flavour) and
# for Debian's shipped sshd_config with one part of it taken away at a
# time: its PAM session modules' pam_motd, all of PAM, the external
# sftp-server. An unshared volume pays one such login, so 100 of them cost
# the server 100 times the figure; docs/benchmarks.md quotes it.
#
# Each sshd listens on 127.0.0.1 in a mount namespace of its own whose
# /root is a fresh one (as in the test fixture, tests/support/stock_sshd.rs)
# and, for the pam_motd case, whose /etc/pam.d/sshd lacks pam_motd. The
# CPU is the listener's own plus its reaped descendants' (/proc/PID/stat),
# read after every connection has closed. The client runs the host's ssh
# with its defaults. On two or more CPUs the servers run on the last and
# the clients on the others. Runs anywhere openssh-server is installed (in
# the bench-trixie image for OpenSSH 10).
#
# Environment:
#   LOGINS   logins per configuration and round (default 100)
#   ROUNDS   rounds; the configurations take turns in each (default 3)
set -euo pipefail

LOGINS=${LOGINS:-100}
ROUNDS=${ROUNDS:-3}
SSHD=/usr/sbin/sshd
STOCK=/usr/share/openssh/sshd_config
[ "$(id -u)" = 0 ] || { echo "run as root (sshd logs in as root)" >&2; exit 1; }
[ -x "$SSHD" ] && [ -r "$STOCK" ] || { echo "needs openssh-server ($SSHD, $STOCK)" >&2; exit 1; }

work=$(mktemp -d /tmp/netfs-sshd-cost.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cpus=$(nproc)
server_cpu=$((cpus - 1))
client_cpus=0-$((cpus > 1 ? cpus - 2 : 0))
pin_server=() pin_client=() where="one CPU for all"
if [ "$cpus" -gt 1 ]; then
    pin_server=(taskset -c "$server_cpu")
    pin_client=(taskset -c "$client_cpus")
    where="servers on CPU $server_cpu, clients on $client_cpus"
fi

mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
grep -v pam_motd /etc/pam.d/sshd >"$work/pam-sshd-no-motd"

# name | what the server runs
configs=(
    "openssh|OpenSSH defaults + internal-sftp"
    "debian|Debian's shipped sshd_config"
    "debian-no-motd|the same, pam_motd taken out of /etc/pam.d/sshd"
    "debian-no-pam|the same, UsePAM no"
    "debian-internal|the same, Subsystem sftp internal-sftp"
    "debian-neither|the same, UsePAM no and internal-sftp"
)

# Writes $work/NAME.cfg for a server on PORT.
write_config() {
    local name=$1 port=$2 cfg=$work/$1.cfg
    {
        printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s/host_key\n' "$port" "$work"
        printf 'AuthorizedKeysFile %s/authorized_keys\nPidFile %s/%s.pid\n' "$work" "$work" "$name"
        printf 'StrictModes no\nPasswordAuthentication no\n'
        case $name in
        debian-no-pam) echo "UsePAM no" ;;
        debian-internal) echo "Subsystem sftp internal-sftp" ;;
        debian-neither) printf 'UsePAM no\nSubsystem sftp internal-sftp\n' ;;
        esac
        case $name in
        openssh) echo "Subsystem sftp internal-sftp" ;;
        debian-internal | debian-neither)
            sed -e '/^Include /d' -e '/^Subsystem/d' "$STOCK" ;;
        *) sed -e '/^Include /d' "$STOCK" ;;
        esac
    } >"$cfg"
}

# Starts NAME's sshd on PORT; sets SERVER to its pid.
start() {
    local name=$1 port=$2 setup
    setup="mount -t tmpfs -o mode=0700 netfs-cost-root /root"
    setup+=" && cp /usr/share/base-files/dot.bashrc /root/.bashrc"
    setup+=" && cp /usr/share/base-files/dot.profile /root/.profile"
    if [ "$name" = debian-no-motd ]; then
        setup+=" && mount --bind $work/pam-sshd-no-motd /etc/pam.d/sshd"
    fi
    "${pin_server[@]}" unshare --mount --propagation slave -- /bin/sh -c \
        "$setup && exec $SSHD -D -e -f $work/$name.cfg" 2>>"$work/$name.log" &
    SERVER=$!
    pids+=("$SERVER")
    local i
    for i in $(seq 100); do
        [ "$(cat "$work/$name.pid" 2>/dev/null)" = "$SERVER" ] && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.05
    done
    echo "sshd for $name did not start:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

# CPU seconds of PID and its reaped descendants, once it has no children.
server_cpu_seconds() {
    local pid=$1 i
    for i in $(seq 200); do
        [ -z "$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr -d ' ')" ] && break
        sleep 0.05
    done
    awk -v hz="$(getconf CLK_TCK)" '{
        sub(/^.*\) /, "")   # past "pid (comm) ": field 1 is now the state
        print ($12 + $13 + $14 + $15) / hz
    }' /proc/"$pid"/stat
}

login() {
    "${pin_client[@]}" ssh -i "$work/client_key" -o BatchMode=yes \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -p "$1" -s root@127.0.0.1 sftp </dev/null
}

port=$((41000 + RANDOM % 2000))
declare -A server_port server_pid total
for entry in "${configs[@]}"; do
    name=${entry%%|*}
    port=$((port + 1))
    write_config "$name" "$port"
    start "$name" "$port"
    server_port[$name]=$port
    server_pid[$name]=$SERVER
    total[$name]=0
    login "$port" # keys and caches warm
done

echo "server CPU per sftp login, $LOGINS logins x $ROUNDS rounds, $(ssh -V 2>&1 | cut -d, -f1) ($where)"
for round in $(seq "$ROUNDS"); do
    for entry in "${configs[@]}"; do
        name=${entry%%|*}
        before=$(server_cpu_seconds "${server_pid[$name]}")
        for _ in $(seq "$LOGINS"); do login "${server_port[$name]}"; done
        after=$(server_cpu_seconds "${server_pid[$name]}")
        ms=$(awk -v a="$after" -v b="$before" -v n="$LOGINS" 'BEGIN { printf "%.1f", (a - b) * 1000 / n }')
        total[$name]=$(awk -v t="${total[$name]}" -v m="$ms" 'BEGIN { print t + m }')
        printf 'round %s  %-16s %6s ms\n' "$round" "$name" "$ms"
    done
done

echo
echo "| server | CPU per login (mean of $ROUNDS rounds) |"
echo "|---|---:|"
for entry in "${configs[@]}"; do
    name=${entry%%|*}
    awk -v t="${total[$name]}" -v r="$ROUNDS" -v d="${entry#*|}" \
        'BEGIN { printf "| %s | %.1f ms |\n", d, t / r }'
done
