//! The broker and router on their own: deferred work, timers, shutdown,
//! handlers, policies, respondents; and per-process debug logs.

mod common;
mod logs;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mitogen::{
    Broker, ChannelError, Context, Latch, LocalOptions, Message, Receiver, ReceiverOptions, Router,
};

#[test]
fn defer_runs_on_the_broker_thread() {
    let broker = Broker::new().unwrap();
    let on_broker = broker.defer_sync({
        let b = broker.clone();
        move || b.on_broker_thread()
    });
    assert_eq!(on_broker, Ok(true));
    let latch = Latch::new();
    let l2 = latch.clone();
    let b2 = broker.clone();
    broker
        .defer(move || l2.put(b2.on_broker_thread()).unwrap())
        .unwrap();
    assert_eq!(latch.get_timeout(Duration::from_secs(5)), Ok(true));
    broker.shutdown();
    broker.join();
    assert!(broker.is_stopped());
    assert!(
        broker.defer_sync(|| 1).is_err(),
        "a stopped broker runs nothing"
    );
}

#[test]
fn timers_fire_in_order_and_cancel() {
    let broker = Broker::new().unwrap();
    let fired = Latch::new();
    let (f1, f2, f3) = (fired.clone(), fired.clone(), fired.clone());
    broker.schedule(Duration::from_millis(40), move || f1.put(2).unwrap());
    broker.schedule(Duration::from_millis(10), move || f2.put(1).unwrap());
    let cancelled = broker.schedule(Duration::from_millis(20), move || f3.put(99).unwrap());
    cancelled.cancel();
    assert_eq!(fired.get_timeout(Duration::from_secs(5)), Ok(1));
    assert_eq!(fired.get_timeout(Duration::from_secs(5)), Ok(2));
    assert!(fired.get_timeout(Duration::from_millis(50)).is_err());
    broker.shutdown();
    broker.join();
}

#[test]
fn keep_alive_tracks_children() {
    Router::with(|router| {
        assert!(!router.broker().keep_alive());
        let c = router.local(LocalOptions::default()).unwrap();
        c.call(add::remote, (1, 1)).unwrap();
        assert!(router.broker().keep_alive());
    })
    .unwrap();
}

#[test]
fn handlers_persist_or_not_and_can_be_removed() {
    Router::with(|router| {
        let me = Context::local(&router);
        let count = Arc::new(AtomicU32::new(0));
        let got = Latch::new();
        let (c2, g2) = (count.clone(), got.clone());
        let h = router
            .add_handler(
                move |m: Message| {
                    c2.fetch_add(1, Ordering::SeqCst);
                    g2.put(m.unpickle::<u8>().unwrap()).unwrap();
                },
                None,
                true,
                None,
                None,
            )
            .unwrap();
        me.send(Message::pickled(&1u8, h).unwrap()).unwrap();
        me.send(Message::pickled(&2u8, h).unwrap()).unwrap();
        assert_eq!(got.get_timeout(Duration::from_secs(5)), Ok(1));
        assert_eq!(got.get_timeout(Duration::from_secs(5)), Ok(2));
        assert!(router.del_handler(h));
        assert!(!router.del_handler(h));
        // Now unhandled: a message that wants a reply gets a dead one.
        match me.send_await(
            Message::pickled(&3u8, h).unwrap(),
            Some(Duration::from_secs(5)),
        ) {
            Err(mitogen::Error::Channel(ChannelError::Dead(r))) => {
                assert!(r.contains("no handler"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);

        let once = Receiver::with_options(
            &router,
            ReceiverOptions {
                oneshot: true,
                ..Default::default()
            },
        );
        let tx = once.to_sender();
        tx.send(&1u8).unwrap();
        assert!(once.recv().is_ok());
        match me.send_await(
            Message::pickled(&2u8, once.handle()).unwrap(),
            Some(Duration::from_secs(5)),
        ) {
            Err(mitogen::Error::Channel(ChannelError::Dead(_))) => {}
            other => panic!("a oneshot receiver takes one message: {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn policy_refusal_is_a_dead_reply() {
    Router::with(|router| {
        let me = Context::local(&router);
        let rx = Receiver::with_options(
            &router,
            ReceiverOptions {
                policy: Some(Arc::new(|_: &Message, _: &Router| false)),
                ..Default::default()
            },
        );
        match me.send_await(
            Message::pickled(&1u8, rx.handle()).unwrap(),
            Some(Duration::from_secs(5)),
        ) {
            Err(mitogen::Error::Channel(ChannelError::Dead(r))) => {
                assert!(r.contains("refused by policy"), "{r}")
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.is_empty());
        // has_parent_authority accepts our own messages.
        let mut m = Message::new(0, vec![]);
        m.auth_id = router.context_id();
        assert!(mitogen::has_parent_authority(&m, &router));
        m.auth_id = 77;
        assert!(!mitogen::has_parent_authority(&m, &router));
    })
    .unwrap();
}

#[test]
fn respondent_disconnect_wakes_receiver_with_reason() {
    Router::with(|router| {
        let child = router
            .local(LocalOptions::new().remote_name("doomed"))
            .unwrap();
        let rx = Receiver::with_options(
            &router,
            ReceiverOptions {
                respondent: Some(child.context_id()),
                ..Default::default()
            },
        );
        child.shutdown(true).unwrap();
        match rx.recv_timeout(Duration::from_secs(5)) {
            Err(mitogen::RecvTimeoutError::Channel(ChannelError::Dead(r))) => {
                assert!(r.contains("doomed") && r.contains("disconnected"), "{r}")
            }
            other => panic!("{other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn channel_closed_receiver_and_iteration() {
    Router::with(|router| {
        let rx = Receiver::new(&router);
        let tx = rx.to_sender();
        for i in 0..3u8 {
            tx.send(&i).unwrap();
        }
        tx.close().unwrap();
        let got: Vec<u8> = rx.iter().map(|m| m.unpickle().unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        rx.close();
        assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed);
    })
    .unwrap();
}

/// The debug logs this context has open (their place is private and varies).
#[mitogen::remote]
fn debug_logs() -> Vec<std::path::PathBuf> {
    logs::open_debug_logs()
}

#[test]
fn debug_option_writes_a_per_process_log() {
    let mut logs = Vec::new();
    Router::with(|router| {
        let c = router.local(LocalOptions::new().debug(true)).unwrap();
        logs = c.call(debug_logs::remote, ()).unwrap();
    })
    .unwrap();
    assert_eq!(logs.len(), 1, "one debug log per process: {logs:?}");
    let path = &logs[0];
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let _ = std::fs::remove_file(path);
    assert!(text.contains("started; parents [0]"), "{text}");
}
