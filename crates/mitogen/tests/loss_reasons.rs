//! Every way a context can be lost reaches the waiters with a kind a
//! program can match and a text that names the cause and the context.

mod common;

use std::os::fd::RawFd;
use std::time::Duration;

use common::*;
use mitogen::handle::ALLOCATE_ID;
use mitogen::{AsyncCall, ChannelError, Error, LossKind, Message, Router};

/// How long any of these losses may take to reach a waiter.
const BOUND: Duration = Duration::from_secs(10);

/// Exit now with `code`, without answering.
#[mitogen::remote]
fn exit_now(code: i32) {
    std::process::exit(code)
}

/// Close this context's stream to its parent in both directions (as a
/// broken link would), then stay alive for `ms`.
#[mitogen::remote]
fn cut_stream_and_linger(ms: u64) {
    for fd in socket_fds() {
        // SAFETY: shutting down a socket descriptor we own has no memory effects.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    std::thread::sleep(Duration::from_millis(ms));
}

/// This process's socket descriptors.
fn socket_fds() -> Vec<RawFd> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() {
            if is_socket {
                fds.push(fd);
            }
        }
    }
    fds
}

/// The channel error a pending call ended with.
fn lost<R: serde::de::DeserializeOwned + std::fmt::Debug>(call: AsyncCall<R>) -> ChannelError {
    match call.get_timeout(BOUND) {
        Err(Error::Channel(e)) => e,
        other => panic!("expected a ChannelError within {BOUND:?}, got {other:?}"),
    }
}

/// `e`'s kind, context and text, checked in one place.
fn check(e: &ChannelError, kind: LossKind, context: &str, words: &[&str]) {
    assert_eq!(e.kind(), Some(&kind), "{e}");
    assert_eq!(e.context(), Some(context), "{e}");
    let text = e.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} not in {text:?}");
    }
}

#[test]
fn sigkill_is_killed_by_signal_9() {
    Router::with(|router| {
        let child = named(&router, "lr-killed");
        let pid = child.call(pid::remote, ()).unwrap();
        let pending = child.call_async(sleep_ms::remote, (60_000,)).unwrap();
        sigkill(pid);
        let e = lost(pending);
        check(
            &e,
            LossKind::Signaled(9),
            "lr-killed",
            &["context lr-killed", "disconnected", "killed by signal 9"],
        );
    })
    .unwrap();
}

#[test]
fn exit_is_exited_with_status() {
    Router::with(|router| {
        let child = named(&router, "lr-exits");
        let pending = child.call_async(exit_now::remote, (3,)).unwrap();
        let e = lost(pending);
        check(
            &e,
            LossKind::Exited(3),
            "lr-exits",
            &["lr-exits", "exited with status 3"],
        );
    })
    .unwrap();
}

#[test]
fn a_cut_link_is_closed_by_the_far_side() {
    Router::with(|router| {
        let child = named(&router, "lr-cut");
        // The process outlives its stream by far more than the wait for
        // an exit status.
        let pending = child
            .call_async(cut_stream_and_linger::remote, (3_000,))
            .unwrap();
        let e = lost(pending);
        check(
            &e,
            LossKind::Closed,
            "lr-cut",
            &["lr-cut", "connection closed by the far side"],
        );
    })
    .unwrap();
}

#[test]
fn a_killed_relay_is_named_by_its_leaves() {
    Router::with(|router| {
        let relay = named(&router, "lr-relay");
        let leaf = via(&router, &relay, "lr-leaf").unwrap();
        let relay_pid = relay.call(pid::remote, ()).unwrap();
        let on_leaf = leaf.call_async(sleep_ms::remote, (60_000,)).unwrap();
        let on_relay = relay.call_async(sleep_ms::remote, (60_000,)).unwrap();
        sigkill(relay_pid);
        let e = lost(on_leaf);
        check(
            &e,
            LossKind::Behind("lr-relay".into()),
            "lr-leaf",
            &[
                "context lr-leaf",
                "lost behind hop lr-relay",
                "killed by signal 9",
            ],
        );
        check(
            &lost(on_relay),
            LossKind::Signaled(9),
            "lr-relay",
            &["killed by signal 9"],
        );
    })
    .unwrap();
}

#[test]
fn a_killed_leaf_keeps_its_kind_across_the_relay() {
    Router::with(|router| {
        let relay = named(&router, "lr-relay2");
        let leaf = via(&router, &relay, "lr-leaf2").unwrap();
        let leaf_pid = leaf.call(pid::remote, ()).unwrap();
        let pending = leaf.call_async(sleep_ms::remote, (60_000,)).unwrap();
        sigkill(leaf_pid);
        // The relay saw the exit status; DEL_ROUTE carried the kind up.
        check(
            &lost(pending),
            LossKind::Signaled(9),
            "lr-leaf2",
            &["context lr-leaf2", "killed by signal 9"],
        );
        // The relay itself is fine.
        assert_eq!(relay.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

#[test]
fn garbage_into_a_childs_stdin_is_quoted_from_the_child() {
    Router::with(|router| {
        let before = socket_fds();
        let child = named(&router, "lr-garbage");
        let ours: Vec<RawFd> = socket_fds()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "one new socket: our end of the child's stream"
        );
        let pending = child.call_async(sleep_ms::remote, (60_000,)).unwrap();
        // Bytes that are not a frame, on the child's inbound stream (the
        // stream is idle: they start where a frame header would).
        let junk = b"this is not a frame at all, not even close....";
        // SAFETY: writing a buffer we own to a descriptor that stays open
        // (the router holds it until the stream is closed).
        let n = unsafe { libc::write(ours[0], junk.as_ptr().cast(), junk.len()) };
        assert_eq!(
            n,
            junk.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        check(
            &lost(pending),
            LossKind::Corrupt,
            "lr-garbage",
            &[
                "context lr-garbage",
                "refused its parent's stream",
                "bad frame magic",
            ],
        );
    })
    .unwrap();
}

#[test]
fn a_policy_refusal_is_refused() {
    Router::with(|router| {
        let child = named(&router, "lr-policy");
        // Only a child may ask its parent for ids: the child refuses us.
        let e = match child.send_await(Message::new(ALLOCATE_ID, Vec::new()), Some(BOUND)) {
            Err(Error::Channel(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        };
        check(&e, LossKind::Refused, "lr-policy", &["refused by policy"]);
    })
    .unwrap();
}

#[test]
fn shutdown_is_shut_down() {
    Router::with(|router| {
        let child = named(&router, "lr-shutdown");
        let pending = child.call_async(sleep_ms::remote, (300,)).unwrap();
        child.shutdown(true).unwrap();
        check(
            &lost(pending),
            LossKind::Shutdown,
            "lr-shutdown",
            &["context lr-shutdown", "shut down on request"],
        );
    })
    .unwrap();
}
