//! Signals (`mitogen::signal`): disconnect fires once per lost context,
//! also behind a killed relay; shutdown and exit fire in order; dropping a
//! subscription stops delivery; a panicking listener is contained.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mitogen::{signal, Context, Latch, LocalOptions, Loss, LossKind, Router};

const WAIT: Duration = Duration::from_secs(15);

/// Take `n` values from `latch`, each within [`WAIT`], naming `what` on failure.
fn take<T>(latch: &Latch<T>, n: usize, what: &str) -> Vec<T> {
    (0..n)
        .map(|i| {
            latch.get_timeout(WAIT).unwrap_or_else(|e| {
                panic!("{what}: event {} of {n} not seen in {WAIT:?}: {e}", i + 1)
            })
        })
        .collect()
}

#[test]
fn disconnect_fires_once_per_context_behind_a_killed_relay() {
    let seen: Arc<Mutex<Vec<(String, LossKind)>>> = Arc::default();
    Router::with(|router| {
        let relay = named(&router, "relay");
        let leaf1 = via(&router, &relay, "leaf1").unwrap();
        let _leaf2 = via(&router, &relay, "leaf2").unwrap();
        let events: Latch<(String, LossKind)> = Latch::new();
        let (s2, e2) = (seen.clone(), events.clone());
        router
            .on_disconnect(move |context: &Context, loss: &Loss| {
                s2.lock()
                    .unwrap()
                    .push((context.name().to_string(), loss.kind.clone()));
                let _ = e2.put((context.name().to_string(), loss.kind.clone()));
            })
            .detach();
        let leaf1_lost: Latch<Loss> = Latch::new();
        let l2 = leaf1_lost.clone();
        let _leaf1_watch = leaf1.on_disconnect(move |loss| {
            let _ = l2.put(loss.clone());
        });

        sigkill(relay.call(pid::remote, ()).unwrap());
        let mut names: Vec<String> = take(&events, 3, "router disconnect")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        assert_eq!(names, ["leaf1", "leaf2", "relay"]);
        let loss = leaf1_lost
            .get_timeout(WAIT)
            .expect("leaf1's own disconnect");
        assert_eq!(loss.kind, LossKind::Behind("relay".into()), "{loss}");
        // A context lost already: a late listener hears of it at once, once.
        let late = Arc::new(AtomicU32::new(0));
        let l3 = late.clone();
        let _late = leaf1.on_disconnect(move |_| {
            l3.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(late.load(Ordering::SeqCst), 1);
    })
    .unwrap();
    // Shutting the router down later fires nothing more for them.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "disconnect fired more than once: {seen:?}");
    let relay_kind = &seen.iter().find(|(n, _)| n == "relay").unwrap().1;
    assert!(
        matches!(relay_kind, LossKind::Signaled(9) | LossKind::Closed),
        "relay: {relay_kind:?}"
    );
    for (name, kind) in seen.iter().filter(|(n, _)| n != "relay") {
        assert_eq!(kind, &LossKind::Behind("relay".into()), "{name}");
    }
}

#[test]
fn shutdown_and_exit_fire_in_order() {
    let order: Arc<Mutex<Vec<String>>> = Arc::default();
    let push = |label: &'static str| {
        let o = order.clone();
        move || o.lock().unwrap().push(label.to_string())
    };
    Router::with(|router| {
        let child = named(&router, "kid");
        let stream = router.stream_of(&child).expect("a stream to the child");
        assert_eq!(stream.name(), "kid");
        let broker = router.broker();
        broker.on_exit(push("broker exit")).detach();
        stream
            .on_disconnect({
                let p = push("stream disconnect");
                move |_| p()
            })
            .detach();
        router
            .on_disconnect({
                let p = push("router disconnect");
                move |_, _| p()
            })
            .detach();
        stream.on_shutdown(push("stream shutdown")).detach();
        router.on_shutdown(push("router shutdown")).detach();
        broker.on_shutdown(push("broker shutdown")).detach();
        broker
            .on_before_shutdown(push("broker before_shutdown"))
            .detach();
        stream
            .on_exit({
                let o = order.clone();
                move |status| {
                    assert!(status.success(), "the child exited with {status}");
                    o.lock().unwrap().push("stream exit".into())
                }
            })
            .detach();
    })
    .unwrap();
    let order = order.lock().unwrap().clone();
    // The child's exit is reaped before its stream's loss is reported.
    let expected = [
        "broker before_shutdown",
        "router shutdown",
        "broker shutdown",
        "stream shutdown",
        "stream exit",
        "router disconnect",
        "stream disconnect",
        "broker exit",
    ];
    assert_eq!(order, expected);
}

#[test]
fn dropping_a_subscription_stops_delivery() {
    Router::with(|router| {
        let a = Arc::new(AtomicU32::new(0));
        let heard: Latch<String> = Latch::new();
        let a2 = a.clone();
        let sub_a = router.on_disconnect(move |_, _| {
            a2.fetch_add(1, Ordering::SeqCst);
        });
        let h2 = heard.clone();
        let _sub_b = router.on_disconnect(move |c, _| {
            let _ = h2.put(c.name().to_string());
        });
        // Registered after: a listener runs after those before it.
        let first = named(&router, "first");
        first.shutdown(true).unwrap();
        assert_eq!(take(&heard, 1, "first"), ["first"]);
        assert_eq!(a.load(Ordering::SeqCst), 1);
        signal::unlisten(sub_a);
        let second = named(&router, "second");
        second.shutdown(true).unwrap();
        assert_eq!(take(&heard, 1, "second"), ["second"]);
        assert_eq!(a.load(Ordering::SeqCst), 1, "a dropped listener still ran");
    })
    .unwrap();
}

#[test]
fn a_panicking_listener_is_caught_and_the_others_run() {
    Router::with(|router| {
        let _bad = router.on_disconnect(|_, _| panic!("listener bug"));
        let heard: Latch<String> = Latch::new();
        let h2 = heard.clone();
        let _good = router.on_disconnect(move |c, _| {
            let _ = h2.put(c.name().to_string());
        });
        let one = named(&router, "one");
        one.shutdown(true).unwrap();
        assert_eq!(take(&heard, 1, "after a panicking listener"), ["one"]);
        // The broker survived it: new children work.
        let two = named(&router, "two");
        assert_eq!(two.call(add::remote, (2, 3)).unwrap(), 5);
        assert!(!router.broker().is_shutting_down());
    })
    .unwrap();
}

#[test]
fn user_events_with_listen_and_fire() {
    Router::with(|router| {
        let me = Context::local(&router);
        let other = Context::new(&router, 4242, Some("elsewhere"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let g2 = got.clone();
        let sub = signal::listen(&me, "progress", move |p: &u32| g2.lock().unwrap().push(*p));
        assert_eq!(signal::fire(&me, "progress", &10u32), 1);
        // Another object, another name, or another type: not delivered.
        assert_eq!(signal::fire(&other, "progress", &20u32), 0);
        assert_eq!(signal::fire(&me, "other", &30u32), 0);
        signal::fire(&me, "progress", &"text");
        signal::unlisten(sub);
        assert_eq!(signal::fire(&me, "progress", &40u32), 0);
        assert_eq!(*got.lock().unwrap(), [10]);
        // Built-in events go through the same mechanism.
        let child = router.local(LocalOptions::new()).unwrap();
        let lost: Latch<String> = Latch::new();
        let l2 = lost.clone();
        let _s = signal::listen(&child, signal::DISCONNECT, move |loss: &Loss| {
            let _ = l2.put(loss.text.clone());
        });
        child.shutdown(true).unwrap();
        let text = lost.get_timeout(WAIT).expect("a disconnect via listen");
        assert!(text.contains(child.name()), "{text}");
    })
    .unwrap();
}
