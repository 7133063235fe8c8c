//! `fork`: a copy of this program on this machine, started without exec.
//!
//! Forking a process that runs threads (ours always does: the broker) is
//! unsound: the copy has only the forking thread, and every lock another
//! thread held (the allocator's, stdio's, the router's) stays held in it
//! forever. So the master never forks itself. The first [`Router::fork`]
//! starts a *zygote*: this program's executable, exec'd with
//! `MITOGEN_ZYGOTE` set, which enters zygote mode from the same
//! before-`main` constructor that makes children, checks it has a single
//! thread, and then forks on request. Each fork is single-threaded, so it
//! is sound, and its copy runs the normal child runtime.
//!
//! Program: this executable (`argv[0]` = `mitogen:fork-zygote`), once per
//! router. Request: over a `SOCK_SEQPACKET` pair, the master sends the
//! nonce, name, configuration wait and hooks, with two descriptors
//! (`SCM_RIGHTS`): the new child's end of a socketpair (its stdin and
//! stdout) and the write end of its stderr pipe. The zygote forks, answers
//! with the new pid, and the child sets up its stdio and runs the child
//! runtime as a directly exec'd `local` child would: configuration frame,
//! nonce check, hello. No prompts.
//!
//! What a forked child inherits: the program as it was when the zygote
//! started, before `main` (statics' initial values, whatever constructors
//! did), the master's environment (minus `MITOGEN_*`), working directory,
//! user, limits and namespaces at that moment. Not the master's heap,
//! threads, open files or anything `main` did: use `on_fork` and
//! `on_start` to set up per-child state.
//!
//! Hooks: registered `#[remote]` functions named by their typed handle
//! (function pointers do not survive an exec). `on_fork` runs first in the
//! new context, before its parent stream is attached; `on_start` runs once
//! the stream is up, just before the first call is served. A hook that
//! fails or panics ends the child with its reason on stderr.
//!
//! Lifetime: the zygote's stderr is a pipe the master's broker reads (and
//! logs); when the router shuts down or the master dies, the pipe loses its
//! reader and the zygote stops forking, waits for its children (which end
//! when their streams close) and exits. It ignores SIGCHLD, so its
//! children never linger as zombies. A forked child is not the master's
//! child: its liveness is its stream.
//!
//! Errors: `StreamError::Spawn` when the zygote cannot start,
//! `StreamError::Bootstrap` (kind `BootstrapFailed`) when it refuses or
//! dies, `TimeoutError` after `connect_timeout`, `StreamError::InvalidOptions`
//! for a hook that is not registered.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::Launch;
use crate::bootstrap::CHILD_ENV;
use crate::context::registry::lookup;
use crate::context::{Context, ExternalContext, Remote};
use crate::error::{Result, StreamError};
use crate::router::{Router, RouterInner};
use crate::sys;

/// Environment variable that turns a process into a fork zygote.
const ZYGOTE_ENV: &str = "MITOGEN_ZYGOTE";
/// Largest request or reply on the zygote's socket.
const MAX_PACKET: usize = 64 * 1024;

/// Options of [`Router::fork`] (Mitogen's `fork()` arguments).
///
/// # Examples
/// ```
/// #[mitogen::remote]
/// fn reseed() {}
///
/// fn main() {
///     let opts = mitogen::ForkOptions::new().on_fork(reseed::remote).remote_name("worker");
///     assert_eq!(opts.hooks.on_fork.as_deref(), Some(reseed::remote.name()));
/// }
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ForkOptions {
    /// The functions the new child runs before it serves.
    pub hooks: ForkHooks,
    /// Options every method shares (`cache_dir` is unused: nothing is copied).
    pub common: CommonOptions,
}

/// The registered names of the functions a forked child runs before it
/// serves; set them with [`ForkOptions::on_fork`] and
/// [`ForkOptions::on_start`], which keep them typed.
///
/// # Examples
/// ```
/// assert_eq!(mitogen::ForkHooks::default().on_start, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkHooks {
    /// Runs first in the new child, before its parent stream is attached.
    pub on_fork: Option<String>,
    /// Runs once the stream is up, just before the first call is served.
    pub on_start: Option<String>,
}

