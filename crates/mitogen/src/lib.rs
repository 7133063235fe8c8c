//! Mitogen for Rust: programs that copy themselves to other machines and
//! accounts, and call functions there.
//!
//! A program wraps its `main` in [`mitogen::main`]. Started normally,
//! it runs your closure with a [`Router`]; started by a parent, the same
//! binary becomes a *context* that serves calls. Connection methods
//! ([`Router::local`], and later ssh, sudo, …) start a copy of the program
//! on the target: nothing needs to be installed there but a POSIX shell.
//!
//! - [`Router`] routes [`Message`]s between contexts; a [`Broker`] thread does the I/O.
//! - [`Context`] is a handle on another process: [`Context::call`],
//!   [`Context::call_async`], [`CallChain`].
//! - [`#[remote]`](remote) registers a function; callers use its typed handle `<fn>::remote`.
//! - [`Receiver`], [`Sender`], [`Channel`], [`Select`] and [`Latch`] are the blocking primitives.
//! - Errors: [`Error`] wraps [`CallError`], [`ChannelError`], [`StreamError`],
//!   [`TimeoutError`] and [`LatchError`].
//!
//! # Example
//! ```no_run
//! #[mitogen::remote]
//! fn add(a: i32, b: i32) -> i32 {
//!     a + b
//! }
//!
//! #[mitogen::remote]
//! fn pid() -> u32 {
//!     std::process::id()
//! }
//!
//! fn main() {
//!     mitogen::main(|router| {
//!         let child = router.local(Default::default())?;
//!         assert_eq!(child.call(add::remote, (2, 3))?, 5);
//!         println!("child pid {}", child.call(pid::remote, ())?);
//!         Ok(())
//!     })
//! }
//! ```
#![warn(missing_docs)]

extern crate self as mitogen;

mod bootstrap;
mod broker;
mod connect;
mod context;
mod error;
mod identity;
mod log;
mod message;
mod router;
mod sync;
mod sys;

pub use broker::{Broker, Timer};
pub use connect::{
    Bootstrap, CheckHostKeys, DoasOptions, LocalOptions, SshOptions, SuOptions, SudoOptions,
};
pub use context::{AsyncCall, CallChain, Context, ExternalContext, Remote};
pub use error::{
    CallError, CallErrorKind, ChannelError, CodecError, Error, GetTimeoutError, HostKeyError,
    LatchError, PasswordError, RecvTimeoutError, Result, StreamError, TimeoutError, TryGetError,
    TryRecvError,
};
pub use identity::{context_id, is_master, parent_id, parent_ids};
pub use message::Message;
pub use mitogen_macros::remote;
pub use router::{has_parent_authority, is_immediate_child, Policy, Router};
pub use sync::{Channel, Latch, Member, Receiver, ReceiverOptions, Select, Sender};

/// Protocol and message-size constants.
pub use mitogen_wire::{handle, DEFAULT_MAX_MESSAGE_SIZE};

/// Run a program as the master, or, when started by a parent, as a child
/// context (Mitogen's `mitogen.main`). In the master, `f` gets a [`Router`]
/// that is shut down when `f` returns; an `Err` is printed and the process
/// exits with status 1.
///
/// # Examples
/// ```no_run
/// mitogen::main(|router| {
///     let child = router.local(Default::default())?;
///     println!("started {}", child.name());
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

/// Open `/tmp/mitogen.<pid>.log` for debug logging.
pub(crate) fn debug_log_writer() -> Option<std::sync::Mutex<std::fs::File>> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/tmp/mitogen.{}.log", std::process::id()))
        .ok()
        .map(std::sync::Mutex::new)
}

#[doc(hidden)]
pub mod __private {
    pub use crate::context::registry::{
        decode_args, encode_result, encode_return, linkme, Failure, InvokeFn, RemoteEntry,
        REMOTE_FUNCTIONS,
    };
}
