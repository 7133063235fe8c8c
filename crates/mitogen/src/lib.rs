//! Mitogen for Rust: programs that copy themselves to other machines and
//! accounts, and call functions there.
//!
//! A program wraps its `main` in [`mitogen::main`]. Started normally, it
//! runs your closure with a [`Router`]; started by a parent, the same binary
//! becomes a *context* that serves calls. Connection methods
//! ([`Router::local`], [`Router::ssh`], [`Router::sudo`], [`Router::su`],
//! [`Router::doas`]) start a copy of the program on the target: nothing needs
//! to be installed there but a POSIX shell.
//!
//! - [`Router`] routes [`Message`]s between contexts; a [`Broker`] thread does the I/O.
//! - [`Context`] is a handle on another process: [`Context::call`],
//!   [`Context::call_async`], [`CallChain`].
//! - [`#[remote]`](remote) registers a function; callers use its typed handle `<fn>::remote`.
//! - [`Receiver`], [`Sender`], [`Channel`], [`Select`] and [`Latch`] are the blocking primitives.
//! - [`signal`]: callbacks when a context is lost ([`Router::on_disconnect`],
//!   [`Context::on_disconnect`]) or the broker shuts down, and events of your own.
//! - Errors: [`Error`] wraps [`CallError`], [`ChannelError`], [`StreamError`],
//!   [`PasswordError`], [`HostKeyError`], [`TimeoutError`] and [`LatchError`].
//!   A failed connection's cause is a [`ConnectFailure`]
//!   ([`StreamError::kind`], [`Error::connect_failure`]).
//!
//! # Hello world
//! ```no_run
//! #[mitogen::remote]
//! fn add(a: i32, b: i32) -> i32 {
//!     a + b
//! }
//!
//! fn main() {
//!     mitogen::main(|router| {
//!         let child = router.local(mitogen::LocalOptions::new())?;
//!         assert_eq!(child.call(add::remote, (2, 3))?, 5);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # Remote failures
//! A function returning `Result<T, E>` fails remotely with its error's type
//! and message; a panic comes back with the remote backtrace.
//! ```no_run
//! #[mitogen::remote]
//! fn read(path: String) -> Result<String, std::io::Error> {
//!     std::fs::read_to_string(path)
//! }
//!
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! # let child = router.local(Default::default()).unwrap();
//! match child.call(read::remote, ("/nope".into(),)) {
//!     Err(mitogen::Error::Call(e)) => eprintln!("{e}: {}", e.type_name),
//!     Err(mitogen::Error::Channel(e)) => eprintln!("context lost: {e}"),
//!     Err(other) => eprintln!("{other}"),
//!     Ok(text) => println!("{text}"),
//! }
//! # }).unwrap();
//! # }
//! ```
//!
//! # Many contexts at once
//! [`Context::call_async`] returns at once; [`Select`] collects replies as
//! they come: in completion order, not call order. Use
//! [`Select::all_timeout`] for results tagged with their call's index, and
//! [`AsyncCall::decoder`] to decode a call's typed result out of a select.
//! ```no_run
//! # #[mitogen::remote] fn hostname() -> String { String::new() }
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! let hosts = ["web1", "web2", "db1"];
//! let contexts: Vec<_> = hosts
//!     .iter()
//!     .map(|h| router.ssh(mitogen::SshOptions::new(*h)))
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! let calls = contexts.iter().map(|c| c.call_async(hostname::remote, ()).unwrap());
//! let timeout = std::time::Duration::from_secs(30);
//! for (index, name) in mitogen::Select::all_timeout(calls, timeout).unwrap() {
//!     println!("{} answered {name}", hosts[index]); // fastest first
//! }
//! # }).unwrap();
//! # }
//! ```
//!
//! # Timeouts and disconnection
//! Every blocking call has a bounded form ([`Context::call_timeout`],
//! [`Context::call_deadline`], [`AsyncCall::get_timeout`],
//! [`Select::all_timeout`], `recv_timeout` and `get_timeout`), all failing
//! with the same [`TimeoutError`]. A call that timed out still runs: a
//! context serves calls one at a time, so its next call waits behind it.
//! ```no_run
//! # #[mitogen::remote] fn slow() {}
//! # #[mitogen::remote] fn quick() -> u8 { 1 }
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! # let child = router.local(Default::default()).unwrap();
//! use std::time::Duration;
//! match child.call_timeout(slow::remote, (), Duration::from_secs(1)) {
//!     // "timed out after 1.0 s waiting for the result of app::slow from context 'local.…' (id 1)"
//!     Err(mitogen::Error::Timeout(t)) => eprintln!("{t}"),
//!     other => println!("{other:?}"),
//! }
//! // Runs once `slow` has returned.
//! let one = child.call(quick::remote, ()).unwrap();
//! # }).unwrap();
//! # }
//! ```
//!
//! A context that is lost (its process died, a link broke, it was shut
//! down) fails every call and receive waiting on it with
//! [`ChannelError::Dead`], whose [`Loss`] names the context and the
//! reason; nothing waits forever. To react when it happens rather than
//! when you next wait, subscribe with [`Router::on_disconnect`] (every
//! context) or [`Context::on_disconnect`] (one); see [Signals](#signals).
//! [`Router::disconnect`] cuts one child off and waits until its loss is
//! reported, while the broker and every other context keep running
//! ([`Router::disconnect_stream`], [`Router::disconnect_all`]: without
//! waiting).
//! ```no_run
//! # #[mitogen::remote] fn work() -> u32 { 1 }
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! let (a, b) = (router.local(Default::default()).unwrap(), router.local(Default::default()).unwrap());
//! let _watch = router.on_disconnect(|context, loss| eprintln!("lost {}: {loss}", context.name()));
//! router.disconnect(&a).unwrap(); // prints "lost local.…: …"
//! match a.call(work::remote, ()) {
//!     Err(mitogen::Error::Channel(mitogen::ChannelError::Dead(loss))) => eprintln!("{loss}"),
//!     other => println!("{other:?}"),
//! }
//! assert_eq!(b.call(work::remote, ()).unwrap(), 1); // b is unaffected
//! # }).unwrap();
//! # }
//! ```
//!
//! # Streaming
//! A [`Sender`] can be passed to a remote function, which sends values back
//! while it runs; the caller iterates over its [`Receiver`]. Closing the
//! sender ends the stream ([`ChannelError::SenderClosed`]); a lost context
//! reads as [`ChannelError::Dead`] with the reason.
//! ```no_run
//! #[mitogen::remote]
//! fn count(to: mitogen::Sender, n: u32) {
//!     for i in 0..n {
//!         to.send(&i).unwrap();
//!     }
//!     to.close().unwrap();
//! }
//!
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! # let child = router.local(Default::default()).unwrap();
//! let rx = mitogen::Receiver::new(&router);
//! child.call(count::remote, (rx.to_sender(), 3)).unwrap();
//! let got: Vec<u32> = rx.iter().map(|m| m.unpickle().unwrap()).collect();
//! assert_eq!(got, vec![0, 1, 2]);
//! # }).unwrap();
//! # }
//! ```
//!
//! # Trees
//! Every method takes `via`: the new context is started by another one,
//! which routes for it.
//! ```no_run
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! let bastion = router.ssh(mitogen::SshOptions::new("bastion")).unwrap();
//! let mut host = mitogen::SshOptions::new("db1");
//! host.common.via = Some(bastion);
//! let db1 = router.ssh(host).unwrap();
//! let mut root = mitogen::SudoOptions::default();
//! root.common.via = Some(db1);
//! let root_on_db1 = router.sudo(root).unwrap();
//! # let _ = root_on_db1;
//! # }).unwrap();
//! # }
//! ```
//!
//! # Connection methods
//! Each method starts a copy of the program through another program (or
//! none) and returns its [`Context`]. All take an options value built with
//! `new`/`container` and builder methods; the options every method shares
//! ([`CommonOptions`]: `remote_name`, `connect_timeout` (30 s), `via`,
//! `forward_level`, `profiling`, …) have the same builders on each.
//!
//! | Method | Options | Reaches |
//! |---|---|---|
//! | [`Router::local`] | [`LocalOptions::new`] | a new process on this machine |
//! | [`Router::fork`] | [`ForkOptions::new`] | a fork of a clean copy of this program (fast) |
//! | [`Router::ssh`] | [`SshOptions::new`]`(host)` | a host through OpenSSH (password, host key prompts answered) |
//! | [`Router::sudo`] | [`SudoOptions::new`] | another user through `sudo` (`root` by default) |
//! | [`Router::su`] | [`SuOptions::new`] | another user through `su` (password) |
//! | [`Router::doas`] | [`DoasOptions::new`] | another user through `doas` |
//! | [`Router::docker`] | [`DockerOptions::container`], [`DockerOptions::image`] | a Docker container (`docker exec`, or `run` of an image) |
//! | [`Router::podman`] | [`PodmanOptions::container`] | a Podman container |
//! | [`Router::buildah`] | [`BuildahOptions::container`] | a Buildah working container |
//! | [`Router::kubectl`] | [`KubectlOptions::new`]`(pod)` | a Kubernetes pod (`kubectl exec`) |
//! | [`Router::lxc`] | [`LxcOptions::new`] | an LXC container (`lxc-attach`) |
//! | [`Router::lxd`] | [`LxdOptions::new`] | an LXD container (`lxc exec`) |
//! | [`Router::incus`] | [`IncusOptions::new`] | an Incus container |
//! | [`Router::machinectl`] | [`MachinectlOptions::new`] | a systemd-nspawn machine |
//! | [`Router::jail`] | [`JailOptions::new`] | a FreeBSD jail (`jexec`) |
//! | [`Router::setns`] | [`SetnsOptions::new`] | a container's namespaces, entered directly (root) |
//!
//! [`MethodOptions`] holds any method's options (serde, so it can be kept
//! in a file), connected with [`Router::connect`]; a [`ConnectionSpec`]
//! chains hops, each made from the context the one before reached
//! ([`Router::connect_spec`]). Failures say why: [`Error::connect_failure`].
//! ```no_run
//! use mitogen::{ConnectionSpec, SshOptions, SudoOptions};
//! use std::time::Duration;
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! let web1 = router
//!     .ssh(SshOptions::new("web1").connect_timeout(Duration::from_secs(10)))
//!     .unwrap();
//! let root = router.sudo(SudoOptions::new().via(&web1)).unwrap();
//! // The same chain as data:
//! let spec = ConnectionSpec::new()
//!     .then(SshOptions::new("web1"))
//!     .then(SudoOptions::new().password("secret"));
//! let root_again = router.connect_spec(&spec).unwrap();
//! # let _ = (root, root_again);
//! # }).unwrap();
//! # }
//! ```
//!
//! # Signals
//! Callbacks for what happens to a router, context, stream or broker
//! (Mitogen's `listen`/`fire`): typed methods for the built-in events
//! ([`Router::on_disconnect`], [`Router::on_shutdown`],
//! [`Context::on_disconnect`], [`Broker::on_exit`], …: the table in
//! [`signal`]) and [`signal::listen`]/[`signal::fire`] for events of your
//! own. Each returns a [`Subscription`]: dropping it unsubscribes,
//! [`Subscription::detach`] keeps the callback for the object's life.
//!
//! Built-in events fire **on the broker thread**, which does all the I/O:
//! a callback must return quickly and never block (no calls, no `recv`, no
//! [`Router::shutdown`]); hand real work to a thread of your own, e.g.
//! through a [`Latch`]. Sending a message does not block there. [`signal::fire`]
//! runs the callbacks on the thread that calls it.
//! ```
//! use mitogen::{signal, Latch};
//!
//! let events = Latch::new();
//! mitogen::Router::with(|router| {
//!     // A user-defined event, fired and received on this thread.
//!     let e = events.clone();
//!     let _sub = signal::listen(&router, "deployed", move |host: &String| {
//!         let _ = e.put(format!("deployed {host}"));
//!     });
//!     signal::fire(&router, "deployed", &"web1".to_string());
//!     // A built-in event, on the broker thread: hand it over, don't block.
//!     let e = events.clone();
//!     router
//!         .on_shutdown(move || {
//!             let _ = e.put("shutdown".to_string());
//!         })
//!         .detach();
//! })
//! .unwrap(); // the router shuts down here
//! assert_eq!(events.get().unwrap(), "deployed web1");
//! assert_eq!(events.get().unwrap(), "shutdown");
//! ```
//!
//! # Logging
//! Contexts log with [`tracing`](https://docs.rs/tracing). A child forwards
//! its events and every line it prints on stdout or stderr to the master,
//! where they are re-emitted with the child's own target and level and the
//! fields `context` (its name) and `context_id`. Without a subscriber of
//! your own, [`mitogen::main`] and [`Router::with`] install one that shows
//! them on stderr:
//!
//! ```text
//! 14:03:07.123 I web1 myapp::job: deployed 3 files context_id=1
//! 14:03:07.125 I web1 mitogen::stdout: Reloading nginx context_id=1
//! 14:03:07.130 W master mitogen::router: …
//! ```
//!
//! - Filter with `MITOGEN_LOG` (else `RUST_LOG`, else `info`), written as
//!   `info` or `myapp=debug,mitogen=warn`; `MITOGEN_LOG=off` shows nothing.
//! - Output lines are INFO events of target `mitogen::stdout` and
//!   `mitogen::stderr`. A child forwards events at INFO or more severe:
//!   [`Router::set_forward_level`] or a connection's
//!   [`forward_level`](CommonOptions::forward_level) forwards its `debug!`
//!   too.
//! - Opt out with [`set_default_logging`]`(false)`, or set your own
//!   subscriber before [`mitogen::main`]: it is never replaced, and sees
//!   forwarded events under their own targets.
//! - [`log_to_file`] writes the same lines to a file (or stderr) at a
//!   level of your choice; [`Router::enable_debug`] makes every process of
//!   the tree, started from then on, keep its own debug log.
//! - Forwarded events come from another process: a child chooses its
//!   target, message and fields, never its `context` or `context_id`. An
//!   event without `context_id` is this process's own.
//!
//! ```no_run
//! #[mitogen::remote]
//! fn deploy() {
//!     tracing::debug!(target: "myapp::job", "checking");
//!     tracing::info!(target: "myapp::job", "deployed");
//!     println!("done"); // shown as mitogen::stdout
//! }
//!
//! fn main() {
//!     // Run with MITOGEN_LOG=info,myapp=debug to see "checking" too.
//!     mitogen::main(|router| {
//!         let opts = mitogen::SshOptions::new("web1").forward_level(tracing::Level::DEBUG);
//!         let web1 = router.ssh(opts)?;
//!         web1.call(deploy::remote, ())?;
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # Profiling and stack dumps
//! [`Router::enable_profiling`] makes this process and every context
//! started afterwards count calls per function (p50/p99), stream bytes,
//! broker wake-ups and queue depths; [`Context::stats`] fetches a context's
//! [`Stats`] ([`Router::stats`]: this process's own), and each profiling
//! context writes them as JSON on exit.
//! [`Context::dump_stacks`] shows what every thread of a context is doing,
//! also while it is stuck in a call.
//! ```no_run
//! # #[mitogen::remote] fn step() {}
//! # fn main() {
//! # mitogen::Router::with(|router| {
//! router.enable_profiling();
//! let child = router.local(Default::default()).unwrap();
//! child.call(step::remote, ()).unwrap();
//! let stats = child.stats().unwrap();
//! println!("step: {:?}", stats.function("step"));
//! if child.call_timeout(step::remote, (), std::time::Duration::from_secs(5)).is_err() {
//!     eprintln!("{}", child.dump_stacks().unwrap()); // where is it stuck?
//! }
//! # }).unwrap();
//! # }
//! ```
//!
//! # Coming from Python Mitogen
//! The vocabulary is the same; where Python needed a helper, Rust's types
//! often do the job:
//!
//! | Python Mitogen | here |
//! |---|---|
//! | `mitogen.main()`, `utils.run_with_router`, `utils.with_router` | [`mitogen::main`], [`Router::with`] |
//! | `context.call(f, *args)`, `call_async`, `call_no_reply` | [`Context::call`], [`Context::call_async`], [`Context::call_no_reply`], typed by `#[remote]` |
//! | `utils.cast(obj)` (turn subclasses of `str`, `dict`… into plain ones before sending) | not needed: arguments are typed and serialised by serde, so nothing but the declared types can travel |
//! | `core.listen`, `unlisten`, `fire` | [`signal::listen`], [`signal::unlisten`], [`signal::fire`], and typed `on_*` methods |
//! | `utils.log_to_file()` | [`log_to_file`] |
//! | `router.enable_debug()`, `router.profiling` | [`Router::enable_debug`], [`Router::enable_profiling`] |
//! | `mitogen.select.Select` | [`Select`] (results in completion order; [`Select::all_timeout`] tags them with their call) |
//!
//! # Static builds: any Linux target
//! Every target runs a copy of your binary, so build it to run anywhere of
//! its architecture: the default (dynamic glibc) build needs glibc 2.34 or
//! newer on the target and fails on busybox, Alpine or older systems. Build
//! for musl, with your crate's release profile set as the copy is uploaded
//! to every target (a dependency's profile is not inherited):
//!
//! ```toml
//! [profile.release]
//! lto = "fat"
//! codegen-units = 1
//! strip = "symbols"
//! panic = "unwind" # the default: remote panics come back as CallError
//! ```
//!
//! ```text
//! rustup target add x86_64-unknown-linux-musl
//! cargo build --release --target x86_64-unknown-linux-musl
//! file target/x86_64-unknown-linux-musl/release/<program>  # "static-pie linked"
//! ```
//!
//! musl's allocator is slow on message-heavy work (15-40 %): use `mimalloc`
//! as the global allocator (it compiles C: `CC_x86_64_unknown_linux_musl=musl-gcc`).
//! In this repository `scripts/build-static.sh [cargo build args]` does all
//! of it; the README's quick start and `docs/design.md` ("Portable
//! binaries") have the measurements.
//!
//! Without the musl target, static glibc works with nothing to install (a
//! larger upload: about 1.2 MB against 0.9 MB for the quick start), and is what
//! this repository's own `.cargo/config.toml` does for its examples, tests
//! and benchmarks; in yours:
//!
//! ```toml
//! # .cargo/config.toml (naming the target keeps proc macros dynamic)
//! [build]
//! target = "x86_64-unknown-linux-gnu"
//! [target.x86_64-unknown-linux-gnu]
//! rustflags = ["-C", "target-feature=+crt-static"]
//! ```
//!
//! A dynamically linked program still connects wherever its glibc is
//! installed; elsewhere the connection fails at once with
//! [`ConnectFailure::DynamicBinary`], naming the missing loader and the fix,
//! and nothing is left in the target's cache.
//! ```ignore
//! // In your program's main.rs, with `mimalloc = "0.1"` in [dependencies]:
//! #[global_allocator]
//! static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
//! ```
#![deny(missing_docs)]

