//! Adversarial review of the router trust code (issue 8): attacks a
//! compromised child can still make after the C1/H1/M1/L11 fixes. Each test
//! performs the attack with the public API from inside a child, and asserts
//! what must hold once the hole is closed: the attack fails, and the tree
//! keeps working. Own binary: installs a global event capture.

mod common;
mod hostile;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use hostile::*;
use mitogen::handle::{ADD_ROUTE, ALLOCATE_ID};
use mitogen::{Context, Error, Message, Receiver, ReceiverOptions, Router, Sender};
use serde::Serialize;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);

/// The memory test measures this process's RSS: it runs alone.
static MEASURE: std::sync::RwLock<()> = std::sync::RwLock::new(());

// ---- hostile remote functions: what a compromised child can do ----

/// An inbox that never answers, but tells `tell` of every message.
#[mitogen::remote]
fn open_tattling_inbox(router: &Router, tell: Sender) -> Sender {
    let handle = router
        .add_handler(
            move |_msg: Message| {
                let _ = tell.send(&());
            },
            None,
            true,
            None,
            None,
        )
        .expect("a fresh handle is never refused");
    Sender::new(Context::local(router), handle)
}

// ---- event capture: every event of this process, as field maps ----

type Event = BTreeMap<String, String>;

fn events() -> &'static Arc<Mutex<Vec<Event>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<Event>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Capture(log.clone())),
        )
        .unwrap();
        log
    })
}

struct Capture(Arc<Mutex<Vec<Event>>>);

struct Fields(Event);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, f: &tracing::field::Field, value: &str) {
        self.0.insert(f.name().into(), value.into());
    }
    fn record_debug(&mut self, f: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(f.name().into(), s);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields(Event::new());
        f.0.insert("target".into(), event.metadata().target().into());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
}

/// Wait (bounded) for an event whose message contains `needle`.
fn event_with(needle: &str) -> Event {
    let mut found = None;
    mitogen_testkit::wait_for(WAIT, &format!("an event with {needle:?}"), || {
        found = events()
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.get("message").is_some_and(|m| m.contains(needle)))
            .cloned();
        found.is_some()
    });
    found.unwrap()
}

// ---- L11: names ----

