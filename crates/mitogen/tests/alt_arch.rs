//! Binaries for another architecture are fetched once per hop and served
//! down the tree. The "other architecture" is simulated with a `uname` that
//! reports a made-up machine, and a copy of this very binary registered
//! for it. In its own binary: it changes PATH for the whole process.

mod common;

use common::*;
use mitogen::{Bootstrap, Context, LocalOptions, Router};

fn shell_via(relay: &Context, cache: &std::path::Path) -> LocalOptions {
    LocalOptions::new()
        .via(relay)
        .bootstrap(Bootstrap::Shell)
        .cache_dir(cache.to_path_buf())
}

#[test]
fn foreign_binary_is_fetched_once_per_hop() {
    let dir = tempfile::tempdir().unwrap();
    mitogen_testkit::fake_uname_first_on_path(dir.path(), "\"${FAKE_MACHINE:-fakearch}\"");

    let exe = std::env::current_exe().unwrap();
    let exe_len = std::fs::metadata(&exe).unwrap().len();
    Router::with(|router| {
        router.add_binary("fakearch", &exe).unwrap();
        let relay = router.local(LocalOptions::default()).unwrap();
        let cache = dir.path().join("cache");
        let leaves: Vec<Context> = (0..3)
            .map(|_| router.local(shell_via(&relay, &cache)).unwrap())
            .collect();
        for leaf in &leaves {
            assert_eq!(leaf.call(add::remote, (1, 2)).unwrap(), 3);
        }
        assert_eq!(
            relay.call(binary_fetches::remote, ()).unwrap(),
            1,
            "the relay fetched once"
        );
        assert_eq!(
            router.binary_bytes_sent(),
            exe_len,
            "the master sent the foreign binary once, to the relay"
        );

        // No binary for the machine anywhere: a clear error.
        std::env::set_var("FAKE_MACHINE", "nosucharch");
        let relay2 = router.local(LocalOptions::default()).unwrap();
        match router.local(shell_via(&relay2, &cache)) {
            Err(mitogen::Error::Stream(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains("nosucharch") && text.contains("Router::add_binary"),
                    "{text}"
                );
            }
            other => panic!("expected a StreamError, got {other:?}"),
        }
    })
    .unwrap();
}
