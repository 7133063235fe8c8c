#!/usr/bin/env bash
# Runs the whole test suite: unit, in-memory, real child processes, real
# OpenSSH/sudo/su/doas, and documentation examples.
#
# As root it first sets up the fixture those tests need (packages, test
# users, sudoers and doas rules: scripts/fixture/setup.sh). Without root the
# fixture tests print "SKIP <test>: <reason>" and pass. Under CI (CI=true)
# a missing fixture is a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    scripts/fixture/setup.sh
fi
if [ "${CI:-}" = true ]; then
    export MITOGEN_REQUIRE_FIXTURE=1
fi
# The aarch64 half of tests/two_arch.rs (it skips, or fails under CI,
# without it).
if ! scripts/build-aarch64.sh; then
    echo "scripts/test.sh: the aarch64 build failed; tests/two_arch.rs will say so"
fi
# The static master tests/static_target.rs runs against a busybox-only
# container (docs/design.md, "Portable binaries").
if ! scripts/build-static.sh -p mitogen --example busybox_target >/dev/null; then
    echo "scripts/test.sh: the static build failed; tests/static_target.rs will say so"
fi
# ...and a dynamically linked build of the same example, whose clear
# failure on that target it checks (the workspace builds static binaries by
# default: .cargo/config.toml).
if ! RUSTFLAGS="-C target-feature=-crt-static" cargo build --quiet -p mitogen \
    --example busybox_target --profile cross-test --target-dir target/dynamic; then
    echo "scripts/test.sh: the dynamic build failed; tests/static_target.rs will say so"
fi
cargo test --workspace --all-targets
cargo test --workspace --doc
