#!/usr/bin/env bash
# Runs the whole test suite: unit, in-memory, real child processes and
# documentation examples. Tests that need root (a noexec tmpfs mount) run
# when started as root and say why they skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
