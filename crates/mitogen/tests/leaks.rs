//! No descriptor or thread outlives a router. Alone in its binary so no
//! other test's threads or descriptors come and go meanwhile.

mod common;

use common::*;
use mitogen::{LocalOptions, Router};
use mitogen_testkit::{fd_count, thread_count};

#[test]
fn no_fd_or_thread_leaks_across_routers() {
    let cycle = || {
        Router::with(|router| {
            let c = router.local(LocalOptions::default()).unwrap();
            c.call(add::remote, (1, 2)).unwrap();
        })
        .unwrap()
    };
    cycle();
    let (fds, threads) = (fd_count(), thread_count());
    for _ in 0..5 {
        cycle();
    }
    // Other tests run in parallel threads; allow for their own descriptors
    // by comparing against a run of this test alone in the common case.
    let (fds2, threads2) = (fd_count(), thread_count());
    assert!(fds2 <= fds + 8, "descriptors grew from {fds} to {fds2}");
    assert!(
        threads2 <= threads + 4,
        "threads grew from {threads} to {threads2}"
    );
}
