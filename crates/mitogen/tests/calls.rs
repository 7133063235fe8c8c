//! Typed calls into real child processes: results, remote failures,
//! ordering, pipelining and chains.

mod common;

use std::time::Duration;

use common::*;
use mitogen::{CallErrorKind, Error, LocalOptions, Remote, Router};

fn call_error(e: Error) -> mitogen::CallError {
    match e {
        Error::Call(c) => *c,
        other => panic!("expected a CallError, got {other:?}"),
    }
}

#[test]
fn call_returns_typed_result() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(child.call(add::remote, (2, 3)).unwrap(), 5);
        let pid = child.call(pid::remote, ()).unwrap();
        assert_ne!(pid, std::process::id());
    })
    .unwrap();
}

#[test]
fn err_return_becomes_call_error() {
    Router::with(|router| {
        let child = router
            .local(LocalOptions::new().remote_name("errs"))
            .unwrap();
        let e = call_error(child.call(fails::remote, ("/dev/sda".into(),)).unwrap_err());
        assert_eq!(e.kind, CallErrorKind::Returned);
        assert!(e.function.ends_with("common::fails"), "{}", e.function);
        assert!(e.type_name.ends_with("DiskFull"), "{}", e.type_name);
        assert_eq!(e.message, "no space left on /dev/sda");
        assert_eq!(e.context, "errs");
        let text = e.to_string();
        assert!(
            text.contains("no space left on /dev/sda") && text.contains("errs"),
            "{text}"
        );
    })
    .unwrap();
}

#[test]
fn panic_becomes_call_error_with_backtrace() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let e = call_error(child.call(panics::remote, ("kaput".into(),)).unwrap_err());
        assert_eq!(e.kind, CallErrorKind::Panicked);
        assert_eq!(e.message, "boom: kaput");
        assert!(
            e.backtrace.contains("common/mod.rs"),
            "backtrace names the file: {}",
            e.backtrace
        );
        // The child survives a panic and keeps serving.
        assert_eq!(child.call(add::remote, (1, 1)).unwrap(), 2);
    })
    .unwrap();
}

#[test]
fn unknown_function_and_bad_arguments() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let nope = Remote::<(), u32>::named("no::such::function");
        let e = call_error(child.call(nope, ()).unwrap_err());
        assert_eq!(e.kind, CallErrorKind::UnknownFunction);
        assert!(e.message.contains("no::such::function"), "{}", e.message);

        // Right name, arguments that do not decode as (i32, i32).
        let wrong = Remote::<(u64, u64, u64), i32>::named(add::NAME);
        let e = call_error(child.call(wrong, (1, 2, 3)).unwrap_err());
        assert_eq!(e.kind, CallErrorKind::BadArguments);
        assert!(e.function.ends_with("common::add"));
    })
    .unwrap();
}

#[test]
fn injected_router_and_econtext_and_identity() {
    Router::with(|router| {
        assert!(mitogen::is_master());
        assert_eq!(mitogen::context_id(), 0);
        let child = router.local(LocalOptions::default()).unwrap();
        let (is_master, id, parent, parents, ec_id, router_id) =
            child.call(identity::remote, ()).unwrap();
        assert!(!is_master);
        assert_eq!(id, child.context_id());
        assert_eq!(parent, Some(0));
        assert_eq!(parents, vec![0]);
        assert_eq!((ec_id, router_id), (id, id));
    })
    .unwrap();
}

#[test]
fn calls_run_in_order_and_call_no_reply() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        for i in 0..200 {
            child.call_no_reply(record::remote, (i,)).unwrap();
        }
        assert_eq!(
            child.call(journal::remote, ()).unwrap(),
            (0..200).collect::<Vec<_>>()
        );
    })
    .unwrap();
}

#[test]
fn call_async_and_timeouts() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let slow = child.call_async(sleep_ms::remote, (300,)).unwrap();
        let fast = child.call_async(add::remote, (1, 2)).unwrap();
        // Calls run in order: the second waits for the first.
        match fast.get_timeout(Duration::from_millis(50)) {
            Err(Error::Timeout(t)) => assert!(t.to_string().contains("add"), "{t}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(slow.get().unwrap(), 300);
    })
    .unwrap();
}

#[test]
fn broker_routes_while_main_thread_is_busy() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let rx = mitogen::Receiver::new(&router);
        let pending = child
            .call_async(wait_for_poke::remote, (rx.to_sender(),))
            .unwrap();
        let handle: u32 = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unpickle()
            .unwrap();
        mitogen::Sender::new(child.clone(), handle)
            .send("poked")
            .unwrap();
        assert_eq!(
            pending.get_timeout(Duration::from_secs(10)).unwrap(),
            "poked"
        );
    })
    .unwrap();
}

#[test]
fn call_chain_pipelines_fails_fast_and_resets() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let chain = child.call_chain();
        chain.call_no_reply(record::remote, (1,)).unwrap();
        chain
            .call_no_reply(fails::remote, ("disk0".into(),))
            .unwrap();
        chain.call_no_reply(record::remote, (2,)).unwrap();
        let e = call_error(chain.call(add::remote, (1, 1)).unwrap_err());
        assert_eq!(e.kind, CallErrorKind::ChainFailed);
        assert!(
            e.message.contains("no space left on disk0"),
            "{}",
            e.message
        );
        assert_eq!(
            child.call(journal::remote, ()).unwrap(),
            vec![1],
            "record(2) must not run"
        );
        chain.reset().unwrap();
        assert_eq!(chain.call(add::remote, (1, 1)).unwrap(), 2);
        // Without a chain, a failure does not affect later calls.
        assert!(child.call(fails::remote, ("x".into(),)).is_err());
        assert_eq!(child.call(add::remote, (2, 2)).unwrap(), 4);
    })
    .unwrap();
}

#[test]
fn send_await_and_dead_reply_for_unknown_handle() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let msg = mitogen::Message::pickled(&1u8, 4242).unwrap();
        match child.send_await(msg, Some(Duration::from_secs(10))) {
            Err(Error::Channel(mitogen::ChannelError::Dead(reason))) => {
                assert!(reason.contains("no handler for handle 4242"), "{reason}")
            }
            other => panic!("expected a dead reply, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn remote_name_shows_in_argv0() {
    Router::with(|router| {
        let child = router
            .local(LocalOptions::new().remote_name("worker-7"))
            .unwrap();
        let cmd = child.call(cmdline::remote, ()).unwrap();
        assert!(cmd.starts_with("mitogen:worker-7"), "{cmd}");
        assert!(router
            .local(LocalOptions::new().remote_name("a/b"))
            .is_err());
    })
    .unwrap();
}
