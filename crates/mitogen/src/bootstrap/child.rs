//! The child's half: become a context, serve calls, exit when the parent goes.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen_wire::handle::{CALL_FUNCTION, SHUTDOWN};
use mitogen_wire::Deframer;

use super::{ChildConfig, CHILD_ENV, CWD_ENV, HELLO, PROTOCOL, VERSION};
use crate::broker::{Broker, Fds, Stream};
use crate::connect::{run_hook, HookPoint};
use crate::context::dispatcher;
use crate::context::registry::table_hash;
use crate::error::LossKind;
use crate::log::{self, Record};
use crate::router::{has_parent_authority, Router};
use crate::sync::{Latch, Receiver, ReceiverOptions};
use crate::{identity, sys};

/// If this process was started as a child context, run as one and never
/// return. Called before `main` (from a constructor) and by [`crate::main`].
///
/// `MITOGEN_CHILD` alone does not make a call server: its value must be
/// `<nonce>:<ms>` and the first frame on stdin, within `<ms>`, must be a
/// configuration carrying that nonce. Anything else (a stray variable, a
/// terminal, a file, another program's output) ends the process with a
/// one-line error on stderr and status 1, before anything is written.
/// The value `probe` ends it at once with status 0 (the first stage runs a
/// new binary so before it caches it).
pub(crate) fn enter_if_child() {
    crate::connect::enter_if_zygote();
    let Some(value) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // The first stage's check that a freshly installed binary starts here
    // (its loader and C library are fine): nothing to do.
    if value == super::PROBE {
        std::process::exit(0);
    }
    // Our own children must not inherit the marker.
    std::env::remove_var(CHILD_ENV);
    let cwd = std::env::var_os(CWD_ENV);
    std::env::remove_var(CWD_ENV);
    // The original stderr reaches the parent's log reader (or the user's
    // terminal); keep it to report fatal errors after stdio is redirected.
    let fatal = sys::dup_cloexec(2).ok().map(std::fs::File::from);
    let code = match parse_child_env(&value.to_string_lossy()).and_then(|(nonce, wait)| {
        run(
            &nonce,
            wait,
            cwd,
            fatal.as_ref().and_then(|f| f.try_clone().ok()),
        )
    }) {
        Ok(()) => 0,
        Err(reason) => {
            match fatal {
                Some(mut f) => {
                    let _ = writeln!(f, "mitogen child: {reason}");
                }
                None => eprintln!("mitogen child: {reason}"),
            }
            1
        }
    };
    std::process::exit(code);
}

/// Hex digits in a nonce (128 bits).
pub(crate) const NONCE_LEN: usize = 32;
/// Longest wait for the configuration frame a parent may ask for.
const MAX_CONFIG_WAIT: Duration = Duration::from_secs(3600);
/// Largest configuration frame body accepted.
const MAX_CONFIG_LEN: u32 = 64 * 1024;

/// The advice every refusal of a stray `MITOGEN_CHILD` ends with.
fn stray(why: &str) -> String {
    format!("{CHILD_ENV} is set but {why}: unset it to run the program normally")
}

/// `<32 lowercase hex digits>:<milliseconds>` → nonce and wait.
fn parse_child_env(value: &str) -> Result<(String, Duration), String> {
    let bad = || {
        stray(&format!(
            "its value is not <{NONCE_LEN} lowercase hex digits>:<milliseconds>, as a mitogen parent sets it"
        ))
    };
    let (nonce, ms) = value.split_once(':').ok_or_else(bad)?;
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    if nonce.len() != NONCE_LEN || !nonce.bytes().all(hex) {
        return Err(bad());
    }
    if ms.is_empty() || ms.len() > 10 || !ms.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: u64 = ms.parse().map_err(|_| bad())?;
    Ok((
        nonce.to_string(),
        Duration::from_millis(ms).min(MAX_CONFIG_WAIT),
    ))
}

/// Equal byte strings, compared in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Read the parent's configuration frame, check it carries `nonce`, then
/// greet. A frame that carries the nonce but does not decode still gets
/// the hello, so the parent reports version skew. Bytes after the frame
/// stay in the deframer.
fn handshake(
    fd_in: std::os::fd::RawFd,
    fd_out: std::os::fd::RawFd,
    nonce: &str,
    wait: Duration,
) -> Result<(ChildConfig, Deframer), String> {
    let not_mitogen =
        |why: String| stray(&format!("stdin does not carry a mitogen stream ({why})"));
    let (body, mut deframer) = first_frame(fd_in, Instant::now() + wait).map_err(not_mitogen)?;
    let (theirs, _) = mitogen_wire::decode_prefix::<String>(&body)
        .map_err(|e| not_mitogen(format!("the first frame is not a configuration: {e}")))?;
    if !same_secret(theirs.as_bytes(), nonce.as_bytes()) {
        return Err(not_mitogen(
            "the configuration frame carries another nonce".into(),
        ));
    }
    let hello = format!(
        "{HELLO}:{nonce}:{PROTOCOL}:{}:{VERSION}:{}\n",
        table_hash(),
        std::process::id()
    );
    sys::write_all_blocking(fd_out, hello.as_bytes())
        .map_err(|e| format!("cannot greet the parent: {e}"))?;
    let config: ChildConfig =
        mitogen_wire::decode(&body).map_err(|e| format!("bad configuration frame: {e}"))?;
    deframer.set_max_len(config.max_message_size);
    Ok((config, deframer))
}

