//! A target of another architecture, with no build of this program added
//! for it, fails at once with `ConnectFailure::WrongArchitecture`, naming
//! the target's machine, and nothing is uploaded. The target is simulated
//! with a `uname` that reports `sparc64`. In its own binary: it changes
//! PATH for the whole process.

use std::time::{Duration, Instant};

use mitogen::{Bootstrap, ConnectFailure, LocalOptions, Router};

#[test]
fn another_architecture_without_a_binary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    mitogen_testkit::fake_uname_first_on_path(dir.path(), "sparc64");

    Router::with(|router| {
        let shell = || {
            LocalOptions::new()
                .bootstrap(Bootstrap::Shell)
                .cache_dir(dir.path().join("cache"))
        };
        let started = Instant::now();
        let e = router.local(shell()).unwrap_err();
        assert_eq!(
            e.connect_failure(),
            Some(ConnectFailure::WrongArchitecture),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("sparc64"),
            "names the target's machine: {text}"
        );
        assert!(text.contains("add_binary"), "says how to fix it: {text}");
        assert!(started.elapsed() < Duration::from_secs(10), "at once");
        assert_eq!(router.binary_bytes_sent(), 0, "nothing was uploaded");
        // Across a via hop the kind stays.
        let relay = router.local(LocalOptions::new()).unwrap();
        let e = router.local(shell().via(&relay)).unwrap_err();
        assert_eq!(
            e.connect_failure(),
            Some(ConnectFailure::WrongArchitecture),
            "{e}"
        );
    })
    .unwrap();
}
