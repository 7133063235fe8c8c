#!/usr/bin/env bash
# Builds the container images the container connection tests use (see
# docs/testing.md, "Containers") on the local Docker engine, from Debian
# packages only: nothing is pulled from a registry.
#
#   mitogen-test/busybox  FROM scratch: Debian's busybox-static, /bin/sh and
#                         the other applets as links to it, root and a user
#                         `app` (uid 1000, gid 1000), /tmp 1777. No libc:
#                         a dynamically linked binary cannot run there.
#   mitogen-test/debian   FROM scratch: libc6, libgcc-s1, dash (/bin/sh),
#                         coreutils, gzip and their libraries, extracted with
#                         dpkg-deb -x; the same users. Our dynamically linked
#                         test binaries run there. Also python3 (Debian's
#                         python3-minimal and libpython3.11-stdlib with the
#                         libraries they depend on), so that Python Mitogen
#                         runs in the same image in the benchmark (bench/py).
#   mitogen-test/busybox-arm64  FROM scratch: Debian's arm64 busybox-static,
#                         run by qemu-user (uname -m says aarch64): the
#                         two-architecture test. Built only where a
#                         qemu-aarch64 binfmt_misc handler is registered.
#   mitogen-test/noshell  FROM scratch: only /busybox, no /bin/sh (for
#                         "no shell in the image"); run it with
#                         `/busybox sleep N`.
#
# When podman is installed and works, the same images are copied into its
# storage (`docker save | podman load`, as localhost/mitogen-test/...),
# which buildah shares.
#
# Idempotent and fast when up to date: each image is tagged with a hash of
# its inputs (this script and the candidate versions of its packages) and
# is not rebuilt while that tag exists; `:latest` always points at the
# current build. Run as root (or a member of the docker group) with apt
# able to download from the Debian mirrors.
#
#   scripts/images/build.sh            # build what is missing, print the tags
#   scripts/images/build.sh --force    # rebuild all three
set -euo pipefail

FORCE=no
[ "${1:-}" = --force ] && FORCE=yes

log() { echo "images: $*"; }

if ! command -v docker >/dev/null; then
    echo "SKIP: docker not installed; container images not built"
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    echo "SKIP: the Docker engine is not reachable (docker info failed); container images not built"
    exit 0
fi

SELF=$(readlink -f "$0")
BUSYBOX_PKGS=(busybox-static)
DEBIAN_PKGS=(libc6 libgcc-s1 dash coreutils libacl1 libattr1 libgmp10 libselinux1 libpcre2-8-0 gzip)
# python3 for bench/py: the Depends/Pre-Depends closure of python3-minimal
# and libpython3.11-stdlib (apt-cache depends --recurse) without what
# DEBIAN_PKGS has, without dpkg (python3-minimal's maintainer scripts only)
# and with media-types for the "media-types | mime-support" alternative
# (mime-support pulls perl). Every extension module of the standard
# library finds its libraries.
PYTHON_PKGS=(python3-minimal python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
    media-types libexpat1 zlib1g libssl3 libbz2-1.0 libcrypt1 libdb5.3 libffi8 liblzma5
    libncursesw6 libtinfo6 libnsl2 libtirpc3 libtirpc-common libgssapi-krb5-2 libkrb5-3
    libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1 libreadline8 readline-common
    libsqlite3-0 libuuid1)
CACHE=/var/cache/mitogen-test-images

# Candidate versions of the packages, one "name=version" a line: part of
# each image's input hash, and what we download.
versions() {
    apt-cache policy "$@" | awk '
        /^[^ ]/ { sub(":$", "", $1); name = $1 }
        /^  Candidate:/ { print name "=" $2 }'
}

# hash_of NAME PKG...: a short hash of this script, the image name and the
# package versions.
hash_of() {
    local name=$1
    shift
    { cat "$SELF"; echo "$name"; versions "$@"; } | sha256sum | cut -c1-16
}