/// The first frame's body, read before `deadline`; fails fast on bytes
/// that can't start a frame.
fn first_frame(fd: std::os::fd::RawFd, deadline: Instant) -> Result<(Vec<u8>, Deframer), String> {
    let magic = mitogen_wire::MAGIC.to_be_bytes();
    let mut deframer = Deframer::new(MAX_CONFIG_LEN);
    let mut seen = 0usize;
    let mut chunk = [0u8; 4096];
    loop {
        match deframer.next_frame() {
            Ok(Some(frame)) => return Ok((frame.body, deframer)),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match sys::poll_readable(fd, deadline) {
            Ok(true) => {}
            Ok(false) => return Err("nothing arrived in time".into()),
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        let n = match sys::read(fd, &mut chunk) {
            Ok(0) => return Err("end of file".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("read failed: {e}")),
        };
        // Refuse a wrong start at once, not after a whole header.
        for &b in &chunk[..n] {
            if seen < magic.len() && b != magic[seen] {
                return Err("bad frame magic".into());
            }
            seen += 1;
        }
        deframer.push(&chunk[..n]);
    }
}

fn run(
    nonce: &str,
    wait: Duration,
    cwd: Option<std::ffi::OsString>,
    fatal: Option<std::fs::File>,
) -> Result<(), String> {
    sys::ignore_sigpipe();
    let (stream_in, stream_out, stdout_r, stderr_r) =
        sys::move_stdio_aside().map_err(|e| format!("cannot set up descriptors: {e}"))?;
    let (config, deframer) = handshake(stream_in.as_raw_fd(), stream_out.as_raw_fd(), nonce, wait)?;
    // The first stage ran us from the cache directory: tidy it (before any
    // call is served, so a caller that got an answer knows it is done).
    if let Some(dir) = cwd {
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            super::housekeeping::after_start(&exe);
        }
        if std::env::set_current_dir(&dir).is_err() {
            let _ = std::env::set_current_dir("/");
        }
    }
    let _ = sys::set_nonblocking(stream_in.as_raw_fd(), true);
    let _ = sys::set_nonblocking(stream_out.as_raw_fd(), true);
    identity::set(&config);

    let broker = Broker::new().map_err(|e| format!("cannot start the broker: {e}"))?;
    broker.set_shutdown_timeout(Duration::from_millis(config.shutdown_timeout_ms));
    let router = Router::with_broker(broker.clone(), config.context_id, config.parent_ids.clone());
    configure(&router, &config);
    run_hook(HookPoint::Fork, &router)?;
    super::forward::serve_binaries(&router);

    let calls = Arc::new(Receiver::with_options(
        &router,
        ReceiverOptions {
            handle: Some(CALL_FUNCTION),
            policy: Some(Arc::new(has_parent_authority)),
            ..ReceiverOptions::default()
        },
    ));
    // Fired once the main thread is done, or the watchdog gives up on it.
    let done: Latch<()> = Latch::new();
    // Set when the parent stream is lost rather than closed on request.
    let orphaned = Arc::new(AtomicBool::new(false));

    crate::profile::install(&router);
    let parent_id = config.parent_ids.first().copied().unwrap_or(0);
    let token = broker.new_token();
    let stream = Arc::new(Stream::new(
        token,
        format!("parent {parent_id}"),
        Fds {
            read: stream_in,
            write: Some(stream_out),
            _keep: None,
        },
        None,
        broker.clone(),
    ));
    stream
        .remote_id
        .store(parent_id, std::sync::atomic::Ordering::Relaxed);
    let parent_stream = stream.clone();
    {
        let calls = calls.clone();
        let broker2 = broker.clone();
        let name = config.name.clone();
        let orphaned = orphaned.clone();
        router.set_parent(stream.clone(), move |loss| {
            // Lost, not closed at our request: a running call has no audience.
            if !broker2.is_shutting_down() {
                orphaned.store(true, Ordering::Release);
            }
            tracing::debug!("parent lost: {loss}");
            if !matches!(loss.kind, LossKind::Closed | LossKind::Shutdown) {
                if let Some(mut f) = fatal {
                    let _ = writeln!(f, "mitogen child {name}: lost the parent stream: {loss}");
                }
            }
            calls.close();
            broker2.shutdown();
        });
    }
    {
        let calls = calls.clone();
        let broker2 = broker.clone();
        let r2 = router.clone();
        router.add_service(
            move |msg| {
                tracing::debug!("shutdown requested by context {}", msg.src_id);
                // The last frame up (sent before the main thread can start
                // the shutdown itself): the parent closes its end on it, so
                // both ends see the close at once (a program in between,
                // such as ssh or su, would hold a half-close back).
                if !broker2.is_shutting_down() {
                    r2.farewell(LossKind::Shutdown, "shut down on request");
                }
                calls.close();
                broker2.shutdown();
            },
            SHUTDOWN,
            Some(Arc::new(has_parent_authority)),
        );
    }
    let events = router.events();
    let leftover = deframer;
    broker.defer_core(move |core| core.add_stream(stream, leftover, events));

    forward_output(&router, &broker, stdout_r, "stdout", &config.name);
    forward_output(&router, &broker, stderr_r, "stderr", &config.name);
    install_tracing(&router, &config);
    spawn_watchdog(&broker, done.clone(), orphaned);
    tracing::debug!(
        "context {} (id {}) started; parents {:?}",
        config.name,
        config.context_id,
        config.parent_ids
    );

    run_hook(HookPoint::Start, &router)?;
    dispatcher::serve(&router, &calls);

    broker.shutdown();
    broker.join();
    crate::profile::child_exiting(&router, &parent_stream);
    let _ = done.put(());
    Ok(())
}

fn configure(router: &Router, config: &ChildConfig) {
    // A u32 always fits the header: this cannot fail.
    let _ = router.set_max_message_size(config.max_message_size as usize);
    router
        .inner
        .unidirectional
        .store(config.unidirectional, std::sync::atomic::Ordering::Relaxed);
    router
        .inner
        .debug
        .store(config.debug, std::sync::atomic::Ordering::Relaxed);
    router
        .inner
        .forward_level
        .store(config.forward_level, std::sync::atomic::Ordering::Relaxed);
    *router.inner.name.write().unwrap_or_else(|p| p.into_inner()) = config.name.clone();
    router.set_flow_window(config.flow_window);
    if config.profiling {
        crate::profile::start_in_child();
    }
    router.set_keepalive(
        config
            .keepalive_ms
            .map(|(ms, misses)| crate::Keepalive::new(Duration::from_millis(ms), misses)),
    );
}

fn forward_output(
    router: &Router,
    broker: &Broker,
    fd: std::os::fd::OwnedFd,
    stream: &'static str,
    name: &str,
) {
    let router = router.clone();
    let name = name.to_string();
    broker.defer_core(move |core| {
        core.add_lines(
            fd,
            Box::new(move |line| {
                if let Some(line) = line {
                    log::forward(
                        &router,
                        &Record {
                            level: 0,
                            target: stream.into(),
                            message: String::from_utf8_lossy(line).into_owned(),
                            context: name.clone(),
                        },
                    );
                }
            }),
        )
    });
}

/// Forward this context's events at the parent's forwarding level, and
/// keep a debug log when asked (`subscriber.rs`).
fn install_tracing(router: &Router, config: &ChildConfig) {
    crate::subscriber::install_child(router, &config.name, config.forward_level, config.debug);
}

/// Grace for a running call once the parent is gone: nobody can receive
/// its result any more.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

/// Once the broker stops, the main thread may finish the call it is
/// running: for `shutdown_timeout` after a requested shutdown, for
/// [`ORPHAN_GRACE`] after losing the parent. Then the process exits anyway,
/// so a stuck call can never leave an orphan behind.
fn spawn_watchdog(broker: &Broker, done: Latch<()>, orphaned: Arc<AtomicBool>) {
    let broker = broker.clone();
    let _ = std::thread::Builder::new()
        .name("mitogen-watchdog".into())
        .spawn(move || {
            broker.join();
            let grace = if orphaned.load(Ordering::Acquire) {
                ORPHAN_GRACE.min(broker.shutdown_timeout())
            } else {
                broker.shutdown_timeout()
            };
            if done.get_timeout(grace).is_err() {
                // The main thread is stuck in user code.
                let _ = std::io::stderr().flush();
                std::process::exit(0);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_env_format_is_exact() {
        let nonce = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_child_env(&format!("{nonce}:1500")).unwrap(),
            (nonce.to_string(), Duration::from_millis(1500))
        );
        assert_eq!(
            parse_child_env(&format!("{nonce}:99999999999")).unwrap_err(),
            parse_child_env("1").unwrap_err(),
            "more than 10 digits is refused like any other malformed value"
        );
        for bad in [
            "1".to_string(),
            nonce.to_string(),
            format!("{nonce}:"),
            format!("{nonce}:-5"),
            format!("{nonce}: 5"),
            format!("{}:5", nonce.to_uppercase()),
            format!("{}:5", &nonce[1..]),
            format!("{nonce}0:5"),
            format!("{}g:5", &nonce[1..]),
        ] {
            let e = parse_child_env(&bad).unwrap_err();
            assert!(
                e.starts_with("MITOGEN_CHILD is set but its value is not")
                    && e.ends_with("unset it to run the program normally"),
                "{bad:?}: {e}"
            );
        }
        // Hours are capped.
        let (_, wait) = parse_child_env(&format!("{nonce}:9999999999")).unwrap();
        assert_eq!(wait, MAX_CONFIG_WAIT);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcd", b"abcd"));
        assert!(!same_secret(b"abcd", b"abce"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"a"));
    }
}