extern crate self as mitogen;

mod bootstrap;
mod broker;
mod connect;
mod context;
mod error;
mod identity;
mod log;
mod message;
mod profile;
mod router;
pub mod signal;
mod subscriber;
mod sync;
mod sys;

pub use broker::{Broker, Timer};
pub use connect::prompt::Password;
// `CommonOptions`, `BecomeOptions`, `MethodOptions`, `ConnectionSpec` and
// every method's options (`SshOptions`, `SudoOptions`, …: the list in
// `connect/mod.rs`).
pub use connect::*;
pub use context::{AsyncCall, Blob, CallChain, CallDecoder, Context, ExternalContext, Remote};
pub use error::{
    CallError, CallErrorKind, ChannelError, CodecError, ConnectFailure, Error, GetTimeoutError,
    HostKeyError, LatchError, Loss, LossKind, PasswordError, RecvTimeoutError, Result, SelectError,
    SendTimeoutError, StreamError, TimeoutError, TryGetError, TryRecvError, TrySendError,
};
pub use identity::{context_id, is_master, parent_id, parent_ids};
pub use message::Message;
pub use mitogen_macros::remote;
pub use profile::{FunctionStats, Stats, StreamStats};
pub use router::{
    has_parent_authority, is_immediate_child, Keepalive, Policy, Router, StreamRef,
    DEFAULT_FLOW_WINDOW,
};
pub use signal::Subscription;
pub use subscriber::{log_to_file, set_default_logging};
pub use sync::{Channel, Latch, Member, Receiver, ReceiverOptions, Select, Sender};

