//! Issue 8, the shell first stage against another local user (C2, M8).
//! Every test runs the real first stage through
//! `router.local(LocalOptions { bootstrap: Bootstrap::Shell, .. })`.
//!
//! In its own test binary: it points `TMPDIR`, `XDG_CACHE_HOME` and `HOME`
//! of the whole process at a scratch tree, so the shared candidates the
//! first stage tries are ones the tests control:
//!
//! ```text
//! $TMPDIR(at start)/mitogen-trust-first-stage/   root, 0755, wiped at start
//!   tmp/                1777: $TMPDIR; C2's attacker owns tmp/mitogen-0/
//!   shm/                1777: M8's attacker plants shm/mitogen-0 -> victim
//!   victim/             root, 0755: must keep its mode and contents
//!   blocker             a regular file: $XDG_CACHE_HOME and $HOME lie under
//!                       it, so the home cache can never be created
//!   evil.sh             the attacker's program: leaves PWNED if ever run
//! ```
//!
//! The attacker is a uid no account uses ([`ATTACKER`]), so nothing on the
//! machine is changed. The tests need root (to act as that uid) and print
//! `SKIP` otherwise. They run one at a time, each planting its attack and
//! removing it (and its racing process) when it ends, along with what the
//! bootstrap installed in the machine's shared directories.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use common::*;
use mitogen::{Bootstrap, Context, LocalOptions, Router};
use mitogen_testkit::fixture;

/// The hostile local user: a uid (and gid) with no account.
const ATTACKER: u32 = 47_113;
/// Connections made while the attacker races (the review won 12 of 300).
const C2_RUNS: usize = 200;

struct Scratch {
    root: PathBuf,
    hash: String,
}

/// The scratch tree and the environment pointing at it, made once.
fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let root = std::env::temp_dir().join("mitogen-trust-first-stage");
        // Left by an earlier run (it can't remove the tree at exit).
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for shared in ["tmp", "shm"] {
            let d = root.join(shared);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        std::fs::write(root.join("blocker"), b"not a directory").unwrap();
        std::env::set_var("TMPDIR", root.join("tmp"));
        std::env::set_var("XDG_CACHE_HOME", root.join("blocker/xdg"));
        std::env::set_var("HOME", root.join("blocker/home"));
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("sha256sum").arg(&exe).output().unwrap();
        let hash = String::from_utf8(out.stdout).unwrap()[..64].to_string();
        Scratch { root, hash }
    })
}

