//! Connecting when the far side misbehaves, and what a failed connection
//! says about its cause (issue 9; review findings M4, L1 and M7).
//!
//! The connection programs here are fakes: shell scripts given as
//! `ssh_path`, `su_path` or `doas_path`. The tests run one at a time (they
//! measure this process's memory).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use mitogen::{
    Blob, ConnectFailure, Context, DoasOptions, Error, LocalOptions, Router, Sender, SshOptions,
    StreamError, SuOptions,
};

/// One test at a time: they measure peak memory and move large messages.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// An executable script `name` in `dir` with `body` after the `#!` line.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Shell lines that set `$t` to the connection's nonce, read from the
/// first stage (the last argument, `... t=<nonce>; ...`).
const NONCE: &str = r#"for a; do last=$a; done
t=$(printf '%s' "$last" | sed -n 's/.*t=\([0-9a-f]\{32\}\).*/\1/p')
[ -n "$t" ] || { echo "fake: no nonce in the first stage" >&2; exit 3; }"#;

/// A valid `MITOGEN-NEED` line for this machine, asking for the raw binary
/// (no compression: the upload starts at once).
const NEED: &str = r#"echo "MITOGEN-NEED:$t:$(uname -s) $(uname -m):raw""#;

/// Options for a fake ssh at `path` with a `secs` connect timeout.
fn fake_ssh(path: String, secs: u64) -> SshOptions {
    let mut o = SshOptions::new("fake");
    o.ssh_path = path;
    o.common.connect_timeout = Duration::from_secs(secs);
    o
}

/// Run `connect` on another thread and wait for it at most `limit`: a
/// connect that never returns fails the test instead of hanging it.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    connect: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(connect());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out, started.elapsed()),
        Err(_) => panic!("{what}: the connect did not return within {limit:?}"),
    }
}

/// `r` as a TimeoutError (panics naming what came instead).
fn expect_timeout(r: mitogen::Result<Context>, what: &str) -> mitogen::TimeoutError {
    match r {
        Err(Error::Timeout(t)) => t,
        Err(e) => panic!("{what}: expected TimeoutError, got {e}"),
        Ok(c) => panic!("{what}: expected TimeoutError, got context {}", c.name()),
    }
}

/// `r` as a stream error (panics naming what came instead).
fn expect_stream(r: mitogen::Result<Context>, what: &str) -> StreamError {
    match r {
        Err(Error::Stream(e)) => e,
        Err(e) => panic!("{what}: expected StreamError, got {e}"),
        Ok(c) => panic!("{what}: expected StreamError, got context {}", c.name()),
    }
}

/// M4: a program that prints forever (`yes`) keeps poll(2) ready; the
/// connect still ends at `connect_timeout`, and what it printed is kept
/// in bounded memory.
#[test]
fn m4_endless_output_times_out_in_bounded_memory() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let ssh = script(dir.path(), "ssh", "exec yes");
    Router::with(|router| {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = status_kb("VmRSS:");
        let r2 = router.clone();
        let (r, took) = within(Duration::from_secs(10), "yes", move || {
            r2.ssh(fake_ssh(ssh, 2))
        });
        let t = expect_timeout(r, "yes");
        let grew_kb = status_kb("VmHWM:").saturating_sub(before);
        println!("yes: timed out after {took:?}, peak memory +{grew_kb} kB: {t}");
        assert!(
            took < Duration::from_secs(3),
            "took {took:?} for a 2 s timeout"
        );
        assert!(
            t.what.contains("ssh.fake") && t.what.contains("printed: y"),
            "{t}"
        );
        assert!(grew_kb < 16 * 1024, "peak memory grew by {grew_kb} kB");
    })
    .unwrap();
}

/// M4: a first stage that asks for the binary and then stops reading:
/// the upload gives up at `connect_timeout`.
#[test]
fn m4_need_then_stop_reading_times_out() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let ssh = script(
        dir.path(),
        "ssh",
        &format!("{NONCE}\n{NEED}\nexec sleep 60"),
    );
    Router::with(|router| {
        let r2 = router.clone();
        let (r, took) = within(Duration::from_secs(10), "need then sleep", move || {
            r2.ssh(fake_ssh(ssh, 2))
        });
        let t = expect_timeout(r, "need then sleep");
        println!("stopped reading: timed out after {took:?}: {t}");
        assert!(
            took < Duration::from_secs(3),
            "took {took:?} for a 2 s timeout"
        );
        assert!(t.what.contains("uploading the binary"), "{t}");
    })
    .unwrap();
}

