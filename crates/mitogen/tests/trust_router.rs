//! The router's trust boundary (issue 8; IDs from the security review):
//! each test runs the attack a compromised child can make — hand-built
//! messages sent with the public API from inside a child — and checks that
//! it fails, is logged by name, and that the victim still answers its real
//! caller. Own binary: installs a global log capture.

mod common;
mod hostile;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use hostile::*;
use mitogen::handle::{CALL_FUNCTION, DEL_ROUTE, FETCH_BINARY};
use mitogen::{
    Error, LocalOptions, Message, Receiver, ReceiverOptions, Router, Sender, StreamError,
};
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);

// ---- hostile remote functions: what a compromised child can do ----

/// Tell our parent that context `id` is gone, under a new name.
#[mitogen::remote]
fn evil_del_route(router: &Router, id: u32, name: String) {
    let body = (id, name, "forged".to_string(), mitogen::LossKind::Closed);
    let mut m = Message::pickled(&body, DEL_ROUTE).unwrap();
    m.dst_id = router.parent_ids()[0];
    router.route(m).unwrap();
}

/// A `CALL_FUNCTION` of `touch(path)` into `victim`, claiming the master's
/// authority (`src_id = auth_id = 0`).
#[mitogen::remote]
fn evil_spoof_call(router: &Router, victim: u32, path: String) {
    let mut body = mitogen_wire::encode(&(touch::remote.name(), None::<u64>)).unwrap();
    mitogen_wire::encode_into(&(path,), &mut body).unwrap();
    let mut m = Message::new(CALL_FUNCTION, body);
    m.dst_id = victim;
    m.src_id = 0;
    m.auth_id = 0;
    router.__route_unstamped(m);
}

/// Send a forged result and a forged dead reply to `handle` of `dst`.
#[mitogen::remote]
fn evil_reply(router: &Router, dst: u32, handle: u32, body: Vec<u8>) {
    let mut m = Message::new(handle, body);
    m.dst_id = dst;
    router.route(m).unwrap();
    let mut dead = Message::dead("forged: your context is gone", handle);
    dead.dst_id = dst;
    router.route(dead).unwrap();
}

/// Open a receiver for the parent's `FETCH_BINARY` reply, let the master
/// arrange a forgery into it, then fetch: returns what arrived.
#[mitogen::remote]
fn fetch_after_forgery(router: &Router, tell: Sender, machine: String) -> Vec<u8> {
    let parent = router.parent_ids()[0];
    let rx = Receiver::with_options(
        router,
        ReceiverOptions {
            respondent: Some(parent),
            oneshot: true,
            ..Default::default()
        },
    );
    let go = Receiver::new(router);
    tell.send(&(rx.handle(), go.handle())).unwrap();
    go.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut m = Message::new(FETCH_BINARY, machine.into_bytes());
    m.dst_id = parent;
    m.reply_to = rx.handle();
    router.route(m).unwrap();
    rx.recv_timeout(Duration::from_secs(30)).unwrap().data
}

/// The victim's side effect: proves a call ran.
#[mitogen::remote]
fn touch(path: String) {
    std::fs::write(path, b"ran").unwrap();
}

// ---- log capture ----

/// Every ERROR event of this process, as text (forwarded child records included).
fn errors() -> &'static Arc<Mutex<Vec<String>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let layer = Capture(log.clone());
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .unwrap();
        log
    })
}

struct Capture(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, f: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{}={value:?} ", f.name());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut t = Text(String::new());
            event.record(&mut t);
            self.0.lock().unwrap().push(t.0);
        }
    }
}

/// Wait (bounded) for an error log line containing every one of `parts`.
fn logged(parts: &[&str]) -> String {
    let mut found = String::new();
    mitogen_testkit::wait_for(WAIT, &format!("an error log with {parts:?}"), || {
        let log = errors().lock().unwrap();
        match log.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
            Some(l) => {
                found = l.clone();
                true
            }
            None => false,
        }
    });
    found
}

/// A fresh scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("mitogen-trust.{tag}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn marker(dir: &Scratch, name: &str) -> PathBuf {
    dir.0.join(name)
}

// ---- C1 ----

