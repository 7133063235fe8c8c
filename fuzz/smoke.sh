#!/usr/bin/env bash
# Fuzz smoke of every decoder: the wire's (deframer, header, codec) and
# mitogen's (call_body, reply_body, marker). CI runs this; the long run
# (every target to 10 M executions) is fuzz/long.sh.
#
# 1. Always: the stable smoke test, every fuzz target over a fixed
#    pseudo-random corpus of 20k inputs (fuzz/tests/smoke.rs).
# 2. When cargo-fuzz is installed: each target under libFuzzer for
#    $FUZZ_SECONDS seconds (default 10), from a seed corpus written by the
#    smoke test. With a nightly toolchain it runs `cargo +nightly fuzz`;
#    otherwise it runs cargo fuzz on stable with RUSTC_BOOTSTRAP=1, which
#    unlocks the -Z flags cargo fuzz passes (-Zsanitizer=address etc.): the
#    sanitizer runtimes ship with stable's rust-std, and this was seen to
#    work here with rustc 1.95.0.
#
# Usage: fuzz/smoke.sh            (from anywhere)
#        FUZZ_SECONDS=60 fuzz/smoke.sh
#        NO_CARGO_FUZZ=1 fuzz/smoke.sh   (stable smoke test only)
#        FUZZ_STABLE=1 fuzz/smoke.sh     (cargo fuzz on stable even if nightly exists)
# A crash input lands in fuzz/artifacts/<target>/; replay it with
#   cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# or copy it into fuzz/corpus/<target>/ and run the stable smoke test.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
seconds="${FUZZ_SECONDS:-10}"
targets=(deframer header codec call_body reply_body marker)

cd "$root"
echo "== stable smoke test"
cargo test --manifest-path fuzz/Cargo.toml --release --no-default-features

if [[ -n "${NO_CARGO_FUZZ:-}" ]]; then
    echo "== NO_CARGO_FUZZ set: skipping cargo fuzz"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo fuzz not installed (cargo install cargo-fuzz): skipping libFuzzer runs"
    exit 0
fi

if [[ -z "${FUZZ_STABLE:-}" ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    echo "== cargo fuzz with the nightly toolchain"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    echo "== cargo fuzz on stable with RUSTC_BOOTSTRAP=1"
fi

echo "== seed corpus"
cargo test --manifest-path fuzz/Cargo.toml --release --no-default-features \
    --test smoke -- --ignored --exact write_seed_corpus

"${fuzz[@]}" build
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
    echo "== cargo fuzz run $t (${seconds}s)"
    if ! "${fuzz[@]}" run "$t" -- -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "cargo fuzz run $t FAILED: the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$log" || tail -n 3 "$log"
done
echo "== fuzz smoke passed"
