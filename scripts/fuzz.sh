#!/usr/bin/env bash
# Fuzzes the option engine (fuzz/fuzz_targets/): both option parsers and the
# merge, with cargo-fuzz and libFuzzer, for a bounded time per target. Exits
# non-zero on the first crash; the input that caused it is kept under
# fuzz/artifacts/<target>/ and can be replayed with
#   cargo fuzz run <target> fuzz/artifacts/<target>/crash-...
#
# cargo-fuzz needs a nightly compiler (it passes -Z flags). It uses the
# nightly toolchain when rustup has one; otherwise the stable one with
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept those flags. Installs
# cargo-fuzz from crates.io when it is missing.
#
# Environment:
#   FUZZ_TIME       seconds per target (default 60)
#   FUZZ_TARGETS    space-separated targets (default: every target in fuzz/)
#   FUZZ_TOOLCHAIN  nightly | stable | auto (default auto, as above)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-jobs=4 -workers=4"
set -euo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$NETFS_TOP"

FUZZ_TIME=${FUZZ_TIME:-60}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN:-auto}
FUZZ_ARGS=${FUZZ_ARGS:-}

command -v cargo >/dev/null || die "cargo is not installed"

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi

has_nightly() {
    command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'
}

CARGO_FUZZ=(cargo)
case $FUZZ_TOOLCHAIN in
auto)
    if has_nightly; then FUZZ_TOOLCHAIN=nightly; else FUZZ_TOOLCHAIN=stable; fi
    ;;
nightly | stable) ;;
*) die "FUZZ_TOOLCHAIN must be nightly, stable or auto, not '$FUZZ_TOOLCHAIN'" ;;
esac
if [ "$FUZZ_TOOLCHAIN" = nightly ]; then
    has_nightly || die "FUZZ_TOOLCHAIN=nightly but rustup has no nightly toolchain"
    CARGO_FUZZ=(cargo +nightly)
else
    # Stable rustc with its unstable flags unlocked: the same compiler the
    # project builds with, no other toolchain to download.
    export RUSTC_BOOTSTRAP=1
    if command -v rustup >/dev/null; then CARGO_FUZZ=(cargo +stable); fi
fi
say "toolchain: $("${CARGO_FUZZ[@]}" --version) (${FUZZ_TOOLCHAIN}${RUSTC_BOOTSTRAP:+, RUSTC_BOOTSTRAP=1})"

if [ -z "${FUZZ_TARGETS:-}" ]; then
    FUZZ_TARGETS=$(cargo fuzz list)
fi
[ -n "$FUZZ_TARGETS" ] || die "no fuzz targets in fuzz/"

for target in $FUZZ_TARGETS; do
    corpus=fuzz/corpus/$target
    seeds=fuzz/seeds/$target
    mkdir -p "$corpus"
    inputs=("$corpus")
    [ -d "$seeds" ] && inputs+=("$seeds")
    log=$(mktemp)
    say "fuzzing $target for ${FUZZ_TIME}s"
    # The first corpus directory collects new inputs; the seeds are read only.
    # shellcheck disable=SC2086
    if ! "${CARGO_FUZZ[@]}" fuzz run "$target" "${inputs[@]}" -- \
        -max_total_time="$FUZZ_TIME" -print_final_stats=1 $FUZZ_ARGS 2>&1 | tee "$log"; then
        rm -f "$log"
        die "fuzz target $target failed: see the crash input under fuzz/artifacts/$target/"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    rm -f "$log"
    say "$target: ${runs:-?} executions in ${secs:-?}s, no crash"
done
