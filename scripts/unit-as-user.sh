#!/usr/bin/env bash
# Runs the library's unit tests (`cargo test --lib`) as an unprivileged
# user, so that none of them comes to need root: what needs root belongs in
# tests/. As root it builds the test binary as usual and runs it as
# UNIT_USER (default nobody) with an empty environment; as any other user it
# is plain `cargo test --lib`. It writes nothing outside target/ and the
# tests' own temporary directories.
#
# Environment:
#   CARGO      cargo to build with (default cargo)
#   UNIT_USER  the user to run as when started as root (default nobody)
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$NETFS_TOP"
cargo=${CARGO:-cargo}

if [ "$(id -u)" -ne 0 ]; then
    exec "$cargo" test --lib
fi

user=${UNIT_USER:-nobody}
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop to $user"
uid=$(id -u "$user") || die "no user $user"
gid=$(id -g "$user")

# cargo prints the test binary it built as `Executable unittests src/lib.rs (PATH)`.
built=$("$cargo" test --lib --no-run 2>&1) || {
    printf '%s\n' "$built" >&2
    die "cargo test --lib --no-run failed"
}
binary=$(printf '%s\n' "$built" | sed -n 's/.*Executable unittests src\/lib\.rs (\(.*\))$/\1/p' | tail -n 1)
[ -n "$binary" ] && [ -x "$binary" ] || die "cannot find the unit-test binary in cargo's output"

setpriv --reuid="$uid" --regid="$gid" --clear-groups test -x "$binary" ||
    die "$user cannot run $binary: the checkout must be readable by $user"

say "unit tests as $user (uid $uid): $binary"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups \
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp TMPDIR=/tmp \
    "$binary" "$@"