impl ForkOptions {
    /// Default options: no hooks, the common defaults.
    ///
    /// # Examples
    /// ```
    /// let opts = mitogen::ForkOptions::new();
    /// assert_eq!(opts.hooks, mitogen::ForkHooks::default());
    /// ```
    pub fn new() -> ForkOptions {
        ForkOptions::default()
    }

    /// Run `f` in the new child before its parent stream is attached
    /// (Mitogen's `on_fork`): reseed, reset state copied from the zygote.
    /// `f` may take `&ExternalContext` or `&Router`.
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn reset() {}
    ///
    /// fn main() {
    ///     let opts = mitogen::ForkOptions::new().on_fork(reset::remote);
    ///     assert!(opts.hooks.on_fork.is_some());
    /// }
    /// ```
    pub fn on_fork(mut self, f: Remote<(), ()>) -> ForkOptions {
        self.hooks.on_fork = Some(f.name().to_string());
        self
    }

    /// Run `f` in the new child once its stream is up, just before the
    /// first call is served (Mitogen's `on_start`).
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn hello(ec: &mitogen::ExternalContext) {
    ///     let _ = ec.context_id();
    /// }
    ///
    /// fn main() {
    ///     let opts = mitogen::ForkOptions::new().on_start(hello::remote);
    ///     assert!(opts.hooks.on_start.is_some());
    /// }
    /// ```
    pub fn on_start(mut self, f: Remote<(), ()>) -> ForkOptions {
        self.hooks.on_start = Some(f.name().to_string());
        self
    }

    common_builders!();
}

impl Method for ForkOptions {
    const NAME: &'static str = "fork";

    common_field!();

    /// Refuse hooks this binary does not have (both ends run the same one).
    fn prepare(&mut self) -> Result<()> {
        for name in [&self.hooks.on_fork, &self.hooks.on_start]
            .into_iter()
            .flatten()
        {
            if lookup(name).is_none() {
                return Err(StreamError::InvalidOptions(format!(
                    "fork hook {name:?} is not a registered #[remote] function"
                ))
                .into());
            }
        }
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(Launch::fork(self.hooks.clone()))
    }

    /// With hooks, one call proves they ran: the child greets before they
    /// run, and ends if one fails.
    fn confirm(&self, context: &Context) -> Result<()> {
        if self.hooks == ForkHooks::default() {
            return Ok(());
        }
        let answer = context
            .call_async(hooks_ran::remote, ())
            .and_then(|c| c.get_timeout(self.common.connect_timeout));
        match answer {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = context.shutdown(false);
                Err(StreamError::Bootstrap {
                    name: context.name().to_string(),
                    reason: format!(
                        "the forked child ended before it served: a hook failed (its reason is on the child's stderr, logged); {e}"
                    ),
                    output: String::new(),
                }
                .into())
            }
        }
    }
}

/// Answers once the hooks have run (calls are served after them).
#[crate::remote]
fn hooks_ran() {}

impl Router {
    /// Start a child context that is a fork of this program (Mitogen's
    /// `Router.fork`), made by this router's zygote: see the `fork`
    /// method's documentation (`docs/design.md`, "fork") for what it
    /// inherits.
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) when the zygote cannot start
    /// or fork, or a hook is not registered;
    /// [`Error::Timeout`](crate::Error::Timeout) after `connect_timeout`.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.fork(mitogen::ForkOptions::new().remote_name("worker")).unwrap();
    /// child.shutdown(true).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn fork(&self, opts: ForkOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

/// What the master asks the zygote for (with two descriptors).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Request {
    nonce: String,
    wait_ms: u64,
    name: String,
    hooks: ForkHooks,
}

/// The zygote's answer: the first, once it is ready, carries its pid; each
/// later one the pid of the child a request started.
type Reply = std::result::Result<u32, String>;

// ---------------------------------------------------------------- master side

/// A running zygote, as the master sees it.
struct Zygote {
    /// The master's end of the request socket; held while a request is in
    /// flight, so requests never interleave.
    ctrl: Mutex<OwnedFd>,
    /// Unique in this process (a pid can be reused once reaped).
    serial: u64,
}

/// The next zygote's serial number.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Zygotes by the router that started them.
static ZYGOTES: Mutex<Vec<(Weak<RouterInner>, Arc<Zygote>)>> = Mutex::new(Vec::new());

