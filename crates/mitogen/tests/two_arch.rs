//! Two architectures down one tree: an x86_64 master, an x86_64 relay, and
//! two aarch64 leaves, each in a container of `mitogen-test/busybox-arm64`
//! (Debian's arm64 busybox-static and nothing else, run by qemu-user
//! through binfmt_misc: `uname -m` there says aarch64).
//!
//! The leaves run this same test program built for
//! `aarch64-unknown-linux-musl` (`scripts/build-aarch64.sh`, which
//! `scripts/test.sh` runs first), registered with `Router::add_binary`.
//! The relay fetches it from the master once and serves it to both
//! leaves: the master's stream carries it once.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use mitogen::{DockerOptions, LocalOptions, Router};
use mitogen_testkit::docker::{self, Container};
use mitogen_testkit::fixture;

const IMAGE: &str = "mitogen-test/busybox-arm64:latest";

#[mitogen::remote]
fn machine() -> (String, String) {
    let uname = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("uname failed: {e}"));
    (std::env::consts::ARCH.to_string(), uname)
}

/// The aarch64 build of this test program: `MITOGEN_AARCH64_TEST_BINARY`,
/// or the newest `two_arch-*` that `scripts/build-aarch64.sh` built.
fn aarch64_build() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("MITOGEN_AARCH64_TEST_BINARY") {
        return Ok(PathBuf::from(p));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/aarch64-unknown-linux-musl/cross-test/deps");
    let newest = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "no aarch64 build in {} ({e}): run scripts/build-aarch64.sh",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("two_arch-") && p.extension().is_none()
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.ok_or_else(|| {
        format!(
            "no two_arch-* in {}: run scripts/build-aarch64.sh",
            dir.display()
        )
    })
}

fn ready() -> Option<PathBuf> {
    let test = "aarch64_leaves_behind_an_x86_64_relay";
    let check = || -> Result<PathBuf, String> {
        docker::available()?;
        let inspect = docker::docker(&["image", "inspect", IMAGE]).map_err(|e| e.to_string())?;
        if !inspect.status.success() {
            return Err(format!(
                "{IMAGE} is missing: scripts/images/build.sh builds it where qemu-user-static is installed"
            ));
        }
        aarch64_build()
    };
    match check() {
        Ok(p) => Some(p),
        Err(why) => {
            fixture::ready_or_skip(test, Err(why));
            None
        }
    }
}

#[test]
fn aarch64_leaves_behind_an_x86_64_relay() {
    let Some(arm) = ready() else { return };
    let arm_len = std::fs::metadata(&arm).unwrap().len();
    let a = Container::start(IMAGE).unwrap();
    let b = Container::start(IMAGE).unwrap();
    Router::with(|router| {
        router.add_binary("aarch64", &arm).unwrap();
        let relay = router
            .local(LocalOptions::new().remote_name("relay"))
            .unwrap();
        for (ctr, name) in [(&a, "arm-a"), (&b, "arm-b")] {
            let leaf = router
                .docker(
                    DockerOptions::container(ctr.name())
                        .via(&relay)
                        .remote_name(name)
                        // qemu runs the leaf's start-up some 10x slower.
                        .connect_timeout(Duration::from_secs(120)),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                leaf.call(machine::remote, ()).unwrap(),
                ("aarch64".to_string(), "aarch64".to_string()),
                "{name} runs the aarch64 build, where uname -m says aarch64"
            );
            assert_eq!(leaf.call(add::remote, (40, 2)).unwrap(), 42);
        }
        assert_eq!(
            relay.call(machine::remote, ()).unwrap().0,
            std::env::consts::ARCH,
            "the relay runs this build"
        );
        assert_eq!(
            relay.call(binary_fetches::remote, ()).unwrap(),
            1,
            "the relay fetched the aarch64 build once for both leaves"
        );
        assert_eq!(
            router.binary_bytes_sent(),
            arm_len,
            "the master's stream carried the aarch64 build once"
        );
    })
    .unwrap();
}
