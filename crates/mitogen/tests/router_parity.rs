//! Behaviours where Mitogen's own router tests and ours must agree:
//! `add_handler` refuses a taken handle, handlers get a dead message at
//! shutdown, `Broker::defer` after shutdown is an error, disconnecting one
//! context, stream or all of them keeps the broker running; and the
//! identity and naming rules (`local.<pid>`, `Context::pid`, names refused).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mitogen::{
    Broker, ChannelError, Context, Error, ExternalContext, Latch, LocalOptions, Loss, LossKind,
    Message, Receiver, Router, StreamError,
};

const WAIT: Duration = Duration::from_secs(15);

/// The loss a call failed with, or a panic naming what came instead.
fn loss_of<T: std::fmt::Debug>(r: mitogen::Result<T>) -> Loss {
    match r {
        Err(Error::Channel(ChannelError::Dead(loss))) => loss,
        other => panic!("expected a dead channel, got {other:?}"),
    }
}

/// A latch that gets `context`'s loss.
fn watch(context: &Context) -> (Latch<Loss>, mitogen::Subscription) {
    let latch = Latch::new();
    let l2 = latch.clone();
    let sub = context.on_disconnect(move |loss| {
        let _ = l2.put(loss.clone());
    });
    (latch, sub)
}

#[test]
fn add_handler_refuses_a_taken_handle_and_keeps_the_first() {
    Router::with(|router| {
        let got: Latch<&'static str> = Latch::new();
        let g1 = got.clone();
        let h = router
            .add_handler(
                move |_| {
                    let _ = g1.put("first");
                },
                None,
                true,
                None,
                None,
            )
            .unwrap();
        let g2 = got.clone();
        match router.add_handler(
            move |_| {
                let _ = g2.put("second");
            },
            Some(h),
            true,
            None,
            None,
        ) {
            Err(Error::Stream(StreamError::HandleInUse { handle, context })) => {
                assert_eq!(handle, h);
                assert_eq!(context, "master");
            }
            other => panic!("a taken handle was not refused: {other:?}"),
        }
        Context::local(&router)
            .send(Message::pickled(&1u8, h).unwrap())
            .unwrap();
        assert_eq!(got.get_timeout(WAIT), Ok("first"));
        // Free again once deleted.
        assert!(router.del_handler(h));
        assert!(router
            .add_handler(|_| {}, Some(h), true, None, None)
            .is_ok());
    })
    .unwrap();
}

#[test]
fn handlers_and_receivers_get_a_dead_message_when_the_router_shuts_down() {
    let router = Router::new().unwrap();
    let got: Latch<Option<String>> = Latch::new();
    let g2 = got.clone();
    router
        .add_handler(
            move |msg| {
                let _ = g2.put(msg.dead_reason());
            },
            None,
            true,
            None,
            None,
        )
        .unwrap();
    let rx = Receiver::new(&router);
    router.shutdown();
    let reason = got
        .get_timeout(WAIT)
        .expect("the handler heard nothing at shutdown")
        .expect("the handler got a live message");
    assert!(reason.contains("shut down"), "{reason}");
    match rx.recv_timeout(WAIT) {
        Err(mitogen::RecvTimeoutError::Channel(ChannelError::Dead(loss))) => {
            assert_eq!(loss.kind, LossKind::Shutdown, "{loss}");
        }
        other => panic!("the receiver was not woken with a dead message: {other:?}"),
    }
}

