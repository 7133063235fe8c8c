//! The shell first stage and the binary cache, run locally exactly as a
//! remote method runs them.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use mitogen::{Bootstrap, LocalOptions, Router};

/// Point the shared cache candidates at a directory of this test process
/// and remove stale copies of this binary from the fixed ones, so "cold"
/// means cold whatever ran before.
fn isolate() {
    static ONCE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::env::set_var("XDG_CACHE_HOME", &dir);
        std::env::set_var("TMPDIR", &dir);
        let hash = mitogen_testkit::own_sha256();
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        for shared in ["/var/tmp", "/tmp", "/dev/shm"] {
            let _ = std::fs::remove_file(format!("{shared}/mitogen-{uid}/{hash}"));
        }
        dir
    });
}

fn shell(cache: &std::path::Path) -> LocalOptions {
    isolate();
    LocalOptions::new()
        .bootstrap(Bootstrap::Shell)
        .cache_dir(cache.to_path_buf())
}

#[test]
fn cold_then_warm_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    Router::with(|router| {
        let cold = router.local(shell(&cache)).unwrap();
        assert_eq!(cold.call(add::remote, (20, 22)).unwrap(), 42);
        let sent = router.binary_bytes_sent();
        assert!(sent > 0, "a cold bootstrap uploads the binary");

        // The cache is private and holds exactly one binary, named by its hash.
        let meta = std::fs::metadata(&cache).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let entries: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].len(), 64, "sha256 file name: {entries:?}");

        let warm = router.local(shell(&cache)).unwrap();
        assert_eq!(warm.call(add::remote, (1, 2)).unwrap(), 3);
        assert_eq!(
            router.binary_bytes_sent(),
            sent,
            "a warm bootstrap sends no binary bytes"
        );
        assert_ne!(
            cold.call(pid::remote, ()).unwrap(),
            warm.call(pid::remote, ()).unwrap()
        );
    })
    .unwrap();
}

#[test]
fn compressed_upload_is_smaller_than_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    Router::with(|router| {
        let c = router.local(shell(dir.path())).unwrap();
        c.call(add::remote, (1, 1)).unwrap();
        let exe = std::fs::metadata(std::env::current_exe().unwrap())
            .unwrap()
            .len();
        let sent = router.binary_bytes_sent();
        assert!(
            sent < exe,
            "gzip upload of {sent} bytes for a {exe}-byte binary"
        );
    })
    .unwrap();
}

#[test]
fn unusable_cache_dir_falls_back() {
    // A regular file where the override directory should be: mkdir fails,
    // the next candidate (a shared temporary directory) is used.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    Router::with(|router| {
        let c = router.local(shell(&blocker)).unwrap();
        assert_eq!(c.call(add::remote, (2, 2)).unwrap(), 4);
    })
    .unwrap();
}
