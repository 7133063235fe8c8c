//! Issue 11, cache housekeeping: a child started by the real first stage
//! tidies its cache directory before it serves a call. An old cached
//! binary goes; a running one, the newest five and the child's own stay;
//! leftover install files go after a day. In its own binary so that no
//! other test shares the cache directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use common::*;
use mitogen::{Bootstrap, LocalOptions, Router};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn shell(cache_dir: PathBuf) -> LocalOptions {
    LocalOptions::new()
        .bootstrap(Bootstrap::Shell)
        .cache_dir(cache_dir)
        .connect_timeout(Duration::from_secs(20))
}

/// A cache-style name: 64 hex digits.
fn name(i: u32) -> String {
    format!("{i:064x}")
}

/// Plant `bytes` as `dir/name`, mode 0700, last modified `ago`.
fn plant(dir: &Path, name: &str, bytes: &[u8], ago: Duration) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::File::open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
    path
}

/// The names in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Kills and reaps the process on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn old_binaries_go_running_and_recent_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    Router::with(|router| {
        // A real install makes the private directory and caches us.
        let cache = tmp.path().join("mitogen");
        let first = router.local(shell(cache.clone())).unwrap();
        assert_ne!(first.call(pid::remote, ()).unwrap(), std::process::id());
        first.shutdown(true).unwrap();
        let ours = listing(&cache);
        assert_eq!(ours.len(), 1, "{ours:?}");

        let recent: Vec<String> = (1..=5).map(name).collect();
        for n in &recent {
            plant(&cache, n, b"#!/bin/sh\n", Duration::from_secs(3600));
        }
        let old = name(100);
        plant(&cache, &old, b"#!/bin/sh\n", 30 * DAY);
        let temp = format!(".{}.4242", name(101));
        plant(&cache, &temp, b"half", 2 * DAY);
        let fresh_temp = format!(".{}.4243", name(102));
        plant(&cache, &fresh_temp, b"half", Duration::from_secs(60));
        // An old binary that is running: a copy of sleep. `spawn` returns
        // once the exec has happened, so it runs from this file now.
        let sleep = std::fs::read("/bin/sleep").expect("read /bin/sleep");
        let busy = name(103);
        let busy_path = plant(&cache, &busy, &sleep, 30 * DAY);
        let _running = Running(Command::new(&busy_path).arg("120").spawn().unwrap());

        // The next child tidies before it answers.
        let c = router.local(shell(cache.clone())).unwrap();
        assert_eq!(c.call(add::remote, (2, 2)).unwrap(), 4);
        let left = listing(&cache);
        let has = |n: &str| left.iter().any(|l| l == n);
        assert!(!has(&old), "the old binary is removed: {left:?}");
        assert!(!has(&temp), "the old install leftover is removed: {left:?}");
        assert!(has(&busy), "the running binary stays: {left:?}");
        assert!(has(&fresh_temp), "a fresh install file stays: {left:?}");
        assert!(has(&ours[0]), "our own binary stays: {left:?}");
        for n in &recent {
            assert!(has(n), "recent {n} stays: {left:?}");
        }
        // Our binary's mtime says when it last started.
        let started = std::fs::metadata(cache.join(&ours[0]))
            .unwrap()
            .modified()
            .unwrap();
        let since = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        assert!(since < Duration::from_secs(60), "mtime {since:?} ago");
        c.shutdown(true).unwrap();
    })
    .unwrap();
}
