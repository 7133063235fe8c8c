//! Issue 11: every bootstrap failure has a kind and names its cause — no
//! usable directory (each candidate and why), disk full, no shell on the
//! target, version skew (both builds) — each asserted by kind and text,
//! also through a `via` hop. Targets are simulated with a fake `ssh` (a
//! shell script given as `ssh_path`) that runs the real first stage; the
//! directory cases need root (a private mount namespace, a tmpfs) and say
//! SKIP without it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mitogen::{Bootstrap, ConnectFailure, Error, LocalOptions, Router, SshOptions};

/// A fake `ssh` at `dir/ssh` that runs `body` with the first stage's
/// command line (its last argument) in `$cmd`.
fn fake_ssh(dir: &Path, body: &str) -> SshOptions {
    let path = dir.join("ssh");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nfor a; do cmd=$a; done\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut o = SshOptions::new("target");
    o.ssh_path = path.display().to_string();
    o.common.connect_timeout = Duration::from_secs(20);
    o
}

/// The connection's error, which must come within 20 s, with its kind.
fn failure(what: &str, made: mitogen::Result<mitogen::Context>, started: Instant) -> Error {
    let e = match made {
        Ok(c) => panic!("{what}: connected to {} although it should fail", c.name()),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{what}: took {:?}: {e}",
        started.elapsed()
    );
    e
}

fn assert_has(what: &str, e: &Error, kind: ConnectFailure, words: &[&str]) {
    assert_eq!(e.connect_failure(), Some(kind), "{what}: {e}");
    let text = e.to_string();
    for w in words {
        assert!(text.contains(w), "{what}: {w:?} missing from: {text}");
    }
}

