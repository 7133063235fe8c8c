//! Issue 8, trust boundary, L11: a child's forwarded log records are
//! re-emitted under the sender's real name, one line each, bounded; a `via`
//! context can't rename others through its answers. Own binary: it installs
//! the global subscriber.

mod common;
mod hostile;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use hostile::*;
use mitogen::handle::{CALL_FUNCTION, FORWARD_LOG};
use mitogen::{Context as Ctx, Latch, LocalOptions, Message, Router};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One captured event: its target and its fields, as raw text.
type Event = BTreeMap<String, String>;

struct Capture(Latch<Event>);

struct Fields(Event);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The message is `fmt::Arguments`, whose Debug form is the raw text.
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().into(), s);
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields(Event::new());
        f.0.insert("target".into(), event.metadata().target().into());
        event.record(&mut f);
        let _ = self.0.put(f.0);
    }
}

/// Runs in a (hostile) child: send the master bytes that are no record.
#[mitogen::remote]
fn forge_garbage(router: &Router) {
    let mut msg = Message::new(FORWARD_LOG, vec![0xff; 3]);
    msg.dst_id = 0;
    router.route(msg).unwrap();
}

/// Wait for the first event `want` accepts.
fn wait_for(seen: &Latch<Event>, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    loop {
        match seen.get_deadline(deadline) {
            Ok(e) if want(&e) => return e,
            Ok(e) => log.push(e),
            Err(_) => panic!("no event for {what} within 10 s; saw {log:#?}"),
        }
    }
}

fn named(name: &str) -> LocalOptions {
    LocalOptions::new().remote_name(name)
}

/// Two children of the master: a victim and a hostile one.
fn victim_and_hostile(router: &Router) -> (Ctx, Ctx) {
    let victim = router.local(named("victim")).unwrap();
    let hostile = router.local(named("hostile")).unwrap();
    (victim, hostile)
}

fn field<'a>(e: &'a Event, name: &str) -> &'a str {
    e.get(name).map(String::as_str).unwrap_or_default()
}

/// Every event of this process, installed once, before any router would
/// install the default subscriber.
fn captured() -> &'static Latch<Event> {
    static SEEN: std::sync::OnceLock<Latch<Event>> = std::sync::OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Latch::new();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(Capture(seen.clone())),
        )
        .unwrap();
        seen
    })
}