# Download (once, into $CACHE) and extract PKG... into DIR.
extract() {
    local dir=$1
    shift
    mkdir -p "$CACHE"
    local want have
    want=$(versions "$@")
    if [ "$(echo "$want" | wc -l)" -ne "$#" ] || echo "$want" | grep -q '=(none)$'; then
        log "apt does not know all of $* (got: $want); apt-get update"
        apt-get update -qq
        want=$(versions "$@")
    fi
    # Debian file names write the epoch's ':' as %3a.
    cached() { ls "$CACHE/${1%%=*}_$(echo "${1#*=}" | sed 's/:/%3a/')_"*.deb 2>/dev/null | head -n1 || true; }
    local spec missing=()
    for spec in $want; do
        [ -n "$(cached "$spec")" ] || missing+=("$spec")
    done
    # One apt-get call for all that is missing (one a package took 1 s each).
    if [ "${#missing[@]}" -gt 0 ]; then
        (cd "$CACHE" && apt-get download -qq "${missing[@]}" 2>&1 | grep -v 'couldn.t be accessed by user' || true)
    fi
    for spec in $want; do
        have=$(cached "$spec")
        [ -n "$have" ] || { echo "images: could not download $spec" >&2; exit 1; }
        dpkg-deb -x "$have" "$dir"
    done
}

# Users, groups and /tmp common to every image.
base_files() {
    local root=$1
    mkdir -p "$root/etc" "$root/tmp" "$root/root" "$root/home/app"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:mitogen-rs test user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nogroup:x:65534:
EOF
    chmod 644 "$root/etc/passwd" "$root/etc/group"
    chmod 1777 "$root/tmp"
    chmod 700 "$root/root"
    chown 1000:1000 "$root/home/app"
    chmod 755 "$root/home/app"
}

# import NAME HASH ROOT: docker import ROOT as NAME:in-HASH and NAME:latest.
import() {
    local name=$1 hash=$2 root=$3
    tar --numeric-owner -C "$root" -c . |
        docker import --change "LABEL org.mitogen-rs.inputs=$hash" - "$name:in-$hash" >/dev/null
    docker tag "$name:in-$hash" "$name:latest"
    # Earlier builds' tags go, so old images do not pile up.
    docker images --format '{{.Repository}}:{{.Tag}}' "$name" | grep ":in-" |
        grep -vx "$name:in-$hash" | xargs -r docker rmi >/dev/null || true
}

# up_to_date NAME HASH: the tagged image exists; make :latest point at it.
declare -A HASHES
up_to_date() {
    local name=$1 hash=$2
    HASHES[$name]=$hash
    [ "$FORCE" = no ] || return 1
    docker image inspect "$name:in-$hash" >/dev/null 2>&1 || return 1
    docker tag "$name:in-$hash" "$name:latest"
}

WORK=$(mktemp -d /tmp/mitogen-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# build NAME FILL PKG...: unless NAME:in-<hash> exists, extract PKG...
# into a fresh root, let FILL finish it (FILL ROOT), add the common files,
# import it and let check_NAME (if defined) try it.
build() {
    local name=$1 fill=$2 hash root
    shift 2
    hash=$(hash_of "$name" "$@")
    if up_to_date "$name" "$hash"; then
        log "$name:in-$hash up to date"
        return
    fi
    root=$WORK/${name##*/}
    mkdir -p "$root/.debs"
    extract "$root/.debs" "$@"
    "$fill" "$root"
    rm -rf "$root/.debs"
    base_files "$root"
    import "$name" "$hash" "$root"
    log "built $name:in-$hash"
}

fill_busybox() {
    local root=$1 applet
    mv "$root/.debs/bin" "$root/bin"
    mkdir -p "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    # busybox --list-full names each applet with its directory (bin/sh,
    # usr/bin/id, ...); it runs here because it is static.
    for applet in $("$root/bin/busybox" --list-full); do
        [ "$applet" = bin/busybox ] && continue
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    [ -L "$root/bin/sh" ] || { echo "images: busybox has no sh applet" >&2; exit 1; }
}

fill_debian() {
    local root=$1 d
    rm -rf "$root/.debs/usr/share/doc" "$root/.debs/usr/share/man" \
        "$root/.debs/usr/share/info" "$root/.debs/usr/share/locale"
    for d in "$root/.debs"/*; do mv "$d" "$root/"; done
    # A loader cache, so the libraries are found however ld.so was built.
    printf 'include /etc/ld.so.conf.d/*.conf\n' >"$root/etc/ld.so.conf"
    ldconfig -r "$root"
}

fill_noshell() {
    mv "$1/.debs/bin/busybox" "$1/busybox"
}

# The debian image must run a dynamically linked program through /bin/sh,
# and python3 with the extension modules whose libraries it carries.
PY_CHECK='import bz2, ctypes, curses, dbm.ndbm, hashlib, lzma, pickle, readline, sqlite3, ssl, uuid, zlib; print("py3 ok")'
check_debian() {
    local tag=$1 out
    out=$(docker run --rm "$tag" /bin/sh -c "id -u app; ls -nd /tmp; python3 -c '$PY_CHECK'" 2>&1 || true)
    case "$out" in
    1000*drwxrwxrwt*"py3 ok") ;;
    *)
        echo "images: $tag does not work (id -u app; ls -nd /tmp; python3 -c ... printed: $out)" >&2
        exit 1
        ;;
    esac
}

# Copy each image into podman's storage unless its input tag is there.
to_podman() {
    command -v podman >/dev/null || return 0
    if ! timeout 60 podman info >/dev/null 2>&1; then
        log "podman installed but podman info fails; images not copied to podman"
        return 0
    fi
    local name hash
    for name in "${!HASHES[@]}"; do
        hash=${HASHES[$name]}
        if [ "$FORCE" = no ] && podman image exists "localhost/$name:in-$hash"; then
            log "podman: localhost/$name:in-$hash up to date"
            continue
        fi
        docker save "$name:in-$hash" | podman load -q >/dev/null
        podman tag "localhost/$name:in-$hash" "localhost/$name:latest"
        podman images --format '{{.Repository}}:{{.Tag}}' "localhost/$name" | grep ":in-" |
            grep -vx "localhost/$name:in-$hash" | xargs -r podman rmi >/dev/null 2>&1 || true
        log "podman: loaded localhost/$name:in-$hash"
    done
}

# An arm64 busybox image for the two-architecture test: Debian's arm64
# busybox-static, fetched through a private apt state (no change to this
# machine's architectures), run by qemu-user through binfmt_misc (Debian's
# qemu-user-static registers the handler with the F flag, so it works inside
# containers). `uname -m` there says aarch64.
ARM64_APT=$CACHE/arm64-apt
arm64_apt() {
    local tool=$1
    shift
    "$tool" -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
        -o Dir::State::Lists="$ARM64_APT/lists" -o Dir::Cache="$ARM64_APT" \
        -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "$@"
}
build_busybox_arm64() {
    local name=mitogen-test/busybox-arm64 version hash root deb
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        log "SKIP $name: no qemu-aarch64 handler in binfmt_misc (scripts/fixture/setup.sh installs qemu-user-static)"
        return
    fi
    mkdir -p "$ARM64_APT/lists/partial" "$ARM64_APT/archives/partial"
    version=$(arm64_apt apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ { print $2 }')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        log "$name: fetching the arm64 package lists"
        arm64_apt apt-get update -qq
        version=$(arm64_apt apt-cache policy busybox-static | awk '/Candidate:/ { print $2 }')
    fi
    hash=$({ cat "$SELF"; echo "$name"; echo "busybox-static:arm64=$version"; } | sha256sum | cut -c1-16)
    if up_to_date "$name" "$hash"; then
        log "$name:in-$hash up to date"
        return
    fi
    deb=$(ls "$CACHE"/busybox-static_*"$(echo "$version" | sed 's/:/%3a/')"_arm64.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        (cd "$CACHE" && arm64_apt apt-get download -qq "busybox-static:arm64=$version")
        deb=$(ls "$CACHE"/busybox-static_*_arm64.deb | head -n1)
    fi
    root=$WORK/busybox-arm64
    mkdir -p "$root/.debs"
    dpkg-deb -x "$deb" "$root/.debs"
    fill_busybox "$root"
    rm -rf "$root/.debs"
    base_files "$root"
    import "$name" "$hash" "$root"
    local machine
    machine=$(docker run --rm "$name:latest" uname -m 2>&1 || true)
    [ "$machine" = aarch64 ] || { echo "images: $name says uname -m = $machine, not aarch64" >&2; exit 1; }
    log "built $name:in-$hash"
}

start=$(date +%s.%N)
build mitogen-test/busybox fill_busybox "${BUSYBOX_PKGS[@]}"
build mitogen-test/debian fill_debian "${DEBIAN_PKGS[@]}" "${PYTHON_PKGS[@]}"
check_debian mitogen-test/debian:latest
build mitogen-test/noshell fill_noshell "${BUSYBOX_PKGS[@]}"
build_busybox_arm64
to_podman
end=$(date +%s.%N)
log "done in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
