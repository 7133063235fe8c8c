//! A noexec first candidate: the first stage must notice by executing, and
//! fall back. Needs root to mount a tmpfs; skips with a message otherwise.
//! In its own test binary because it sets XDG_CACHE_HOME for the process.

mod common;

use std::process::Command;

use common::*;
use mitogen::{Bootstrap, LocalOptions, Router};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn noexec_first_candidate_falls_back_to_the_next() {
    if !mitogen_testkit::is_root() {
        eprintln!("SKIP noexec_first_candidate_falls_back_to_the_next: mounting a noexec tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let noexec = dir.path().join("noexec");
    std::fs::create_dir(&noexec).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs"])
        .arg(&noexec)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount -t tmpfs -o noexec failed although we are root");
    let _mount = Mount(noexec.clone());
    let xdg = dir.path().join("xdg");
    std::env::set_var("XDG_CACHE_HOME", &xdg);

    Router::with(|router| {
        let c = router
            .local(
                LocalOptions::new()
                    .bootstrap(Bootstrap::Shell)
                    .cache_dir(noexec.join("cache")),
            )
            .unwrap();
        assert_eq!(c.call(add::remote, (3, 4)).unwrap(), 7);
        let exe =
            std::fs::read_link(format!("/proc/{}/exe", c.call(pid::remote, ()).unwrap())).unwrap();
        assert!(
            exe.starts_with(xdg.join("mitogen")),
            "expected the binary under $XDG_CACHE_HOME/mitogen, it runs from {}",
            exe.display()
        );
        let probe_left = std::fs::read_dir(noexec.join("cache"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(probe_left, 0, "nothing is left in the noexec directory");
    })
    .unwrap();
}
