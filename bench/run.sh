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
exec cargo run --release --quiet -p mitogen-bench -- --python "$venv/bin/python" "$@"
