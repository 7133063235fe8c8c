//! Calls and waits as a new user meets them (issue 12, points 3–8 and 12,
//! and the Select/Latch/CallError parity items): bounded calls, typed
//! Select results, refusals in words, readable error texts, `?` on the
//! user's own errors in `main`, the end of a stream versus a loss, and one
//! timeout shape everywhere.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mitogen::{
    ChannelError, Error, ExternalContext, GetTimeoutError, Latch, LocalOptions, LossKind, Message,
    Receiver, RecvTimeoutError, Router, Select,
};

/// Generous bound for anything that should take milliseconds.
const BOUND: Duration = Duration::from_secs(30);

fn call_error(e: Error) -> mitogen::CallError {
    match e {
        Error::Call(c) => *c,
        other => panic!("expected a CallError, got {other:?}"),
    }
}

#[mitogen::remote]
fn read_missing(path: String) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(path)
}

#[mitogen::remote]
fn step_fails(n: u32) -> Result<u32, String> {
    Err(format!("step {n} failed"))
}

#[mitogen::remote]
fn boom(n: u32) -> u32 {
    panic!("boom {n}")
}

/// Start a child named `name`.
fn child(router: &Router, name: &str) -> mitogen::Context {
    router
        .local(LocalOptions::new().remote_name(name))
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// Call `add` in the parent; return the error's kind and text.
#[mitogen::remote]
fn call_parent(ec: &ExternalContext) -> (String, String) {
    let parent = ec.parent().expect("a child has a parent");
    match parent.call_timeout(add::remote, (1, 2), BOUND) {
        Ok(v) => (format!("Ok({v})"), String::new()),
        Err(Error::Call(e)) => (format!("{:?}", e.kind), e.to_string()),
        Err(other) => (format!("other: {other:?}"), other.to_string()),
    }
}

/// Point 3 and 4: a bounded call times out with a rounded duration and the
/// context's name, and still occupies the callee: the next call waits
/// behind it.
#[test]
fn call_timeout_reads_well_and_the_next_call_waits_behind_it() {
    Router::with(|router| {
        let slow = child(&router, "cw-slow");
        let started = Instant::now();
        let e = slow
            .call_timeout(sleep_ms::remote, (2500,), Duration::from_secs(1))
            .unwrap_err();
        let text = e.to_string();
        let Error::Timeout(t) = e else {
            panic!("expected a timeout, got {text}")
        };
        assert!(t.waited >= Duration::from_secs(1), "{t:?}");
        let expected_tail = format!(
            " s waiting for the result of {} from context 'cw-slow' (id {})",
            sleep_ms::NAME,
            slow.context_id()
        );
        assert!(
            (text.starts_with("timed out after 1.0 s")
                || text.starts_with("timed out after 1.1 s"))
                && text.ends_with(&expected_tail),
            "{text}"
        );
        // The dispatcher is still running the sleep: this call waits for it.
        assert_eq!(
            slow.call_deadline(add::remote, (1, 2), Instant::now() + BOUND)
                .unwrap(),
            3
        );
        let total = started.elapsed();
        assert!(
            total >= Duration::from_millis(2500),
            "the next call should wait behind the timed-out one; took {total:?}"
        );
    })
    .unwrap();
}

/// Point 3: `Select::all_timeout` tags results with the index of their
/// call; results come in completion order; a deadline names what is left.
#[test]
fn select_all_timeout_tags_results_and_names_what_is_pending() {
    Router::with(|router| {
        let (a, b) = (child(&router, "cw-a"), child(&router, "cw-b"));
        let calls = vec![
            a.call_async(sleep_ms::remote, (800,)).unwrap(),
            b.call_async(sleep_ms::remote, (0,)).unwrap(),
        ];
        let got = Select::all_timeout(calls, BOUND).unwrap();
        assert_eq!(
            got,
            vec![(1, 0), (0, 800)],
            "completion order, tagged by call index"
        );

        let calls = vec![
            b.call_async(sleep_ms::remote, (0,)).unwrap(),
            a.call_async(sleep_ms::remote, (1500,)).unwrap(),
        ];
        let e =
            Select::all_deadline(calls, Instant::now() + Duration::from_millis(300)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Timeout(_)), "{e:?}");
        assert!(
            text.contains("waiting for 1 of 2 calls (call 1: the result of")
                && text.contains("from context 'cw-a'"),
            "{text}"
        );
    })
    .unwrap();
}

