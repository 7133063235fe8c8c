//! A noexec first candidate: the first stage must notice by executing, and
//! fall back. Needs root to mount a tmpfs; skips with a message otherwise.
//! In its own test binary because it sets XDG_CACHE_HOME for the process.

mod common;

use common::*;
use mitogen::{Bootstrap, LocalOptions, Router};

#[test]
fn noexec_first_candidate_falls_back_to_the_next() {
    if !mitogen_testkit::is_root() {
        eprintln!("SKIP noexec_first_candidate_falls_back_to_the_next: mounting a noexec tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let noexec = dir.path().join("noexec");
    let _mount = mitogen_testkit::Tmpfs::mount(&noexec, "noexec,size=64m");
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