/// M4: one `MITOGEN-NEED` buys one upload; a second is a bootstrap error
/// that names it.
#[test]
fn m4_second_need_is_refused() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{NONCE}\n{NEED}\n{NEED}\nexec cat >/dev/null");
    let ssh = script(dir.path(), "ssh", &body);
    Router::with(|router| {
        let e = expect_stream(router.ssh(fake_ssh(ssh, 20)), "two NEEDs");
        let text = e.to_string();
        assert!(
            matches!(e, StreamError::Bootstrap { .. }) && text.contains("a second time"),
            "{text}"
        );
        assert!(text.contains("MITOGEN-NEED"), "{text}");
        assert_eq!(e.kind(), Some(ConnectFailure::BootstrapFailed));
    })
    .unwrap();
}

/// The error of a failed su or doas fake, checked: a bootstrap error in
/// under a second (the timeout is 8 s) quoting the program.
fn check_quick_failure(r: mitogen::Result<Context>, took: Duration, what: &str) {
    let e = expect_stream(r, what);
    let text = e.to_string();
    println!("{what}: {took:?}: {text}");
    assert!(matches!(e, StreamError::Bootstrap { .. }), "{what}: {text}");
    assert!(
        text.contains("user nosuch does not exist"),
        "{what}: {text}"
    );
    assert_eq!(
        e.kind(),
        Some(ConnectFailure::Exited { status: 1 }),
        "{text}"
    );
    assert!(took < Duration::from_secs(1), "{what} took {took:?}");
}

/// L1: su and doas run on a terminal; when they fail and exit, the
/// connect says so at once instead of at the timeout.
#[test]
fn l1_su_and_doas_failures_are_reported_at_once() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let fake = |name: &str| {
        script(
            dir.path(),
            name,
            &format!("echo '{name}: user nosuch does not exist'\nexit 1"),
        )
    };
    let (su, doas) = (fake("su"), fake("doas"));
    Router::with(|router| {
        let mut o = SuOptions::new().username("nosuch").su_path(su);
        o.common.connect_timeout = Duration::from_secs(8);
        let r2 = router.clone();
        let (r, took) = within(Duration::from_secs(20), "su", move || r2.su(o));
        check_quick_failure(r, took, "su");

        let mut o = DoasOptions::new().username("nosuch").doas_path(doas);
        o.common.connect_timeout = Duration::from_secs(8);
        let r2 = router.clone();
        let (r, took) = within(Duration::from_secs(20), "doas", move || r2.doas(o));
        check_quick_failure(r, took, "doas");
    })
    .unwrap();
}

/// Send `n` bytes to `to` from this context: the error text, if any.
#[mitogen::remote]
fn send_blob(to: Sender, n: usize) -> Option<String> {
    to.send(&Blob::from(vec![5u8; n]))
        .err()
        .map(|e| e.to_string())
}

/// M7: with a 256 MiB limit, a 150 MiB argument reaches a child (its
/// inbound limit is the parent's) and its length comes back.
#[test]
fn m7_large_limit_is_the_childs_too() {
    let _one = serial();
    const MIB: usize = 1 << 20;
    Router::with(|router| {
        router.set_max_message_size(256 * MIB).unwrap();
        let child = router.local(LocalOptions::default()).unwrap();
        let n = child
            .call(blob_len::remote, (Blob::from(vec![9u8; 150 * MIB]),))
            .unwrap_or_else(|e| panic!("150 MiB under a 256 MiB limit: {e}"));
        assert_eq!(n, 150 * MIB);
    })
    .unwrap();
}

/// M7: with a 1 MiB limit a child reports `MessageTooLarge` on its own
/// 2 MiB send, and refuses 2 MiB from its parent (sent after the parent
/// raised its own limit).
#[test]
fn m7_small_limit_is_the_childs_too() {
    let _one = serial();
    const MIB: usize = 1 << 20;
    Router::with(|router| {
        router.set_max_message_size(MIB).unwrap();
        let child = router.local(LocalOptions::default()).unwrap();
        let rx = mitogen::Receiver::new(&router);
        let to = Sender::new(Context::local(&router), rx.handle());
        let refused = child
            .call(send_blob::remote, (to, 2 * MIB))
            .unwrap()
            .expect("a 2 MiB send under a 1 MiB limit fails in the child");
        assert!(
            refused.contains("exceeds the maximum message size of 1048576"),
            "{refused}"
        );
        router.set_max_message_size(4 * MIB).unwrap();
        match child.call(blob_len::remote, (Blob::from(vec![1u8; 2 * MIB]),)) {
            Ok(n) => panic!("the child accepted {n} bytes over its 1 MiB limit"),
            Err(e) => println!("2 MiB into a 1 MiB child: {e}"),
        }
    })
    .unwrap();
}