/// `router`'s zygote, started on first use.
fn zygote_for(router: &Router, deadline: Instant) -> Result<Arc<Zygote>> {
    let mut all = crate::broker::lock(&ZYGOTES);
    all.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, z)) = all
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&router.inner)))
    {
        return Ok(z.clone());
    }
    let z = Arc::new(start_zygote(router, deadline)?);
    all.push((Arc::downgrade(&router.inner), z.clone()));
    Ok(z)
}

/// Forget `router`'s zygote (after a failed request), so the next fork
/// starts a new one. Closing our end makes it exit.
fn forget_zygote(serial: u64) {
    crate::broker::lock(&ZYGOTES).retain(|(_, z)| z.serial != serial);
}

fn zygote_error(reason: String) -> crate::Error {
    StreamError::Bootstrap {
        name: "fork-zygote".into(),
        reason,
        output: String::new(),
    }
    .into()
}

/// Exec this program in zygote mode and wait for it to say it is ready.
fn start_zygote(router: &Router, deadline: Instant) -> Result<Zygote> {
    let io = |what: &str, e| StreamError::Io {
        what: format!("{what} for the fork zygote"),
        source: e,
    };
    let exe = std::env::current_exe().map_err(|e| io("finding this program's executable", e))?;
    let (ours, theirs) = sys::seqpacket_pair().map_err(|e| io("creating a socketpair", e))?;
    let (err_r, err_w) = sys::pipe_cloexec().map_err(|e| io("creating a pipe", e))?;
    let mut child = Command::new(&exe)
        .arg0("mitogen:fork-zygote")
        .env(ZYGOTE_ENV, "1")
        .env_remove(CHILD_ENV)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_w))
        .spawn()
        .map_err(|e| StreamError::Spawn {
            program: exe.to_string_lossy().into_owned(),
            source: e,
        })?;
    let pid = child.id();
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    // The zygote is our child: reap it whenever it ends, and forget it
    // (closing our end of its socket). It ends when the broker stops and
    // closes `err_r` (below), which the broker does not wait for, so this
    // is not the broker's child.
    let _ = std::thread::Builder::new()
        .name(format!("mitogen-zygote-{pid}"))
        .spawn(move || {
            let status = child.wait();
            tracing::debug!("fork zygote (pid {pid}) ended: {status:?}");
            forget_zygote(serial);
        });
    // The broker owns the read end of the zygote's stderr, its lifeline.
    router.broker().defer_core(move |core| {
        core.add_lines(
            err_r,
            Box::new(|line| {
                if let Some(line) = line {
                    tracing::warn!("fork-zygote: {}", String::from_utf8_lossy(line));
                }
            }),
        )
    });
    let ready = match recv_reply(ours.as_raw_fd(), deadline) {
        Ok(Ok(p)) if p == pid => Ok(()),
        Ok(Ok(p)) => Err(format!("the zygote said its pid is {p}, not {pid}")),
        Ok(Err(reason)) => Err(format!("the zygote refused to start: {reason}")),
        Err(reason) => Err(reason),
    };
    if let Err(reason) = ready {
        let _ = sys::kill(pid, libc::SIGKILL);
        return Err(zygote_error(reason));
    }
    Ok(Zygote {
        ctrl: Mutex::new(ours),
        serial,
    })
}

/// Wait for one reply on `fd` until `deadline`.
fn recv_reply(fd: RawFd, deadline: Instant) -> std::result::Result<Reply, String> {
    match sys::poll_readable(fd, deadline) {
        Ok(true) => {}
        Ok(false) => return Err("the zygote did not answer in time".into()),
        Err(e) => return Err(format!("waiting for the zygote failed: {e}")),
    }
    let mut buf = vec![0u8; MAX_PACKET];
    let (n, fds) =
        sys::recv_with_fds(fd, &mut buf).map_err(|e| format!("reading the zygote failed: {e}"))?;
    drop(fds);
    if n == 0 {
        return Err("the zygote exited (its stderr is logged as fork-zygote)".into());
    }
    mitogen_wire::decode::<Reply>(&buf[..n])
        .map_err(|e| format!("the zygote's answer does not decode: {e}"))
}

/// A new forked child: its pid and the master's ends of its stdio.
pub(crate) struct Forked {
    pub pid: u32,
    /// Stream socket: the child's stdin and stdout.
    pub stream: OwnedFd,
    /// Read end of the child's stderr.
    pub stderr: OwnedFd,
}