/// Every candidate is refused, each for another reason, in a private mount
/// namespace (so the machine's /tmp, /var/tmp and /dev/shm are untouched):
/// the error lists each directory and why.
#[test]
fn no_usable_directory_lists_each_candidate_and_why() {
    if !mitogen_testkit::is_root() {
        eprintln!("SKIP no_usable_directory_lists_each_candidate_and_why: mounting in a private namespace needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // In the namespace: the cache_dir on a read-only mount, /tmp noexec,
    // /var/tmp read-only (nothing can be created there), /dev/shm's
    // candidate owned by nobody, ~/.cache/mitogen mode 0755, $TMPDIR's
    // candidate a symlink, $XDG_RUNTIME_DIR a regular file.
    let setup = "set -e\n\
        mount -t tmpfs -o noexec,size=8m tmpfs /tmp\n\
        mount -t tmpfs -o ro,size=1m tmpfs /var/tmp\n\
        mount -t tmpfs -o size=1m tmpfs /dev/shm\n\
        mkdir -m 700 /dev/shm/mitogen-0 && chown 65534 /dev/shm/mitogen-0\n\
        mkdir -p /tmp/home/.cache/mitogen && chmod 755 /tmp/home/.cache/mitogen\n\
        mkdir /tmp/t && ln -s /etc /tmp/t/mitogen-0\n\
        mkdir /tmp/ro && mount -t tmpfs -o size=1m tmpfs /tmp/ro\n\
        mkdir -m 700 /tmp/ro/cache && mount -o remount,ro /tmp/ro\n\
        : > /tmp/runtime\n\
        set +e\n\
        unset XDG_CACHE_HOME\n\
        HOME=/tmp/home TMPDIR=/tmp/t XDG_RUNTIME_DIR=/tmp/runtime exec /bin/sh -c \"$cmd\"";
    let body = format!(
        "exec unshare -m --propagation private /bin/sh -c '{}' sh \"$cmd\"",
        setup.replace("$cmd", "$1")
    );
    let mut o = fake_ssh(dir.path(), &body);
    o.common.cache_dir = Some(PathBuf::from("/tmp/ro/cache"));
    let reasons = [
        "/tmp/ro/cache: cannot be written: Read-only file system",
        "/tmp/home/.cache/mitogen: mode drwxr-xr-x, not drwx------",
        "/tmp/t/mitogen-0: a symlink",
        "/var/tmp/mitogen-0: cannot be created: Read-only file system",
        "/tmp/mitogen-0: cannot run programs (mounted noexec?)",
        "/dev/shm/mitogen-0: owned by uid 65534, not by us (uid 0)",
        "/tmp/runtime/mitogen: cannot be created: Not a directory",
    ];
    Router::with(|router| {
        let started = Instant::now();
        let e = failure("no usable directory", router.ssh(o.clone()), started);
        assert_has(
            "no usable directory",
            &e,
            ConnectFailure::NoUsableDirectory,
            &reasons,
        );
        assert!(e.to_string().contains("cache_dir"), "says the fix: {e}");
        assert_eq!(router.binary_bytes_sent(), 0, "nothing was uploaded");
        // Through a relay, the kind and the list stay.
        o.common.via = Some(router.local(LocalOptions::new()).unwrap());
        let started = Instant::now();
        let e = failure("no usable directory via a relay", router.ssh(o), started);
        assert_has(
            "via a relay",
            &e,
            ConnectFailure::NoUsableDirectory,
            &reasons[..2],
        );
    })
    .unwrap();
}

/// The only candidate tried is a 1 MiB tmpfs: the upload fails writing,
/// the error names the directory and the bytes needed, and nothing
/// partial is left.
#[test]
fn disk_full_names_the_directory_and_the_bytes() {
    if !mitogen_testkit::is_root() {
        eprintln!("SKIP disk_full_names_the_directory_and_the_bytes: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny");
    let _mount = mitogen_testkit::Tmpfs::mount(&tiny, "size=1m");
    let cache = tiny.join("cache");
    let exe_len = std::fs::metadata(std::env::current_exe().unwrap())
        .unwrap()
        .len();
    assert!(exe_len > 1 << 20, "the test binary outgrows a 1 MiB tmpfs");
    let needed = format!("({exe_len} bytes) into {}", cache.display());
    Router::with(|router| {
        let shell = || {
            LocalOptions::new()
                .bootstrap(Bootstrap::Shell)
                .cache_dir(cache.clone())
        };
        let started = Instant::now();
        let e = failure("disk full", router.local(shell()), started);
        assert_has(
            "disk full",
            &e,
            ConnectFailure::DiskFull,
            &[&needed, "bytes are free there", "partial file was removed"],
        );
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "nothing partial is left: {left:?}");
        let relay = router.local(LocalOptions::new()).unwrap();
        let started = Instant::now();
        let e = failure("disk full via", router.local(shell().via(&relay)), started);
        assert_has("disk full via", &e, ConnectFailure::DiskFull, &[&needed]);
    })
    .unwrap();
}

/// A target without `sh`: the login shell cannot find it (dash's words),
/// or `env` cannot run it; either is `NoShell`, also through a relay. A
/// program that says some other command was not found is not.
#[test]
fn no_shell_on_the_target_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let no_path = dir.path().join("no-path");
    let no_file = dir.path().join("no-file");
    let other = dir.path().join("other");
    for d in [&no_path, &no_file, &other] {
        std::fs::create_dir(d).unwrap();
    }
    // `sh -c '<first stage>'` run by a shell whose PATH holds no `sh`.
    let by_path = fake_ssh(&no_path, "PATH=/nonexistent exec /bin/sh -c \"$cmd\"");
    let by_env = fake_ssh(&no_file, "exec env -i /nonexistent/sh -c \"$cmd\"");
    let not_sh = fake_ssh(
        &other,
        "echo 'bash: deploy.sh: command not found' >&2; exit 127",
    );
    Router::with(|router| {
        for (what, o, said) in [
            ("sh not on PATH", by_path.clone(), "sh: not found"),
            ("env runs a missing sh", by_env, "/nonexistent/sh"),
        ] {
            let started = Instant::now();
            let e = failure(what, router.ssh(o), started);
            assert_has(
                what,
                &e,
                ConnectFailure::NoShell,
                &["no shell on the target", said],
            );
        }
        let e = failure("another command", router.ssh(not_sh), Instant::now());
        assert_eq!(
            e.connect_failure(),
            Some(ConnectFailure::Exited { status: 127 }),
            "not misread as no shell: {e}"
        );
        let mut o = by_path;
        o.common.via = Some(router.local(LocalOptions::new()).unwrap());
        let e = failure("no shell via a relay", router.ssh(o), Instant::now());
        assert_has("via", &e, ConnectFailure::NoShell, &["sh: not found"]);
    })
    .unwrap();
}

/// Another build in the cache (what an old or foreign build would say):
/// `VersionSkew` names both builds — crate version, protocol, function
/// table — also through a relay.
#[test]
fn version_skew_names_both_builds() {
    let dir = tempfile::tempdir().unwrap();
    mitogen_testkit::plant_other_build(dir.path(), "1:0123456789abcdef:0.0.1-old");
    let ours = format!(
        "this side runs mitogen {} (protocol ",
        env!("CARGO_PKG_VERSION")
    );
    let theirs = "mitogen 0.0.1-old (protocol 1, function table 0123456789abcdef)";
    Router::with(|router| {
        let shell = || {
            LocalOptions::new()
                .bootstrap(Bootstrap::Shell)
                .remote_name("skewed")
                .cache_dir(dir.path().to_path_buf())
        };
        let e = failure("version skew", router.local(shell()), Instant::now());
        assert_has(
            "version skew",
            &e,
            ConnectFailure::VersionSkew,
            &["version skew with skewed", theirs, &ours, "function table "],
        );
        let relay = router
            .local(LocalOptions::new().remote_name("relay"))
            .unwrap();
        let e = failure(
            "skew via",
            router.local(shell().via(&relay)),
            Instant::now(),
        );
        assert_has(
            "version skew via a relay",
            &e,
            ConnectFailure::VersionSkew,
            &["version skew with skewed (via relay)", theirs, &ours],
        );
    })
    .unwrap();
}
