//! Trees of contexts: via= chains, id allocation, route propagation,
//! relays, unidirectional routing, leaf-to-leaf streaming, scale.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mitogen::{
    Bootstrap, ChannelError, Context, Error, LocalOptions, Receiver, Router, Select, Sender,
};
use mitogen_testkit::{process_gone, process_state, wait_for};

/// Tests that start hundreds of processes and tests that check a wake-up
/// deadline take turns, so one's load cannot break the other's timing.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn via(ctx: &Context) -> LocalOptions {
    LocalOptions::new().via(ctx)
}

#[test]
fn ten_deep_chain() {
    Router::with(|router| {
        let mut hops = vec![router.local(LocalOptions::default()).unwrap()];
        for _ in 1..10 {
            let next = router.local(via(hops.last().unwrap())).unwrap();
            hops.push(next);
        }
        let deepest = hops.last().unwrap();
        let (is_master, id, parent, parents, _, _) = deepest.call(identity::remote, ()).unwrap();
        assert!(!is_master);
        assert_eq!(id, deepest.context_id());
        assert_eq!(parent, Some(hops[8].context_id()));
        assert_eq!(parents.len(), 10, "nine hops and the master: {parents:?}");
        assert_eq!(*parents.last().unwrap(), 0);
        assert_eq!(deepest.call(add::remote, (40, 2)).unwrap(), 42);
        let mut ids: Vec<u32> = hops.iter().map(|c| c.context_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "ids are unique");
    })
    .unwrap();
}

#[test]
fn relay_with_fifty_leaves_uploads_the_binary_once() {
    let _turn = heavy();
    let dir = tempfile::tempdir().unwrap();
    let shell = |cache: &str, via: Option<&Context>| {
        let mut opts = LocalOptions::new()
            .bootstrap(Bootstrap::Shell)
            .cache_dir(dir.path().join(cache));
        opts.common.via = via.cloned();
        opts
    };
    Router::with(|router| {
        let relay = router.local(shell("relay", None)).unwrap();
        let once = router.binary_bytes_sent();
        assert!(once > 0);
        let leaves: Vec<Context> = (0..50)
            .map(|_| router.local(shell("leaves", Some(&relay))).unwrap())
            .collect();
        let pids = Select::all(
            leaves
                .iter()
                .map(|l| l.call_async(pid::remote, ()).unwrap()),
        )
        .unwrap();
        assert_eq!(pids.len(), 50);
        assert_eq!(
            router.binary_bytes_sent(),
            once,
            "the master uploaded to the relay only; the relay served its leaves"
        );
    })
    .unwrap();
}

#[test]
fn relay_killed_fails_pending_calls_and_leaves_exit() {
    let _turn = heavy();
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let relay_pid = relay.call(pid::remote, ()).unwrap();
        let leaves: Vec<Context> = (0..3).map(|_| router.local(via(&relay)).unwrap()).collect();
        let leaf_pids: Vec<u32> = leaves
            .iter()
            .map(|l| l.call(pid::remote, ()).unwrap())
            .collect();
        let pending: Vec<_> = leaves
            .iter()
            .map(|l| l.call_async(sleep_ms::remote, (60_000,)).unwrap())
            .collect();
        let started = Instant::now();
        sigkill(relay_pid);
        for (p, leaf) in pending.into_iter().zip(&leaves) {
            match p.get_timeout(Duration::from_secs(5)) {
                Err(Error::Channel(ChannelError::Dead(reason))) => {
                    assert!(
                        reason.contains(leaf.name()) || reason.contains("disconnected"),
                        "{reason}"
                    )
                }
                other => panic!("expected ChannelError, got {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "woke after {:?}",
            started.elapsed()
        );
        for pid in leaf_pids {
            // Orphans give a running call one second, then exit.
            wait_for(
                Duration::from_secs(10),
                &format!("leaf {pid} to exit"),
                || process_gone(pid) || process_state(pid) == Some('Z'),
            );
        }
    })
    .unwrap();
}

#[test]
fn leaf_streams_ten_thousand_messages_to_a_sibling() {
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let (a, b) = (
            router.local(via(&relay)).unwrap(),
            router.local(via(&relay)).unwrap(),
        );
        let tell = Receiver::new(&router);
        let collected = b
            .call_async(collect::remote, (tell.to_sender(), 10_000))
            .unwrap();
        let inbox: Sender = tell
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unpickle()
            .unwrap();
        assert_eq!(inbox.context().context_id(), b.context_id());
        a.call(stream_numbers::remote, (inbox, 10_000)).unwrap();
        let got = collected.get_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            got,
            (0..10_000).collect::<Vec<u32>>(),
            "all of them, in order"
        );
    })
    .unwrap();
}

