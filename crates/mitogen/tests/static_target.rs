//! Proof of the static-build recipe (issue 11, docs/design.md "Portable
//! binaries"): `examples/busybox_target`, built by
//! `scripts/build-static.sh -p mitogen --example busybox_target` (which
//! `scripts/test.sh` runs first, with a dynamic build of it for the
//! failure test), is started as the master; it connects with
//! the docker method to a `mitogen-test/busybox` container (busybox-static,
//! no libc), which answers its calls, and a warm reconnect uploads no binary
//! bytes. Skips, saying why, without the static build, Docker or the image;
//! under CI (`MITOGEN_REQUIRE_FIXTURE=1`) those are failures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mitogen_testkit::docker::{self, image, run_bounded, Container};
use mitogen_testkit::fixture;

const EXAMPLE: &str = "busybox_target";

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// `true` when `bytes` is a 64-bit little-endian ELF file without a
/// `PT_INTERP` program header, i.e. it needs no dynamic loader.
fn is_static_elf(bytes: &[u8]) -> Result<bool, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .filter(|&a| a.checked_add(4).is_some_and(|end| end <= bytes.len()))
            .ok_or("program header table out of bounds")?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The static build of the example: the musl target's, else the glibc
/// `+crt-static` fallback's; why not when neither is there.
fn static_example() -> Result<PathBuf, String> {
    let arch = std::env::consts::ARCH;
    let hint = format!(
        "run scripts/build-static.sh -p mitogen --example {EXAMPLE} (scripts/test.sh does)"
    );
    let mut tried = Vec::new();
    for libc in ["musl", "gnu"] {
        let path = target_dir()
            .join(format!("{arch}-unknown-linux-{libc}/release/examples"))
            .join(EXAMPLE);
        match std::fs::read(&path) {
            Ok(bytes) => match is_static_elf(&bytes) {
                Ok(true) => return Ok(path),
                Ok(false) => tried.push(format!("{} is dynamically linked", path.display())),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            },
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    Err(format!(
        "no static build of examples/{EXAMPLE} ({}): {hint}",
        tried.join("; ")
    ))
}

/// The example's path when it and Docker are there; otherwise says why
/// (a skip, or a failure under CI) and gives `None`.
fn ready(test: &str, example: Result<PathBuf, String>) -> Option<PathBuf> {
    let found = fixture::ready_or_skip(test, example.clone().map(|_| ()));
    (found && fixture::ready_or_skip(test, docker::available()))
        .then(|| example.ok())
        .flatten()
}

/// Run `example` against the container, bounded by `limit`: its output,
/// stdout and stderr.
fn run_example(
    example: &Path,
    ctr: &Container,
    limit: Duration,
) -> (std::process::Output, String, String) {
    let out = run_bounded(Command::new(example).arg(ctr.name()), limit)
        .unwrap_or_else(|e| panic!("{} {}: {e}", example.display(), ctr.name()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The `key=value` line of `out` for `key`.
fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= line in the example's output:\n{out}"))
}

#[test]
fn elf_check_tells_static_from_dynamic() {
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    // The workspace builds static binaries by default (.cargo/config.toml),
    // test binaries included.
    assert_eq!(
        is_static_elf(&me),
        Ok(true),
        "this test binary is dynamically linked: .cargo/config.toml's +crt-static is not in effect"
    );
    let sh = std::fs::read("/bin/sh").unwrap();
    assert_eq!(is_static_elf(&sh), Ok(false), "Debian's /bin/sh is dynamic");
    assert!(is_static_elf(b"#!/bin/sh\n").is_err());
    // A header whose program headers lie past the end of the file.
    let mut bogus = me[..64].to_vec();
    bogus[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(is_static_elf(&bogus).is_err());
}

/// The dynamically linked build of the example that `scripts/test.sh`
/// makes (`RUSTFLAGS="-C target-feature=-crt-static"`, into
/// `target/dynamic`), or why not.
fn dynamic_example() -> Result<PathBuf, String> {
    let path = target_dir()
        .join(format!(
            "dynamic/{}-unknown-linux-gnu/cross-test/examples",
            std::env::consts::ARCH
        ))
        .join(EXAMPLE);
    let hint = "scripts/test.sh builds it";
    match std::fs::read(&path) {
        Ok(bytes) if is_static_elf(&bytes) == Ok(false) => Ok(path),
        Ok(_) => Err(format!(
            "{} is not a dynamic ELF file ({hint})",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e} ({hint})", path.display())),
    }
}

/// A dynamically linked master connecting to a busybox-only container:
/// the first stage finds the ELF interpreter missing before it asks for
/// the binary, fails within 1 s with `ConnectFailure::DynamicBinary`
/// naming the loader and the fix, and leaves nothing in any cache.
#[test]
fn dynamic_build_fails_fast_by_kind_and_caches_nothing() {
    let test = "dynamic_build_fails_fast_by_kind_and_caches_nothing";
    let Some(example) = ready(test, dynamic_example()) else {
        return;
    };
    let bb = Container::start(&image("busybox")).expect("start a busybox container");
    let (out, stdout, stderr) = run_example(&example, &bb, Duration::from_secs(60));
    assert!(
        !out.status.success(),
        "the dynamic build connected to busybox:\n{stdout}"
    );
    assert_eq!(
        value(&stdout, "failure_kind"),
        "Some(DynamicBinary)",
        "stderr:\n{stderr}"
    );
    let ms: u64 = value(&stdout, "failure_ms").parse().unwrap();
    assert!(ms < 1000, "the error took {ms} ms (limit 1 s): {stderr}");
    for part in [
        bb.name(),
        "is dynamically linked and needs /",
        "lacks (it has no ELF interpreter",
        "build it statically: scripts/build-static.sh",
        "-unknown-linux-musl",
    ] {
        assert!(
            stderr.contains(part),
            "{part:?} is not in the error:\n{stderr}"
        );
    }
    // Nothing was cached: no candidate directory holds a file.
    let ls = bb
        .exec(&[
            "sh",
            "-c",
            "for d in /.cache/mitogen /tmp/mitogen-0 /var/tmp/mitogen-0 /dev/shm/mitogen-0; do ls -A \"$d\" 2>/dev/null; done; echo end",
        ])
        .expect("docker exec ls");
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "end\n",
        "files left in the cache"
    );
}

#[test]
fn static_build_answers_calls_from_a_busybox_only_container() {
    let test = "static_build_answers_calls_from_a_busybox_only_container";
    let Some(example) = ready(test, static_example()) else {
        return;
    };
    eprintln!("static master: {}", example.display());
    let bb = Container::start(&image("busybox")).expect("start a busybox container");
    // The image really has no libc: a dynamic binary could not run there.
    let probe = bb
        .exec(&["/bin/sh", "-c", "test ! -e /lib64/ld-linux-x86-64.so.2"])
        .expect("docker exec");
    assert!(
        probe.status.success(),
        "the busybox image has a glibc loader"
    );

    let (out, stdout, stderr) = run_example(&example, &bb, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "{} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        example.display(),
        out.status
    );
    // Calls were answered in the container (1+…+100, then 7+8).
    assert_eq!(value(&stdout, "sum"), "5050");
    assert_eq!(value(&stdout, "warm_sum"), "15");
    assert_eq!(value(&stdout, "target_has_glibc_loader"), "false");
    // The cold connection uploaded the (compressed) binary; the warm one
    // found it in the container's cache.
    let size = std::fs::metadata(&example).unwrap().len();
    let cold: u64 = value(&stdout, "cold_binary_bytes").parse().unwrap();
    assert!(
        cold > 100_000 && cold < size,
        "cold upload {cold} bytes: expected the compressed binary (file is {size} bytes)"
    );
    assert_eq!(
        value(&stdout, "warm_binary_bytes"),
        "0",
        "warm reconnect uploaded bytes"
    );
}
