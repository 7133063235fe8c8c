#!/usr/bin/env bash
# Long fuzz run: every decoder's target to a fixed number of executions.
#
# Runs each target under libFuzzer (cargo fuzz) for EXECS executions
# (-runs=, default 10000000), one after another in one process on one core,
# starting from the seed corpus of the stable smoke test plus whatever
# fuzz/corpus/<target>/ already holds (kept out of git). Prints, per
# target: executions, seconds, crashes and corpus size, then a summary line;
# exits non-zero if any target crashed (its input is in
# fuzz/artifacts/<target>/).
#
# Targets: deframer, header, codec (mitogen-wire), call_body, reply_body,
# marker (mitogen, through mitogen::__fuzz).
#
# Usage: fuzz/long.sh [EXECS] [TARGET...]
#        fuzz/long.sh                       (all targets, 10 M executions each)
#        fuzz/long.sh 1000000 marker codec
# Toolchain as in fuzz/smoke.sh: nightly if installed, else stable with
# RUSTC_BOOTSTRAP=1 (FUZZ_STABLE=1 forces stable). Needs cargo-fuzz
# (cargo install cargo-fuzz).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
execs="${1:-10000000}"
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(deframer header codec call_body reply_body marker)
[[ "$execs" =~ ^[0-9]+$ ]] || { echo "EXECS must be a number, got $execs" >&2; exit 2; }

cd "$root"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
if [[ -z "${FUZZ_STABLE:-}" ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

echo "== seed corpus"
cargo test --manifest-path fuzz/Cargo.toml --release --no-default-features \
    --test smoke -- --ignored --exact write_seed_corpus >/dev/null
"${fuzz[@]}" build

crashed=0
total=0
rows=()
for t in "${targets[@]}"; do
    echo "== $t: $execs executions (log: fuzz/long-$t.log)"
    start=$(date +%s)
    rc=0
    "${fuzz[@]}" run "$t" -- -runs="$execs" -print_final_stats=1 >"$here/long-$t.log" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    done_runs=$(grep -oE '^Done [0-9]+ runs' "$here/long-$t.log" | grep -oE '[0-9]+' || true)
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$here/long-$t.log" \
        | grep -oE '[0-9]+$' || true)
    runs="${done_runs:-${runs:-0}}"
    corpus=$(find "fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
    crashes=0
    if [[ $rc -ne 0 ]]; then
        crashes=1
        crashed=1
        tail -n 40 "$here/long-$t.log" >&2
        echo "$t CRASHED: the input is in fuzz/artifacts/$t/" >&2
    fi
    total=$(( total + runs ))
    rows+=("$(printf '%-11s %12s %8s %8s %8s' "$t" "$runs" "$secs" "$crashes" "$corpus")")
    echo "${rows[-1]}"
done
echo
printf '%-11s %12s %8s %8s %8s\n' target executions seconds crashes corpus
printf '%s\n' "${rows[@]}"
echo "total executions: $total; crashed: $crashed"
exit "$crashed"