/// Protocol and message-size constants.
pub use mitogen_wire::{handle, DEFAULT_MAX_MESSAGE_SIZE};

/// Run a program as the master, or, when started by a parent, as a child
/// context (Mitogen's `mitogen.main`). In the master, `f` gets a [`Router`]
/// that is shut down when `f` returns; an `Err` is printed and the process
/// exits with status 1.
///
/// The program's own errors pass with `?` too: I/O and parse errors and
/// strings become [`Error::Other`]; wrap any other error with
/// [`Error::other`].
///
/// # Examples
/// ```no_run
/// mitogen::main(|router| {
///     let child = router.local(mitogen::LocalOptions::new())?;
///     println!("started {}", child.name());
///     let hosts = std::fs::read_to_string("hosts.txt")?; // io::Error
///     let count: usize = hosts.trim().parse()?; // ParseIntError
///     println!("{count} hosts");
///     Ok(())
/// })
/// ```
pub fn main(f: impl FnOnce(Router) -> Result<()>) {
    bootstrap::child::enter_if_child();
    match Router::with(f) {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Become a child context before `main` runs when the process was started
/// as one, so any binary linking this crate (test binaries too) can serve
/// as a child.
#[ctor::ctor]
fn enter_child_before_main() {
    bootstrap::child::enter_if_child();
}

#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

#[doc(hidden)]
pub mod __private {
    pub use crate::context::registry::{
        decode_args, encode_result, encode_return, linkme, Failure, InvokeFn, RemoteEntry,
        REMOTE_FUNCTIONS,
    };
}
