//! Issue 8, L4: a damaged cache entry (empty, or cut short by a crash
//! between rename and writeback) is never exec'd; the first stage removes
//! it, installs the binary again, and the call works. Runs the real first
//! stage through `router.local(LocalOptions::new().bootstrap(Bootstrap::Shell)
//! …)` with a cache directory of its own. In its own binary so that no
//! other test leaves a good copy of this binary in a shared directory that
//! the first stage would find first.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use mitogen::{Bootstrap, Context, LocalOptions, Router};

fn shell(cache_dir: PathBuf) -> LocalOptions {
    LocalOptions::new()
        .bootstrap(Bootstrap::Shell)
        .cache_dir(cache_dir)
        .connect_timeout(Duration::from_secs(20))
}

/// The file the child runs from, by its `/proc/<pid>/exe`.
fn exe_of(c: &Context) -> PathBuf {
    let pid = c.call(pid::remote, ()).unwrap();
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

#[test]
fn l4_empty_or_truncated_cache_entry_is_reinstalled() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sha256sum").arg(&exe).output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let exe_len = std::fs::metadata(&exe).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    Router::with(|router| {
        // A legitimate install makes the private cache directory.
        let c = router.local(shell(cache.clone())).unwrap();
        assert_eq!(c.call(add::remote, (1, 1)).unwrap(), 2);
        c.shutdown(true).unwrap();
        let entry = cache.join(&hash);
        let full = std::fs::read(&entry).unwrap();
        assert_eq!(full.len() as u64, exe_len);

        // A crash after the rename but before the data reached the disk: an
        // empty file. Then a torn one: half of it.
        for (what, bytes) in [
            ("empty", &full[..0]),
            ("truncated", &full[..full.len() / 2]),
        ] {
            // Renamed into place, as the first stage does (the old file
            // may still be running).
            let tmp = cache.join("planted");
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::rename(&tmp, &entry).unwrap();
            let sent = router.binary_bytes_sent();
            let c = router
                .local(shell(cache.clone()))
                .unwrap_or_else(|e| panic!("{what} cache entry: {e}"));
            assert_eq!(c.call(add::remote, (20, 22)).unwrap(), 42, "{what}");
            assert!(
                router.binary_bytes_sent() > sent,
                "{what} cache entry: the binary was uploaded again"
            );
            assert_eq!(exe_of(&c), entry, "{what}: runs the reinstalled entry");
            c.shutdown(true).unwrap();
            assert_eq!(
                std::fs::metadata(&entry).unwrap().len(),
                exe_len,
                "{what} cache entry replaced by the whole binary"
            );
        }

        // And the repaired entry is a cache hit again.
        let sent = router.binary_bytes_sent();
        let c = router.local(shell(cache.clone())).unwrap();
        assert_eq!(c.call(add::remote, (1, 2)).unwrap(), 3);
        assert_eq!(router.binary_bytes_sent(), sent, "warm: nothing uploaded");
    })
    .unwrap();
}