/// A child's own id is granted to its stream, so `ADD_ROUTE(own id, name)`
/// passes every check and renames it in the master; its log records are then
/// re-emitted under the victim's name, and errors about it name the victim.
#[test]
fn l11_child_cannot_rename_itself_after_a_sibling() {
    events();
    let _shared = MEASURE.read().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let victim = named(&router, "r11-victim");
        let hostile = named(&router, "r11-hostile");
        hostile
            .call(
                evil_add_route::remote,
                (vec![hostile.context_id()], "r11-victim".into()),
            )
            .unwrap();
        hostile
            .call(
                forge_record::remote,
                (
                    Some(hostile.context_id()),
                    1,
                    "app".into(),
                    "r11-self-renamed says hi".into(),
                    String::new(),
                ),
            )
            .unwrap();
        let e = event_with("r11-self-renamed says hi");
        assert_eq!(
            router.context_by_id(hostile.context_id()).name(),
            "r11-hostile",
            "the child renamed itself in the master"
        );
        assert_ne!(
            e.get("context").map(String::as_str),
            Some("r11-victim"),
            "a record of the hostile child was re-emitted as the victim's: {e:?}"
        );
        assert_eq!(victim.call(add::remote, (1, 2)).unwrap(), 3);
        assert_eq!(hostile.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

/// A child names an id of its own block like its sibling and logs from it:
/// the master re-emits the record as the sibling's. Names are not unique
/// (two hosts' `sudo` contexts may share one), so the re-emitted record
/// should carry the sender's verified id.
#[test]
fn l11_granted_id_named_like_a_sibling_cannot_log_as_it() {
    events();
    let _shared = MEASURE.read().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let victim = named(&router, "r11b-victim");
        let hostile = named(&router, "r11b-hostile");
        let id = hostile.call(own_fresh_id::remote, ()).unwrap();
        hostile
            .call(evil_add_route::remote, (vec![id], "r11b-victim".into()))
            .unwrap();
        hostile
            .call(
                forge_record::remote,
                (
                    Some(id),
                    1,
                    "app".into(),
                    "r11b-alias says hi".into(),
                    String::new(),
                ),
            )
            .unwrap();
        let e = event_with("r11b-alias says hi");
        let context = e.get("context").map(String::as_str);
        let context_id = e.get("context_id").map(String::as_str);
        let real = id.to_string();
        assert!(
            context != Some("r11b-victim") || context_id == Some(real.as_str()),
            "a record of the hostile child was re-emitted as the victim's, \
             with nothing to tell them apart: {e:?}"
        );
        assert_eq!(victim.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

// ---- C1 through a via answer ----

/// The layout of a successful `connect_here` answer (a private enum's first
/// variant), written the way any via context could.
#[derive(Serialize)]
enum Connected {
    Ok(u32, String),
}

/// Runs in a hostile via context: from now on, answer every call with
/// "connected: context `id`" instead of running it.
#[mitogen::remote]
fn answer_every_call_with(router: &Router, id: u32) {
    let r = router.clone();
    // Take the call handler's place (a taken handle is refused).
    router.del_handler(mitogen::handle::CALL_FUNCTION);
    router
        .add_handler(
            move |call: Message| {
                let mut body = vec![0]; // REPLY_OK
                body.extend(mitogen_wire::encode(&Connected::Ok(id, "new".into())).unwrap());
                let mut reply = Message::new(call.reply_to, body);
                reply.dst_id = call.src_id;
                let _ = r.route(reply);
            },
            Some(mitogen::handle::CALL_FUNCTION),
            true,
            None,
            None,
        )
        .expect("the call handler was removed");
}

/// A via context answers "connected" with the id of a context outside its
/// subtree (a sibling: think root on another host). The master hands the
/// user that context as the new one, so every call the user meant for the
/// context made through the via (one the via controls anyway) runs in the
/// victim instead, with the master's authority. The answer should be
/// checked: the id must be routed through the via's own stream (and not be
/// the via itself).
#[test]
fn c1_via_answer_cannot_hand_back_a_context_outside_its_subtree() {
    events();
    let _shared = MEASURE.read().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let victim = named(&router, "cv-victim");
        let hostile = named(&router, "cv-hostile");
        hostile
            .call(answer_every_call_with::remote, (victim.context_id(),))
            .unwrap();
        match via(&router, &hostile, "cv-new") {
            Ok(got) => assert_ne!(
                got.context_id(),
                victim.context_id(),
                "the via handed back the victim ({got:?}) as the context it made"
            ),
            Err(e) => eprintln!("refused as it should be: {e}"),
        }
        assert_eq!(victim.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

// ---- M1: per-hop id allowances ----

/// A leaf asks its relay for ids until the master's allowance for the
/// relay's whole stream (1024 blocks) is spent: the relay's other children
/// can then no longer start contexts. The relay forwards every request while
/// none is granted yet, so its own per-child cap is not applied to a burst.
#[test]
fn m1_leaf_cannot_exhaust_its_relays_id_allowance() {
    events();
    let _shared = MEASURE.read().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let relay = named(&router, "m1r-relay");
        let hostile = via(&router, &relay, "m1r-hostile").unwrap();
        let sibling = via(&router, &relay, "m1r-sibling").unwrap();
        let granted = hostile
            .call(evil_allocate_flood::remote, (1100,))
            .unwrap()
            .0
            .len();
        assert!(granted > 0, "no block granted at all");
        // An honest sibling (no id block yet) starts a child of its own.
        match via(&router, &sibling, "m1r-nephew") {
            Ok(nephew) => assert_eq!(nephew.call(add::remote, (1, 1)).unwrap(), 2),
            Err(e) => {
                panic!("a leaf that took {granted} id blocks starved its sibling of ids: {e}")
            }
        }
        assert_eq!(relay.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}

// ---- hangs of honest callers ----

/// A leaf behind a relay waits for a reply from a context in another
/// subtree (here a direct child of the master), which dies. The master tells
/// the relay (DEL_ROUTE), but the relay never recorded that its leaf talked
/// to that context (it records only traffic it sends down, not up), so the
/// leaf is not told and waits out its own timeout. Pre-existing; since H1,
/// a "routing loop" dead reply from a hop that is neither the respondent,
/// a parent of the waiter nor its first hop is refused too, so that path
/// can no longer wake it either.
#[test]
fn cousin_waiting_on_a_lost_context_is_told() {
    events();
    let _shared = MEASURE.read().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let relay = named(&router, "cw-relay");
        let a = via(&router, &relay, "cw-a").unwrap();
        let b = named(&router, "cw-gone-b");
        let b_pid = b.call(pid::remote, ()).unwrap();
        let heard = Receiver::new(&router);
        let silent = b
            .call(open_tattling_inbox::remote, (heard.to_sender(),))
            .unwrap();
        // a waits (up to 10 s) for a reply b will never send.
        let waiting = a.call_async(poke::remote, (silent,)).unwrap();
        // b tells us when the poke has arrived; only then does b die.
        heard.recv_timeout(WAIT).unwrap();
        let started = Instant::now();
        sigkill(b_pid);
        match waiting.get_timeout(WAIT) {
            Err(Error::Call(e)) => assert!(
                e.message.contains("cw-gone-b") && e.message.contains("disconnected"),
                "{e}"
            ),
            other => panic!("expected the poke to fail, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a learnt of b's loss after {:?} (its own timeout is 10 s)",
            started.elapsed()
        );
        assert_eq!(a.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}

// ---- M1/C1: memory held by announced routes ----

/// Take up to `blocks` id blocks and announce every id in them under a
/// 256-byte name; how many announcements were sent.
#[mitogen::remote]
fn evil_announce_all(router: &Router, blocks: u32) -> u32 {
    let parent = router.parent_ids()[0];
    let mut n = 0;
    for b in 0..blocks {
        let rx = Receiver::with_options(
            router,
            ReceiverOptions {
                respondent: Some(parent),
                oneshot: true,
                ..Default::default()
            },
        );
        let mut m = Message::new(ALLOCATE_ID, Vec::new());
        m.dst_id = parent;
        m.reply_to = rx.handle();
        router.route(m).unwrap();
        let Ok(reply) = rx.recv_timeout(Duration::from_secs(30)) else {
            break;
        };
        let (start, end): (u32, u32) = reply.unpickle().unwrap();
        for id in start..end {
            let name = format!("{b:05}-{id:010}-{}", "n".repeat(256 - 17));
            let mut m = Message::pickled(&(id, name), ADD_ROUTE).unwrap();
            m.dst_id = parent;
            router.route(m).unwrap();
            n += 1;
        }
    }
    n
}

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A direct child takes every id block the master allows it (1024 blocks
/// of 1000 ids) and announces each id under a 256-byte name: every
/// announcement is valid, and the master keeps a route and a name for each.
/// Measured: 1,023,000 routes, +366 MiB of master RSS in 19 s, per child
/// (and as much again in every relay on the way). The table a child can
/// fill should be bounded far lower.
#[test]
fn m1_routes_announced_by_one_child_are_bounded() {
    events();
    let _alone = MEASURE.write().unwrap_or_else(|p| p.into_inner());
    Router::with(|router| {
        let hostile = named(&router, "mem-hostile");
        let before = rss_kib();
        let sent = hostile.call(evil_announce_all::remote, (1100,)).unwrap();
        // A round trip after the flood: every announcement has been handled.
        assert_eq!(hostile.call(add::remote, (1, 1)).unwrap(), 2);
        let grown = rss_kib().saturating_sub(before);
        assert!(
            grown < 64 * 1024,
            "{sent} announcements from one child grew the master by {} MiB",
            grown / 1024
        );
        assert_eq!(hostile.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}