/// One attack at a time, and everything it planted and the bootstrap
/// installed removed when it is dropped.
struct Hostile {
    /// Paths to remove at the end.
    planted: Vec<PathBuf>,
    swapper: Option<Child>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(mut s) = self.swapper.take() {
            // The loop ends after its current round and reaps its own
            // children; killed only if it doesn't.
            let _ = std::fs::remove_file(swapper_flag());
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while s.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", s.id())])
                        .status();
                    let _ = s.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for p in &self.planted {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
        let hash = &scratch().hash;
        for shared in ["/var/tmp", "/tmp", "/dev/shm"] {
            let _ = std::fs::remove_file(format!("{shared}/mitogen-0/{hash}"));
        }
    }
}

/// The scratch tree, a fresh [`Hostile`] guard; `None` (after printing
/// `SKIP`) when not root.
fn hostile(test: &str) -> Option<(&'static Scratch, Hostile)> {
    static ONE: Mutex<()> = Mutex::new(());
    let root = mitogen_testkit::is_root()
        .then_some(())
        .ok_or_else(|| "needs root: the attacker is another uid".to_string());
    if !fixture::ready_or_skip(test, root) {
        return None;
    }
    let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch();
    // Whatever a bootstrap of the other test made here.
    let _ = std::fs::remove_dir_all(s.root.join("tmp/mitogen-0"));
    Some((
        s,
        Hostile {
            planted: Vec::new(),
            swapper: None,
            _one_at_a_time: guard,
        },
    ))
}

/// The swapper runs while this file exists (and this process lives).
fn swapper_flag() -> PathBuf {
    scratch().root.join("swapper-runs")
}

fn chown_attacker(p: &Path) {
    std::os::unix::fs::lchown(p, Some(ATTACKER), Some(ATTACKER)).unwrap();
}

fn swaps(count: &Path) -> u64 {
    std::fs::read_to_string(count)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn shell(cache_dir: Option<PathBuf>) -> LocalOptions {
    let mut opts = LocalOptions::new()
        .bootstrap(Bootstrap::Shell)
        .connect_timeout(Duration::from_secs(20));
    opts.common.cache_dir = cache_dir;
    opts
}

/// The file the child runs from, by its `/proc/<pid>/exe`.
fn exe_of(c: &Context) -> PathBuf {
    let pid = c.call(pid::remote, ()).unwrap();
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The child runs from a private directory of root's, not from `planted`.
fn assert_private_install(exe: &Path, planted: &Path) {
    let dir = exe.parent().unwrap();
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert!(
        meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o777 == 0o700,
        "{} runs from a directory that is not root's and private",
        exe.display()
    );
    assert!(
        !exe.starts_with(planted),
        "the child runs from the attacker's directory: {}",
        exe.display()
    );
}

#[test]
fn c2_planted_symlink_never_executed() {
    let Some((s, mut hostile)) = hostile("c2_planted_symlink_never_executed") else {
        return;
    };
    let pwned = s.root.join("PWNED");
    let evil = s.root.join("evil.sh");
    hostile.planted.push(evil.clone());
    std::fs::write(
        &evil,
        format!("#!/bin/sh\nid > '{}'\nexit 0\n", pwned.display()),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_attacker(&evil);
    // The attacker's own directory where root's shared cache would be,
    // made before root ever used it.
    let dir = s.root.join("tmp/mitogen-0");
    hostile.planted.push(dir.clone());
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_attacker(&dir);
    let link = dir.join(&s.hash);
    // The swapper renames fresh links over `<hash>`, so every lookup sees
    // one target or the other, never a missing file; it stops when the
    // flag file goes, or when this process dies.
    let count = s.root.join("tmp/swaps");
    std::fs::write(swapper_flag(), b"").unwrap();
    hostile.planted.push(count.clone());
    let script = "cd \"$1\" || exit 1; i=0; while [ -e \"$5\" ] && [ -d \"/proc/$6\" ]; do \
        ln -sfn /bin/true .a && mv -Tf .a \"$2\"; \
        ln -sfn \"$3\" .b && mv -Tf .b \"$2\"; \
        i=$((i+1)); echo $i > \"$4.new\" && mv -f \"$4.new\" \"$4\"; done";
    hostile.swapper = Some(
        Command::new("/bin/sh")
            .args(["-c", script, "swapper"])
            .arg(&dir)
            .arg(&s.hash)
            .arg(&evil)
            .arg(&count)
            .arg(swapper_flag())
            .arg(std::process::id().to_string())
            .uid(ATTACKER)
            .gid(ATTACKER)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    mitogen_testkit::wait_for(
        Duration::from_secs(10),
        "the attacker's swapper to start swapping",
        || swaps(&count) > 0,
    );
    let before = swaps(&count);
    Router::with(|router| {
        for run in 0..C2_RUNS {
            let c = router
                .local(shell(None))
                .unwrap_or_else(|e| panic!("run {run}: the bootstrap failed: {e}"));
            assert_eq!(
                c.call(add::remote, (run as i32, 1)).unwrap(),
                run as i32 + 1
            );
            assert_private_install(&exe_of(&c), &dir);
            c.shutdown(true).unwrap();
            assert!(
                !pwned.exists(),
                "run {run}: the attacker's program ran as root: {}",
                std::fs::read_to_string(&pwned).unwrap_or_default()
            );
        }
    })
    .unwrap();
    let raced = swaps(&count) - before;
    assert!(
        raced > C2_RUNS as u64,
        "the swapper only swapped {raced} times during {C2_RUNS} bootstraps: no race took place"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "the planted link is still there, untouched"
    );
}

#[test]
fn m8_planted_directory_symlink_keeps_target_mode() {
    let Some((s, mut hostile)) = hostile("m8_planted_directory_symlink_keeps_target_mode") else {
        return;
    };
    // A planted symlink named like a cache directory, pointing at a
    // root-owned 0755 directory.
    let victim = s.root.join("victim");
    hostile.planted.push(victim.clone());
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(victim.join("precious"), b"keep me").unwrap();
    let planted = s.root.join("shm/mitogen-0");
    hostile.planted.push(planted.clone());
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    chown_attacker(&planted);
    Router::with(|router| {
        // The planted link is the first candidate (the override), then
        // the XDG one (unusable); the install lands in $TMPDIR/mitogen-0.
        for _ in 0..3 {
            let c = router.local(shell(Some(planted.clone()))).unwrap();
            assert_eq!(c.call(add::remote, (2, 3)).unwrap(), 5);
            assert_private_install(&exe_of(&c), &victim);
            c.shutdown(true).unwrap();
        }
    })
    .unwrap();
    hostile.planted.push(s.root.join("tmp/mitogen-0"));
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o755,
        "the planted link's target changed mode"
    );
    let mut entries: Vec<String> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["precious"], "nothing was written into the target");
    assert!(
        std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the planted link is left alone"
    );
}