/// Point 3: a typed result can be decoded after its call joined a Select,
/// with calls of different result types in one select.
#[test]
fn decoders_read_typed_results_out_of_a_select() {
    Router::with(|router| {
        let c = child(&router, "cw-decode");
        let sum = c.call_async(add::remote, (20, 22)).unwrap();
        let who = c.call_async(pid::remote, ()).unwrap();
        let fail = c.call_async(step_fails::remote, (7,)).unwrap();
        let (d_sum, d_who, d_fail) = (sum.decoder(), who.decoder(), fail.decoder());
        let mut select = Select::new();
        select.add(sum);
        select.add(who);
        select.add(fail);
        let mut seen = 0;
        while !select.is_empty() {
            let msg = select.recv_timeout(BOUND).unwrap();
            match msg.receiver_handle() {
                h if h == d_sum.handle() => assert_eq!(d_sum.decode(msg).unwrap(), 42),
                h if h == d_who.handle() => {
                    assert_ne!(d_who.decode(msg).unwrap(), std::process::id())
                }
                h if h == d_fail.handle() => {
                    let e = call_error(d_fail.decode(msg).unwrap_err());
                    assert_eq!(e.message, "step 7 failed");
                }
                other => panic!("message from an unknown member {other}"),
            }
            seen += 1;
        }
        assert_eq!(seen, 3);
    })
    .unwrap();
}

/// Point 5: calls up the tree are refused with `CallErrorKind::Refused` and
/// a sentence: by the master (which serves no calls) and by a relay (whose
/// policy accepts only its parents).
#[test]
fn upward_calls_are_refused_in_words() {
    Router::with(|router| {
        let relay = child(&router, "cw-relay");
        let (kind, text) = relay.call(call_parent::remote, ()).unwrap();
        assert_eq!(kind, "Refused", "{text}");
        assert!(
            text.contains("in context 'master' (id 0) was refused")
                && text.contains("children may not call their parents")
                && text.contains("caller: context 'cw-relay'"),
            "{text}"
        );

        let leaf = via(&router, &relay, "cw-leaf").unwrap();
        let (kind, text) = leaf.call(call_parent::remote, ()).unwrap();
        assert_eq!(kind, "Refused", "{text}");
        // A child knows its parent by id only: the relay's name is not sent down.
        assert!(
            text.contains("was refused: only a context's parents may call it")
                && text.contains("refused by policy has_parent_authority")
                && text.contains("caller: context 'cw-leaf'"),
            "{text}"
        );
    })
    .unwrap();
}

/// Point 6: short type names, one "panicked", context names with ids, and
/// a lost context named with the reason it is gone.
#[test]
fn error_texts_are_short_and_named() {
    Router::with(|router| {
        let c = child(&router, "cw-texts");
        let e = call_error(
            c.call(read_missing::remote, ("/nonexistent/cw".into(),))
                .unwrap_err(),
        );
        assert_eq!(e.type_name, "io::Error");
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "call to {} in context 'cw-texts' (id {}) returned an error: io::Error: No such file",
                read_missing::NAME,
                c.context_id()
            )),
            "{text}"
        );

        let e = call_error(c.call(step_fails::remote, (50,)).unwrap_err());
        assert_eq!(e.type_name, "String");
        assert!(
            e.to_string()
                .ends_with("returned an error: String: step 50 failed"),
            "{e}"
        );

        let e = call_error(c.call(boom::remote, (42,)).unwrap_err());
        assert!(e.to_string().ends_with("panicked: boom 42"), "{e}");

        let id = c.context_id();
        c.shutdown(true).unwrap();
        let text = c.call(add::remote, (1, 1)).unwrap_err().to_string();
        assert!(
            text.contains(&format!(
                "no route to context 'cw-texts' (id {id}): it was shut down or disconnected"
            )),
            "{text}"
        );
    })
    .unwrap();
}

/// Parity: a function that returns `Err` carries where it is defined and
/// where it ran.
#[test]
fn returned_errors_carry_the_remote_location() {
    Router::with(|router| {
        let c = child(&router, "cw-where");
        let e = call_error(c.call(step_fails::remote, (1,)).unwrap_err());
        assert!(
            e.location
                .starts_with("crates/mitogen/tests/api_calls_waits.rs:")
                || e.location.starts_with("tests/api_calls_waits.rs:"),
            "{}",
            e.location
        );
        let line: u32 = e.location.rsplit(':').next().unwrap().parse().unwrap();
        let source = include_str!("api_calls_waits.rs");
        let defined = source.lines().nth(line as usize - 1).unwrap_or_default();
        assert!(defined.contains("fn step_fails"), "line {line}: {defined}");
        assert!(
            e.backtrace.contains(step_fails::NAME)
                && e.backtrace.contains(&e.location)
                && e.backtrace.contains("context 'cw-where'"),
            "{}",
            e.backtrace
        );
        assert!(format!("{e:#}").contains("remote backtrace"), "{e:#}");
    })
    .unwrap();
}

/// What a user's `main` body looks like: `?` on its own errors.
fn user_main(_router: Router) -> mitogen::Result<()> {
    let n: u32 = "12".parse()?;
    assert_eq!(n, 12);
    std::fs::read("/nonexistent/cw-user-main")?;
    Ok(())
}

