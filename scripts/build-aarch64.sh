#!/usr/bin/env bash
# Builds the aarch64 (musl, static) half of the two-architecture test,
# crates/mitogen/tests/two_arch.rs, into
# target/aarch64-unknown-linux-musl/cross-test/deps/two_arch-*. It links
# with rust-lld (.cargo/config.toml): only the Rust target is needed, which
# this script adds with rustup when missing. The x86_64 half is the same
# test built as usual; the test registers this build with
# Router::add_binary("aarch64", …).
#
# The same two commands build any program of yours for both architectures:
#   cargo build --release
#   cargo build --release --target aarch64-unknown-linux-musl
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-aarch64: adding the Rust target $target"
    rustup target add "$target"
fi
cargo test --profile cross-test --target "$target" -p mitogen --test two_arch --no-run "$@"
