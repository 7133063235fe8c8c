//! No descriptor or thread outlives a router. Alone in its binary so no
//! other test's threads or descriptors come and go meanwhile.

mod common;

use common::*;
use mitogen::{LocalOptions, Router};
use mitogen_testkit::{fd_count, thread_count, wait_for};
use std::time::Duration;

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
    // Alone in its binary: nothing else opens descriptors or starts
    // threads meanwhile, so not one may remain. (A router's own handlers
    // once held the router, so each kept its broker's eventfd and memory.)
    let fds2 = fd_count();
    assert!(fds2 <= fds, "descriptors grew from {fds} to {fds2}");
    wait_for(Duration::from_secs(10), "threads to exit", || {
        thread_count() <= threads
    });
}