/// Have `router`'s zygote fork a child that will wait `wait` for a
/// configuration frame carrying `nonce`.
pub(crate) fn fork_child(
    router: &Router,
    hooks: &ForkHooks,
    nonce: &str,
    name: &str,
    wait_ms: u64,
    deadline: Instant,
) -> Result<Forked> {
    let io = |what: &str, e| StreamError::Io {
        what: format!("{what} for {name}"),
        source: e,
    };
    let zygote = zygote_for(router, deadline)?;
    let (ours, theirs) = sys::socketpair_cloexec().map_err(|e| io("creating a socketpair", e))?;
    let (err_r, err_w) = sys::pipe_cloexec().map_err(|e| io("creating a pipe", e))?;
    let request = Request {
        nonce: nonce.into(),
        wait_ms,
        name: name.into(),
        hooks: hooks.clone(),
    };
    let body =
        mitogen_wire::encode(&request).map_err(|e| StreamError::InvalidOptions(e.to_string()))?;
    if body.len() > MAX_PACKET {
        return Err(
            StreamError::InvalidOptions(format!("fork request of {} bytes", body.len())).into(),
        );
    }
    let answer = {
        let ctrl = crate::broker::lock(&zygote.ctrl);
        sys::send_with_fds(
            ctrl.as_raw_fd(),
            &body,
            &[theirs.as_raw_fd(), err_w.as_raw_fd()],
        )
        .map_err(|e| format!("sending the request to the zygote failed: {e}"))
        .and_then(|()| recv_reply(ctrl.as_raw_fd(), deadline))
    };
    drop((theirs, err_w));
    match answer {
        Ok(Ok(pid)) => Ok(Forked {
            pid,
            stream: ours,
            stderr: err_r,
        }),
        Ok(Err(reason)) => Err(zygote_error(format!("the zygote could not fork: {reason}"))),
        Err(reason) => {
            // Out of step or gone: a new zygote serves the next request.
            forget_zygote(zygote.serial);
            if reason.contains("in time") {
                return Err(crate::error::TimeoutError {
                    waited: Duration::from_millis(wait_ms),
                    what: format!("waiting for the fork zygote to start {name}"),
                }
                .into());
            }
            Err(zygote_error(reason))
        }
    }
}

// ---------------------------------------------------------------- zygote side

/// If this process was started as a fork zygote, serve as one and never
/// return. Called first thing by the child entry, before `main`.
pub(crate) fn enter_if_zygote() {
    if std::env::var_os(ZYGOTE_ENV).is_none() {
        return;
    }
    std::env::remove_var(ZYGOTE_ENV);
    let code = match serve_zygote() {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("mitogen fork zygote: {reason}");
            1
        }
    };
    std::process::exit(code);
}

/// The zygote: fork on request until the master goes.
fn serve_zygote() -> std::result::Result<(), String> {
    sys::ignore_sigpipe();
    let ctrl = sys::dup_cloexec(0).map_err(|e| format!("cannot take the request socket: {e}"))?;
    let _ = sys::null_onto(0);
    let say = |reply: &Reply| {
        let body = mitogen_wire::encode(reply).unwrap_or_default();
        sys::send_with_fds(ctrl.as_raw_fd(), &body, &[])
    };
    let threads = sys::thread_count().unwrap_or(0);
    if threads != 1 {
        let reason = format!(
            "this program runs {threads} threads before main (a constructor started them): forking it is unsafe"
        );
        let _ = say(&Err(reason.clone()));
        return Err(reason);
    }
    sys::auto_reap_children(true);
    say(&Ok(std::process::id())).map_err(|e| format!("cannot answer the master: {e}"))?;
    let mut buf = vec![0u8; MAX_PACKET];
    // Far enough to mean "no deadline".
    let forever = || Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        let ready = sys::poll_many(&[ctrl.as_raw_fd(), 2], forever())
            .map_err(|e| format!("poll failed: {e}"))?;
        if ready[1] {
            // Our stderr lost its reader: the master's broker stopped.
            break;
        }
        if !ready[0] {
            continue;
        }
        let (n, fds) = match sys::recv_with_fds(ctrl.as_raw_fd(), &mut buf) {
            Ok((0, _)) => break,
            Ok(got) => got,
            Err(e) => {
                let _ = say(&Err(format!("bad request: {e}")));
                continue;
            }
        };
        let request = match mitogen_wire::decode::<Request>(&buf[..n]) {
            Ok(r) if fds.len() == 2 => r,
            Ok(_) => {
                let _ = say(&Err(format!(
                    "a request needs 2 descriptors, got {}",
                    fds.len()
                )));
                continue;
            }
            Err(e) => {
                let _ = say(&Err(format!("bad request: {e}")));
                continue;
            }
        };
        let mut fds = fds.into_iter();
        let (stream, stderr) = (
            fds.next().unwrap_or_else(|| unreachable!()),
            fds.next().unwrap_or_else(|| unreachable!()),
        );
        match sys::fork_single_threaded() {
            Ok(sys::Forked::Child) => become_child(request, ctrl, stream, stderr),
            Ok(sys::Forked::Parent(pid)) => {
                drop((stream, stderr));
                let _ = say(&Ok(pid));
            }
            Err(e) => {
                let _ = say(&Err(format!("fork failed: {e}")));
            }
        }
    }
    // Our children end when their streams close; SIGCHLD being ignored,
    // this returns once none is left.
    sys::wait_all_children();
    Ok(())
}