/// The real ssh to `host`, without the user's configuration.
fn real_ssh(host: &str, port: Option<u16>) -> SshOptions {
    let mut o = SshOptions::new(host);
    o.port = port;
    o.ssh_args = vec!["-F".into(), "/dev/null".into()];
    o.common.connect_timeout = Duration::from_secs(10);
    o
}

/// ssh's words become kinds: nothing listens on the port.
#[test]
fn kind_refused() {
    let _one = serial();
    // Bound, then closed again: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    Router::with(|router| {
        let e = expect_stream(
            router.ssh(real_ssh("127.0.0.1", Some(closed))),
            "closed port",
        );
        let text = e.to_string();
        println!("closed port: {text}");
        assert_eq!(e.kind(), Some(ConnectFailure::Refused), "{text}");
        assert!(text.contains("ssh.127.0.0.1"), "names the context: {text}");
        assert!(text.contains("Connection refused"), "quotes ssh: {text}");
    })
    .unwrap();
}

/// A `.invalid` name never resolves (RFC 6761), so no network is needed.
#[test]
fn kind_unknown_host() {
    let _one = serial();
    Router::with(|router| {
        let e = expect_stream(
            router.ssh(real_ssh("nosuchhost.invalid", None)),
            "unknown host",
        );
        let text = e.to_string();
        println!("unknown host: {text}");
        assert_eq!(e.kind(), Some(ConnectFailure::UnknownHost), "{text}");
        assert!(text.contains("nosuchhost.invalid"), "{text}");
    })
    .unwrap();
}

/// A missing connection program, here and through a relay.
#[test]
fn kind_program_not_found() {
    let _one = serial();
    Router::with(|router| {
        let mut o = SshOptions::new("web1");
        o.ssh_path = "/nonexistent/mitogen-test/ssh".into();
        let e = expect_stream(router.ssh(o.clone()), "missing ssh");
        assert_eq!(e.kind(), Some(ConnectFailure::ProgramNotFound), "{e}");
        assert!(
            e.to_string().contains("/nonexistent/mitogen-test/ssh"),
            "{e}"
        );

        let relay = router.local(LocalOptions::default()).unwrap();
        o.common.via = Some(relay);
        let e = expect_stream(router.ssh(o), "missing ssh via a relay");
        assert_eq!(e.kind(), Some(ConnectFailure::ProgramNotFound), "{e}");
        assert!(
            e.to_string().contains("/nonexistent/mitogen-test/ssh"),
            "{e}"
        );
    })
    .unwrap();
}

/// A first stage that fails is `BootstrapFailed`; a program that exits
/// without a word is `Exited` with its status, also through a relay.
#[test]
fn kind_bootstrap_failed_and_exited() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broken = script(
        dir.path(),
        "broken",
        &format!("{NONCE}\necho \"MITOGEN-FAIL:$t:no candidate directory\"\nexit 1"),
    );
    let quiet = script(dir.path(), "quiet", "exit 7");
    Router::with(|router| {
        let e = expect_stream(router.ssh(fake_ssh(broken, 10)), "broken first stage");
        assert_eq!(e.kind(), Some(ConnectFailure::BootstrapFailed), "{e}");
        assert!(e.to_string().contains("no candidate directory"), "{e}");

        let e = expect_stream(router.ssh(fake_ssh(quiet.clone(), 10)), "exit 7");
        assert_eq!(e.kind(), Some(ConnectFailure::Exited { status: 7 }), "{e}");
        assert!(e.to_string().contains("exited with status 7"), "{e}");

        let relay = router.local(LocalOptions::default()).unwrap();
        let mut o = fake_ssh(quiet, 10);
        o.common.via = Some(relay);
        let e = expect_stream(router.ssh(o), "exit 7 via a relay");
        assert_eq!(e.kind(), Some(ConnectFailure::Exited { status: 7 }), "{e}");
        assert_eq!(
            Error::from(e).connect_failure(),
            Some(ConnectFailure::Exited { status: 7 })
        );
    })
    .unwrap();
}