#[test]
fn leaves_may_talk_unless_unidirectional() {
    for unidirectional in [false, true] {
        Router::with(|router| {
            router.set_unidirectional(unidirectional);
            let relay = router.local(LocalOptions::default()).unwrap();
            let (a, b) = (
                router.local(via(&relay)).unwrap(),
                router.local(via(&relay)).unwrap(),
            );
            let inbox = b.call(open_inbox::remote, ()).unwrap();
            let result = a.call(poke::remote, (inbox,));
            if unidirectional {
                match result {
                    Err(Error::Call(e)) => {
                        assert!(e.message.contains("unidirectional routing"), "{e}")
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                }
            } else {
                assert_eq!(result.unwrap(), "got it");
            }
            // Replies from leaves to the master still flow.
            assert_eq!(a.call(add::remote, (1, 2)).unwrap(), 3);
            assert_eq!(b.call(add::remote, (3, 4)).unwrap(), 7);
        })
        .unwrap();
    }
}

#[test]
fn ids_come_from_blocks_and_stay_unique() {
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let mut ids = vec![relay.context_id()];
        for _ in 0..3 {
            ids.push(router.local(via(&relay)).unwrap().context_id());
            ids.push(router.local(LocalOptions::default()).unwrap().context_id());
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{ids:?}");
        assert_eq!(
            router.context_by_id(relay.context_id()).name(),
            relay.name()
        );
    })
    .unwrap();
}

#[test]
fn five_hundred_contexts_under_relays() {
    let _turn = heavy();
    Router::with(|router| {
        let relays: Vec<Context> = (0..5)
            .map(|_| router.local(LocalOptions::default()).unwrap())
            .collect();
        let mut all = relays.clone();
        for relay in &relays {
            for _ in 0..99 {
                all.push(router.local(via(relay)).unwrap());
            }
        }
        assert_eq!(all.len(), 500);
        let pids = Select::all(all.iter().map(|c| c.call_async(pid::remote, ()).unwrap())).unwrap();
        let mut unique = pids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 500);
    })
    .unwrap();
}

#[test]
fn call_function_only_from_the_parent_chain() {
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let (a, b) = (
            router.local(via(&relay)).unwrap(),
            router.local(via(&relay)).unwrap(),
        );
        // A sibling may not call into b; the master (a parent) may.
        match a.call(call_other::remote, (b.context_id(),)) {
            Err(Error::Call(e)) => assert!(e.message.contains("refused by policy"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A parent may call its child: the relay calls b.
        assert_eq!(
            relay.call(call_other::remote, (b.context_id(),)).unwrap(),
            2
        );
    })
    .unwrap();
}

#[test]
fn leaf_killed_behind_a_relay_wakes_the_master_through_del_route() {
    let _turn = heavy();
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let leaf = router
            .local(via(&relay).remote_name("doomed-leaf"))
            .unwrap();
        let leaf_pid = leaf.call(pid::remote, ()).unwrap();
        let pending = leaf.call_async(sleep_ms::remote, (60_000,)).unwrap();
        let started = Instant::now();
        sigkill(leaf_pid);
        match pending.get_timeout(Duration::from_secs(5)) {
            Err(Error::Channel(ChannelError::Dead(reason))) => {
                assert!(
                    reason.contains("doomed-leaf"),
                    "names the lost context: {reason}"
                )
            }
            other => panic!("expected ChannelError, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "woke after {:?}",
            started.elapsed()
        );
        // The relay is unaffected.
        assert_eq!(relay.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}

#[test]
fn sibling_waiting_on_a_lost_leaf_is_told_by_del_route() {
    let _turn = heavy();
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let a = router.local(via(&relay)).unwrap();
        let b = router.local(via(&relay).remote_name("gone-b")).unwrap();
        let b_pid = b.call(pid::remote, ()).unwrap();
        let silent = b.call(open_silent_inbox::remote, ()).unwrap();
        // a waits (up to 10 s) for a reply b will never send.
        let waiting = a.call_async(poke::remote, (silent,)).unwrap();
        // Let the poke reach b before b dies: a round trip through b.
        b.call(add::remote, (0, 0)).unwrap();
        let started = Instant::now();
        sigkill(b_pid);
        match waiting.get_timeout(Duration::from_secs(20)) {
            Err(Error::Call(e)) => assert!(
                e.message.contains("gone-b") && e.message.contains("disconnected"),
                "{e}"
            ),
            other => panic!("expected the poke to fail, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a learnt of b's loss after {:?} (its own timeout is 10 s)",
            started.elapsed()
        );
    })
    .unwrap();
}