#[test]
fn defer_after_shutdown_is_an_error_and_drops_the_work() {
    let broker = Broker::new().unwrap();
    broker.defer(|| {}).expect("a running broker takes work");
    broker.shutdown();
    broker.join();
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    match broker.defer(move || r2.store(true, Ordering::SeqCst)) {
        Err(Error::Stream(StreamError::BrokerStopped)) => {}
        other => panic!("defer after shutdown: {other:?}"),
    }
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn disconnect_one_context_wakes_its_waiters_and_keeps_the_rest() {
    Router::with(|router| {
        let a = named(&router, "a");
        let b = named(&router, "b");
        let pending = a.call_async(sleep_ms::remote, (60_000,)).unwrap();
        router.disconnect(&a).unwrap();
        let loss = loss_of(pending.get_timeout(WAIT));
        assert_eq!(loss.kind, LossKind::Disconnected, "{loss}");
        assert!(loss.contains("disconnected by the master"), "{loss}");
        assert!(loss.contains("a (id"), "the loss names the context: {loss}");
        // Once more is fine; the rest go on.
        router.disconnect(&a).unwrap();
        assert!(!router.broker().is_shutting_down());
        assert_eq!(b.call(add::remote, (2, 2)).unwrap(), 4);
        assert!(router.stream_of(&a).is_none());
        assert_eq!(router.streams().len(), 1);
    })
    .unwrap();
}

#[test]
fn disconnect_stream_takes_the_subtree_behind_it() {
    Router::with(|router| {
        let relay = named(&router, "relay");
        let leaf = via(&router, &relay, "leaf").unwrap();
        let stream = router.stream_of(&leaf).unwrap();
        assert_eq!(Some(&stream), router.stream_of(&relay).as_ref());
        assert_eq!(stream.remote_id(), relay.context_id());
        // A context behind a hop is not ours to disconnect alone.
        match router.disconnect(&leaf) {
            Err(Error::Stream(StreamError::InvalidOptions(why))) => {
                assert!(
                    why.contains("leaf") && why.contains("stream relay"),
                    "{why}"
                );
            }
            other => panic!("disconnect of a grandchild: {other:?}"),
        }
        let (leaf_lost, _w1) = watch(&leaf);
        let (relay_lost, _w2) = watch(&relay);
        router.disconnect_stream(&stream);
        let loss = relay_lost.get_timeout(WAIT).expect("relay lost");
        assert_eq!(loss.kind, LossKind::Disconnected, "{loss}");
        let loss = leaf_lost.get_timeout(WAIT).expect("leaf lost");
        assert_eq!(loss.kind, LossKind::Behind("relay".into()), "{loss}");
        assert!(loss.contains("disconnected by the master"), "{loss}");
        let fresh = named(&router, "fresh");
        assert_eq!(fresh.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

#[test]
fn disconnect_all_closes_every_child_stream_and_the_broker_runs_on() {
    Router::with(|router| {
        let x = named(&router, "x");
        let y = named(&router, "y");
        let (x_lost, _wx) = watch(&x);
        let (y_lost, _wy) = watch(&y);
        router.disconnect_all();
        for (name, latch) in [("x", x_lost), ("y", y_lost)] {
            let loss = latch
                .get_timeout(WAIT)
                .unwrap_or_else(|e| panic!("{name} not lost: {e}"));
            assert_eq!(loss.kind, LossKind::Disconnected, "{name}: {loss}");
        }
        assert!(router.streams().is_empty());
        let z = named(&router, "z");
        assert_eq!(z.call(add::remote, (3, 4)).unwrap(), 7);
    })
    .unwrap();
}

/// What a context says of itself through each identity API.
#[mitogen::remote]
fn identity_of(ec: &ExternalContext) -> (String, Vec<u32>, u32, u32, u32, Vec<u32>) {
    (
        ec.name(),
        ec.parent_ids(),
        std::process::id(),
        ec.context_id(),
        mitogen::context_id(),
        mitogen::parent_ids(),
    )
}

#[test]
fn one_identity_api_and_local_pid_names() {
    Router::with(|router| {
        let child = router.local(LocalOptions::new()).unwrap();
        let (name, parents, pid, id, global_id, global_parents) =
            child.call(identity_of::remote, ()).unwrap();
        assert_eq!(name, format!("local.{pid}"), "Mitogen's local.<pid>");
        assert_eq!(child.name(), name);
        assert_eq!(child.pid(), Some(pid));
        assert_eq!((id, global_id), (child.context_id(), child.context_id()));
        assert_eq!(parents, [0]);
        assert_eq!(global_parents, parents);
        assert_eq!(Context::local(&router).pid(), Some(std::process::id()));
        // Started by another context: its pid is not known here.
        let leaf = via(&router, &child, "leaf").unwrap();
        let (leaf_name, leaf_parents, ..) = leaf.call(identity_of::remote, ()).unwrap();
        assert_eq!(leaf_name, "leaf");
        assert_eq!(leaf_parents, [child.context_id(), 0]);
        assert_eq!(leaf.pid(), None);
    })
    .unwrap();
}

#[test]
fn empty_names_and_control_characters_are_refused() {
    Router::with(|router| {
        for bad in ["", "a\nb", "tab\there", "bell\u{7}", "rtl\u{202e}x", "a/b"] {
            match router.local(LocalOptions::new().remote_name(bad)) {
                Err(Error::Stream(StreamError::InvalidOptions(why))) => {
                    assert!(why.contains("remote_name"), "{bad:?}: {why}");
                }
                other => panic!("remote_name {bad:?} was not refused: {other:?}"),
            }
            let c = Context::new(&router, 777, Some(bad));
            assert_eq!(c.name(), "context 777", "Context::new kept {bad:?}");
        }
        assert!(
            router.streams().is_empty(),
            "a refused name started a child"
        );
    })
    .unwrap();
}