#[test]
fn l11_child_cannot_log_as_another_context() {
    let seen = captured();
    Router::with(|router| {
        let (victim, hostile) = victim_and_hostile(&router);
        let deep = router.local(named("deep").via(&hostile)).unwrap();

        // A direct child claims to be the victim, and smuggles a second line.
        let forged = "forged-1 ok\nERROR mitogen::child: context=\"victim\" forged-2 rm -rf";
        hostile
            .call(
                forge_record::remote,
                (None, 1, "app".into(), forged.into(), "victim".into()),
            )
            .unwrap();
        let e = wait_for(seen, "the forged record", |e| {
            field(e, "message").contains("forged-1")
        });
        // A plain target is kept; the sender is named whatever it claims.
        assert_eq!(field(&e, "target"), "app", "{e:?}");
        assert_eq!(field(&e, "context"), hostile.name(), "{e:?}");
        assert_eq!(
            field(&e, "context_id"),
            hostile.context_id().to_string(),
            "{e:?}"
        );
        assert_eq!(field(&e, "context"), "hostile", "{e:?}");
        let m = field(&e, "message");
        assert!(!m.contains('\n'), "raw newline re-emitted: {m:?}");
        assert!(
            m.contains("forged-1 ok\\nERROR mitogen::child"),
            "newline not escaped: {m:?}"
        );

        // Through a relay: a raw-output record claiming the relay's name is
        // still the grandchild's, and its oversized fields are cut.
        let huge = format!("forged-3 {}\r\x1b[2J", "x".repeat(200 * 1024));
        deep.call(
            forge_record::remote,
            (None, 0, "stdout".repeat(100), huge, "hostile".into()),
        )
        .unwrap();
        let e = wait_for(seen, "the relayed record", |e| {
            field(e, "message").starts_with("forged-3")
        });
        // Not a stream we name: the generic output target, the claim cut.
        assert_eq!(field(&e, "target"), "mitogen::output", "{e:?}");
        assert_eq!(field(&e, "context"), deep.name());
        assert_eq!(field(&e, "context"), "deep");
        let m = field(&e, "message");
        assert!(m.len() <= 64 * 1024 + 64, "message of {} bytes", m.len());
        assert!(
            m.ends_with(" bytes cut]"),
            "no cut marker: {:?}",
            &m[m.len() - 40..]
        );
        let stream = field(&e, "stream");
        assert!(stream.len() <= 256 + 64, "stream of {} bytes", stream.len());
        assert!(stream.ends_with(" bytes cut]"), "{stream}");

        // Bytes that are no record: a logged refusal naming the sender.
        hostile.call(forge_garbage::remote, ()).unwrap();
        let e = wait_for(seen, "the refusal", |e| {
            field(e, "message").contains("refused a log record")
        });
        assert!(field(&e, "message").contains("from hostile"), "{e:?}");

        // Honest output still arrives under the right name.
        victim
            .call(print_and_log::remote, ("still here".into(),))
            .unwrap();
        let e = wait_for(seen, "the victim's own stdout", |e| {
            field(e, "message") == "stdout says still here"
        });
        assert_eq!(field(&e, "context"), "victim", "{e:?}");
        assert_eq!(field(&e, "target"), "mitogen::stdout", "{e:?}");

        // A target that is no plain path can't pose as one: it is
        // re-emitted as mitogen::child with the claim in `origin`.
        hostile
            .call(
                forge_record::remote,
                (
                    None,
                    1,
                    "app: ERROR master".into(),
                    "forged-4".into(),
                    "victim".into(),
                ),
            )
            .unwrap();
        let e = wait_for(seen, "the odd target", |e| {
            field(e, "message") == "forged-4"
        });
        assert_eq!(field(&e, "target"), "mitogen::child", "{e:?}");
        assert_eq!(field(&e, "origin"), "app: ERROR master", "{e:?}");
        assert_eq!(field(&e, "context"), "hostile", "{e:?}");

        // The tree keeps working.
        for ctx in [&victim, &hostile, &deep] {
            assert_eq!(ctx.call(add::remote, (2, 2)).unwrap(), 4, "{ctx:?}");
        }
    })
    .unwrap();
}

/// The layout of a successful `connect_here` answer (a private enum's first
/// variant), written the way any via context could.
#[derive(Serialize)]
enum Connected {
    Ok(u32, String),
}

/// Runs in a (hostile) via context: from now on, answer every call with
/// "connected: context `id`, named `name`" instead of running it.
#[mitogen::remote]
fn answer_every_call_with(router: &Router, id: u32, name: String) {
    let r = router.clone();
    // Take the call handler's place (a taken handle is refused).
    router.del_handler(mitogen::handle::CALL_FUNCTION);
    router
        .add_handler(
            move |call: Message| {
                let mut body = vec![0]; // REPLY_OK
                body.extend(mitogen_wire::encode(&Connected::Ok(id, name.clone())).unwrap());
                let mut reply = Message::new(call.reply_to, body);
                reply.dst_id = call.src_id;
                let _ = r.route(reply);
            },
            Some(CALL_FUNCTION),
            true,
            None,
            None,
        )
        .expect("the call handler was removed");
}

#[test]
fn l11_via_cannot_rename_another_context() {
    captured();
    Router::with(|router| {
        let (victim, hostile) = victim_and_hostile(&router);
        hostile
            .call(
                answer_every_call_with::remote,
                (victim.context_id(), "evil".into()),
            )
            .unwrap();
        // "Connecting" through it would hand back the victim: refused, since
        // the victim is not routed through the via.
        let e = router.local(LocalOptions::new().via(&hostile)).unwrap_err();
        assert!(e.to_string().contains("not routed through it"), "{e}");
        let looked_up = router.context_by_id(victim.context_id());
        assert_eq!(looked_up.name(), "victim", "the via renamed the victim");
        // The victim still answers its real caller.
        assert_eq!(victim.call(add::remote, (2, 3)).unwrap(), 5);
    })
    .unwrap();
}
