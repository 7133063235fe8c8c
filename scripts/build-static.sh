#!/usr/bin/env bash
# Builds statically linked binaries that run on any Linux target of this
# machine's architecture, even one without a libc (busybox-only, Alpine,
# old glibc): docs/design.md, "Portable binaries".
#
#   scripts/build-static.sh [cargo build args]
#   e.g. scripts/build-static.sh -p mitogen --example quickstart
#
# Uses the <arch>-unknown-linux-musl target (added with rustup when
# missing) and the release profile unless the arguments name a profile.
# When the musl target cannot be installed, falls back to glibc with
# `+crt-static` (larger: see the design notes) and says so;
# MITOGEN_STATIC_LIBC=gnu forces that fallback. C code in
# dependencies (e.g. the mimalloc feature) is compiled with musl-gcc when it
# is installed (Debian: musl-tools).
#
# The last line printed is the directory holding the binaries, e.g.
# target/x86_64-unknown-linux-musl/release.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$(uname -m)
musl=$arch-unknown-linux-musl
gnu=$arch-unknown-linux-gnu
profile=release
args=("$@")
explicit_profile=0
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --release) explicit_profile=1 ;;
        --profile) explicit_profile=1; profile=${args[i + 1]:-release} ;;
        --profile=*) explicit_profile=1; profile=${args[i]#--profile=} ;;
    esac
done
[ "$explicit_profile" = 1 ] || args=(--release "${args[@]}")
[ "$profile" = dev ] && profile=debug

have_target() {
    rustc --print sysroot >/dev/null 2>&1 &&
        [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]
}

target=$musl
if [ "${MITOGEN_STATIC_LIBC:-musl}" = gnu ]; then
    # Forces the fallback (to test it, or by choice).
    target=$gnu
elif ! have_target "$musl"; then
    if command -v rustup >/dev/null 2>&1 && rustup target add "$musl" >&2; then
        :
    else
        echo "build-static.sh: cannot add the $musl target; falling back to glibc +crt-static ($gnu)" >&2
        target=$gnu
    fi
fi

if [ "$target" = "$musl" ]; then
    cc_var=CC_${musl//-/_}
    if [ -z "${!cc_var:-}" ] && command -v musl-gcc >/dev/null 2>&1; then
        export "$cc_var=musl-gcc"
    fi
    cargo build --target "$target" "${args[@]}" >&2
else
    # --target keeps the flag away from build scripts and proc macros,
    # which must stay dynamic.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --target "$target" "${args[@]}" >&2
fi
echo "${CARGO_TARGET_DIR:-target}/$target/$profile"
