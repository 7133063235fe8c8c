#!/usr/bin/env bash
# Side-by-side benchmarks of mitogen-rs against Python Mitogen 0.3.54.
#
#   bench/run.sh [--quick|--full] [--rounds N] [--only a,b] [...]
#
# Quick mode by default. Creates bench/.venv with mitogen==0.3.54 on first
# use, then builds and runs the Rust runner, which runs every peer (Python
# Mitogen, raw baselines, ours) each round, prints the table and writes
# bench/results/latest.json. `bench/run.sh --help` lists the options.
# See docs/performance.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
venv=$here/.venv
want=0.3.54

have_mitogen() {
    "$venv/bin/python" - "$want" <<'PY' 2>/dev/null
import sys
import mitogen
sys.exit(0 if '.'.join(map(str, mitogen.__version__)) == sys.argv[1] else 1)
PY
}

if ! have_mitogen; then
    echo "bench/run.sh: preparing $venv with mitogen==$want" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mitogen==$want"
    have_mitogen || { echo "bench/run.sh: mitogen==$want did not install" >&2; exit 1; }
fi

cd "$root"
# quickstart_cold_bootstrap_bytes reads the size of this binary.
cargo build --release --quiet --example quickstart -p mitogen

# Other builds of the runner and the quick start for the build-comparison
# rows (`<row>@<build>`): the workspace's default is static glibc
# (.cargo/config.toml); `dynamic` is the glibc build without +crt-static,
# `musl` is scripts/build-static.sh with mimalloc. MITOGEN_BENCH_BUILDS=0
# skips them (each is a release build of its own).
builds=()
# Only when a build-comparison row (workloads.rs, BUILD_ROWS) is wanted.
want_builds=${MITOGEN_BENCH_BUILDS:-1}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[i]}" = --only ] &&
        ! [[ ",${args[i + 1]:-}," =~ ,(call_roundtrip_us|pipelined_calls_per_s|small_msgs_per_s|arg_64mib_mbps|result_64mib_mbps|quickstart_cold_bootstrap_bytes), ]]; then
        want_builds=0
    fi
done
if [ "$want_builds" != 0 ]; then
    dyn_dir=target/bench-dynamic
    for what in "-p mitogen-bench" "-p mitogen --example quickstart"; do
        # shellcheck disable=SC2086
        RUSTFLAGS="-C target-feature=-crt-static" \
            cargo build --release --quiet --target-dir "$dyn_dir" $what
    done
    dyn=$dyn_dir/$(uname -m)-unknown-linux-gnu/release
    builds+=(--build "dynamic=$dyn/mitogen-bench")
    if musl=$(scripts/build-static.sh --quiet -p mitogen-bench --features mimalloc | tail -n 1) &&
        scripts/build-static.sh --quiet -p mitogen --example quickstart >/dev/null; then
        builds+=(--build "musl=$musl/mitogen-bench")
    else
        echo "bench/run.sh: the musl build failed: no @musl rows" >&2
    fi
fi
exec cargo run --release --quiet -p mitogen-bench -- --python "$venv/bin/python" "${builds[@]}" "$@"