#[test]
fn c1_add_route_for_master_refused() {
    errors();
    Router::with(|router| {
        let attacker = named(&router, "c1-attacker");
        let victim = named(&router, "c1-victim");
        let dir = Scratch::new("c1");
        let path = marker(&dir, "forged-call-ran");
        attacker
            .call(evil_add_route::remote, (vec![0], "evil".into()))
            .unwrap();
        attacker
            .call(
                evil_spoof_call::remote,
                (victim.context_id(), path.display().to_string()),
            )
            .unwrap();
        // Calls into the victim run in order: a forwarded forgery would have run by now.
        assert_eq!(victim.call(my_id::remote, ()).unwrap(), victim.context_id());
        assert!(!path.exists(), "the forged call ran in the victim");
        let line = logged(&["refused ADD_ROUTE", "c1-attacker", "master's id"]);
        assert!(line.contains("id 0"), "{line}");
        logged(&["bad auth_id 0", "c1-attacker"]);
        assert_eq!(attacker.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

#[test]
fn c1_add_route_for_sibling_refused() {
    errors();
    Router::with(|router| {
        let attacker = named(&router, "c1s-attacker");
        let victim = named(&router, "c1s-victim");
        attacker
            .call(
                evil_add_route::remote,
                (vec![victim.context_id(), 4_000_000], "evil".into()),
            )
            .unwrap();
        // Still routed to the real victim, under its real name.
        assert_eq!(victim.call(my_id::remote, ()).unwrap(), victim.context_id());
        assert_eq!(
            router.context_by_id(victim.context_id()).name(),
            "c1s-victim"
        );
        logged(&["refused ADD_ROUTE", "c1s-attacker", "subtree of c1s-victim"]);
        logged(&[
            "refused ADD_ROUTE",
            "c1s-attacker",
            "id 4000000",
            "never granted",
        ]);
        // An id nobody allocated stays unroutable.
        let e = router
            .context_by_id(4_000_000)
            .call(add::remote, (1, 1))
            .unwrap_err();
        assert!(e.to_string().contains("no route"), "{e}");
    })
    .unwrap();
}

#[test]
fn c1_leaf_claims_relay_parent_and_sibling_ids_refused() {
    errors();
    Router::with(|router| {
        let relay = named(&router, "c1r-relay");
        let leaf = via(&router, &relay, "c1r-leaf").unwrap();
        let sibling = via(&router, &relay, "c1r-sibling").unwrap();
        let dir = Scratch::new("c1r");
        let path = marker(&dir, "forged-call-ran");
        leaf.call(
            evil_add_route::remote,
            (
                vec![0, relay.context_id(), sibling.context_id(), 3_999_999],
                "evil".into(),
            ),
        )
        .unwrap();
        leaf.call(
            evil_spoof_call::remote,
            (sibling.context_id(), path.display().to_string()),
        )
        .unwrap();
        for l in [
            logged(&["refused ADD_ROUTE", "c1r-leaf", "master's id"]),
            logged(&["refused ADD_ROUTE", "c1r-leaf", "own id"]),
            logged(&["refused ADD_ROUTE", "c1r-leaf", "subtree of c1r-sibling"]),
            logged(&["refused ADD_ROUTE", "c1r-leaf", "never granted"]),
        ] {
            assert!(l.contains("c1r-relay"), "logged by the relay: {l}");
        }
        // Names: bounded and printable, even for an id the leaf really owns.
        let own = leaf.call(own_fresh_id::remote, ()).unwrap();
        leaf.call(evil_add_route::remote, (vec![own], "x".repeat(10_000)))
            .unwrap();
        logged(&["refused ADD_ROUTE", "c1r-leaf", "10000 bytes exceeds 256"]);
        leaf.call(evil_add_route::remote, (vec![own], "a\nb".into()))
            .unwrap();
        logged(&["refused ADD_ROUTE", "c1r-leaf", "control characters"]);
        // The tree keeps working, and the forged call never ran.
        assert_eq!(
            sibling.call(my_id::remote, ()).unwrap(),
            sibling.context_id()
        );
        assert_eq!(relay.call(my_id::remote, ()).unwrap(), relay.context_id());
        assert_eq!(leaf.call(my_id::remote, ()).unwrap(), leaf.context_id());
        assert!(!path.exists(), "the forged call ran in the sibling");
    })
    .unwrap();
}

#[test]
fn c1_del_route_for_sibling_refused() {
    errors();
    Router::with(|router| {
        let attacker = named(&router, "c1d-attacker");
        let victim = named(&router, "c1d-victim");
        attacker
            .call(
                evil_del_route::remote,
                (victim.context_id(), "renamed".into()),
            )
            .unwrap();
        logged(&["refused DEL_ROUTE", "c1d-attacker", "c1d-victim"]);
        assert_eq!(victim.call(my_id::remote, ()).unwrap(), victim.context_id());
        assert_eq!(
            router.context_by_id(victim.context_id()).name(),
            "c1d-victim"
        );
    })
    .unwrap();
}

// ---- H1 ----

#[test]
fn h1_forged_call_results_refused() {
    errors();
    Router::with(|router| {
        let attacker = named(&router, "h1-attacker");
        let victim = named(&router, "h1-victim");
        let tell = Receiver::new(&router);
        let call = victim
            .call_async(wait_for_poke::remote, (tell.to_sender(),))
            .unwrap();
        let poke_handle: u32 = tell.recv_timeout(WAIT).unwrap().unpickle().unwrap();
        // A forged REPLY_OK "666" and a forged dead reply for the pending call.
        let mut forged = vec![0u8];
        mitogen_wire::encode_into(&"666".to_string(), &mut forged).unwrap();
        attacker
            .call(evil_reply::remote, (0, call.handle(), forged))
            .unwrap();
        logged(&["waits for a reply from h1-victim", "not from h1-attacker"]);
        Sender::new(victim.clone(), poke_handle)
            .send(&"the real result")
            .unwrap();
        assert_eq!(call.get_timeout(WAIT).unwrap(), "the real result");
        assert_eq!(attacker.call(add::remote, (2, 2)).unwrap(), 4);
    })
    .unwrap();
}

#[test]
fn h1_poisoned_binary_refused() {
    errors();
    let dir = Scratch::new("h1bin");
    let real: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.0.join("h1-aarch64-prog");
    std::fs::write(&path, &real).unwrap();
    Router::with(|router| {
        router.add_binary("h1arch", &path).unwrap();
        let relay = named(&router, "h1b-relay");
        let attacker = named(&router, "h1b-attacker");
        let tell = Receiver::new(&router);
        let fetch = relay
            .call_async(
                fetch_after_forgery::remote,
                (tell.to_sender(), "h1arch".into()),
            )
            .unwrap();
        // Handles, not a `Sender`: several masters share this test process,
        // and a deserialized `Sender` belongs to the first one.
        let (handle, go): (u32, u32) = tell.recv_timeout(WAIT).unwrap().unpickle().unwrap();
        attacker
            .call(
                evil_reply::remote,
                (
                    relay.context_id(),
                    handle,
                    b"#!/bin/sh\necho owned\n".to_vec(),
                ),
            )
            .unwrap();
        Sender::new(relay.clone(), go).send(&()).unwrap();
        let got = fetch.get_timeout(WAIT).unwrap();
        assert!(got == real, "the relay stored a forged binary");
        // The relay does not know the attacker's name: it logs its id.
        let attacker_id = format!("(id {})", attacker.context_id());
        logged(&["h1b-relay", "waits for a reply from master", &attacker_id]);
    })
    .unwrap();
}

// ---- M1 ----

#[test]
fn m1_allocate_id_flood_refused_and_ids_never_reused() {
    errors();
    Router::with(|router| {
        let attacker = named(&router, "m1-attacker");
        let (granted, refused) = attacker.call(evil_allocate_flood::remote, (1100,)).unwrap();
        assert!(
            granted.len() < 64 && refused.len() + granted.len() == 1100,
            "{} granted, {} refused",
            granted.len(),
            refused.len()
        );
        assert!(
            refused
                .iter()
                .all(|r| r.contains("already holds 64 id blocks")),
            "{:?}",
            refused.first()
        );
        logged(&["refused ALLOCATE_ID", "m1-attacker", "64 id blocks"]);
        // Blocks are disjoint, and a new context gets an id no block held.
        let mut blocks = granted.clone();
        blocks.sort();
        assert!(blocks.windows(2).all(|w| w[0].1 <= w[1].0), "overlap");
        let fresh = named(&router, "m1-fresh");
        assert!(granted
            .iter()
            .all(|(s, e)| !(*s..*e).contains(&fresh.context_id())));
        assert_eq!(fresh.call(add::remote, (1, 1)).unwrap(), 2);
        assert_eq!(attacker.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}

// ---- L9 ----

#[test]
fn l9_max_message_size_beyond_header_refused() {
    errors(); // installed before any router installs the default subscriber
    Router::with(|router| {
        let before = router.max_message_size();
        let e = router
            .set_max_message_size(u32::MAX as usize + 1)
            .unwrap_err();
        assert!(
            matches!(e, Error::Stream(StreamError::InvalidOptions(ref t)) if t.contains("4294967295")),
            "{e}"
        );
        assert_eq!(router.max_message_size(), before);
        router.set_max_message_size(u32::MAX as usize).unwrap();
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(child.call(add::remote, (2, 2)).unwrap(), 4);
    })
    .unwrap();
}