/// In a freshly forked copy of the zygote: take the stdio the master sent
/// and run the child runtime.
fn become_child(request: Request, ctrl: OwnedFd, stream: OwnedFd, stderr: OwnedFd) -> ! {
    drop(ctrl);
    sys::auto_reap_children(false);
    let setup = sys::dup_onto(stream.as_raw_fd(), 0)
        .and_then(|()| sys::dup_onto(stream.as_raw_fd(), 1))
        .and_then(|()| sys::dup_onto(stderr.as_raw_fd(), 2));
    drop((stream, stderr));
    if let Err(e) = setup {
        eprintln!("mitogen fork child: cannot set up stdio: {e}");
        std::process::exit(1);
    }
    sys::set_process_name(&format!("mitogen:{}", request.name));
    std::env::set_var(CHILD_ENV, format!("{}:{}", request.nonce, request.wait_ms));
    let _ = HOOKS.set(request.hooks);
    crate::bootstrap::child::enter_if_child();
    // enter_if_child never returns once CHILD_ENV is set.
    std::process::exit(1);
}

// ---------------------------------------------------------------- hooks

/// The hooks this process was forked with.
static HOOKS: OnceLock<ForkHooks> = OnceLock::new();

/// When a hook runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HookPoint {
    /// First, before the parent stream is attached.
    Fork,
    /// Just before the first call is served.
    Start,
}

/// Run this forked child's hook for `point`, if it has one.
pub(crate) fn run_hook(point: HookPoint, router: &Router) -> std::result::Result<(), String> {
    let Some(hooks) = HOOKS.get() else {
        return Ok(());
    };
    let name = match point {
        HookPoint::Fork => &hooks.on_fork,
        HookPoint::Start => &hooks.on_start,
    };
    let Some(name) = name else {
        return Ok(());
    };
    let what = match point {
        HookPoint::Fork => "on_fork",
        HookPoint::Start => "on_start",
    };
    let entry = lookup(name).ok_or_else(|| format!("{what} hook {name:?} is not registered"))?;
    let args = mitogen_wire::encode(&()).map_err(|e| e.to_string())?;
    let ec = ExternalContext::new(router.clone());
    let mut out = Vec::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (entry.invoke)(&ec, &args, &mut out)
    })) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err(format!("{what} hook {name} failed: {}", f.0)),
        Err(_) => Err(format!("{what} hook {name} panicked")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request {
            nonce: "0123456789abcdef0123456789abcdef".into(),
            wait_ms: 5000,
            name: "fork.7".into(),
            hooks: ForkHooks {
                on_fork: Some("a::b".into()),
                on_start: None,
            },
        };
        let back: Request = mitogen_wire::decode(&mitogen_wire::encode(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unregistered_hooks_are_refused_by_name() {
        let mut o = ForkOptions::new();
        o.hooks.on_start = Some("no::such::hook".into());
        let e = o.prepare().unwrap_err().to_string();
        assert!(e.contains("\"no::such::hook\" is not a registered"), "{e}");
    }
}