/// Point 7: `?` on io and parse errors works in a `mitogen::main` function.
#[test]
fn main_accepts_the_users_own_errors() {
    // `mitogen::main` takes the same function (not called: it exits).
    let _accepted = || mitogen::main(user_main);
    let e = Router::with(user_main).unwrap().unwrap_err();
    match &e {
        Error::Other(inner) => {
            let io = inner
                .downcast_ref::<std::io::Error>()
                .expect("the io::Error itself");
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Other, got {other:?}"),
    }
    assert!(e.to_string().contains("No such file"), "{e}");
    let parse: Error = "x".parse::<u32>().unwrap_err().into();
    assert_eq!(parse.to_string(), "invalid digit found in string");
}

/// Point 8: a closed sender ends the stream with `SenderClosed`; a killed
/// context is a loss, `Dead`.
#[test]
fn end_of_stream_is_not_a_loss() {
    Router::with(|router| {
        let c = child(&router, "cw-stream");
        let rx = Receiver::new(&router);
        assert_eq!(
            c.call(stream_numbers::remote, (rx.to_sender(), 3)).unwrap(),
            3
        );
        for i in 0..3u32 {
            let got: u32 = rx.recv_timeout(BOUND).unwrap().unpickle().unwrap();
            assert_eq!(got, i);
        }
        match rx.recv_timeout(BOUND) {
            Err(RecvTimeoutError::Channel(ChannelError::SenderClosed { context })) => {
                assert_eq!(context, "cw-stream")
            }
            other => panic!("expected the end of the stream, got {other:?}"),
        }

        let pid = c.call(pid::remote, ()).unwrap();
        let pending = c.call_async(sleep_ms::remote, (20_000,)).unwrap();
        sigkill(pid);
        match pending.get_timeout(BOUND) {
            Err(Error::Channel(ChannelError::Dead(loss))) => {
                assert_eq!(loss.kind, LossKind::Signaled(9), "{loss}")
            }
            other => panic!("expected a loss, got {other:?}"),
        }
    })
    .unwrap();
}

/// Point 12: every bounded wait fails with the same `TimeoutError` shape.
#[test]
fn one_timeout_shape_everywhere() {
    Router::with(|router| {
        let short = Duration::from_millis(20);
        let check = |t: &mitogen::TimeoutError, what: &str| {
            assert!(t.waited >= short, "{t:?}");
            assert!(t.what.contains(what), "{t:?}");
            assert!(t.to_string().starts_with("timed out after "), "{t}");
        };
        let latch: Latch<u8> = Latch::new();
        match latch.get_timeout(short) {
            Err(GetTimeoutError::Timeout(t)) => check(&t, "latch"),
            other => panic!("{other:?}"),
        }
        let rx = Receiver::new(&router);
        match rx.recv_timeout(short) {
            Err(RecvTimeoutError::Timeout(t)) => check(&t, "handle"),
            other => panic!("{other:?}"),
        }
        let chan = mitogen::Channel::new(&router, mitogen::Context::local(&router), 0);
        match chan.recv_timeout(short) {
            Err(RecvTimeoutError::Timeout(t)) => check(&t, "handle"),
            other => panic!("{other:?}"),
        }
        let select = Select::from_members([Receiver::new(&router)]);
        match select.recv_timeout(short) {
            Err(RecvTimeoutError::Timeout(t)) => check(&t, "Select"),
            other => panic!("{other:?}"),
        }
        let c = child(&router, "cw-timeouts");
        match c
            .call_async(sleep_ms::remote, (300,))
            .unwrap()
            .get_timeout(short)
        {
            Err(Error::Timeout(t)) => check(&t, "from context 'cw-timeouts'"),
            other => panic!("{other:?}"),
        }
    })
    .unwrap();
}

/// Parity: a latch of messages is a Select member; an empty select and an
/// absent member give clear errors.
#[test]
fn select_takes_latches_and_says_when_empty() {
    Router::with(|router| {
        let latch: Latch<Message> = Latch::new();
        let rx = Receiver::new(&router);
        let key = mitogen::Member::key(&latch);
        let mut select = Select::new();
        select.add(latch.clone());
        select.add(rx);
        latch
            .put(Message::pickled(&"from the latch", 0).unwrap())
            .unwrap();
        let msg = select.recv_timeout(BOUND).unwrap();
        assert_eq!(msg.receiver_handle(), key);
        assert_eq!(msg.unpickle::<String>().unwrap(), "from the latch");

        // Oneshot: the latch left after yielding; removing it again fails.
        let e = select.remove(key).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("no member with key {key} in this Select")
        );

        let empty = Select::new();
        let e = empty.recv().unwrap_err();
        assert_eq!(e, ChannelError::SelectEmpty);
        assert!(e.to_string().starts_with("Select is empty"), "{e}");
    })
    .unwrap();
}
