//! One error vocabulary for the crate, with Mitogen's names.
//!
//! Blocking operations come in crossbeam's forms (`try_`, plain, `_timeout`,
//! `_deadline`), each with an error naming exactly what can happen. Whole
//! operations (`Context::call`, connecting) return the umbrella [`Error`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error as ThisError;

pub use mitogen_wire::CodecError;

/// Anything a call, a send or a connection can fail with.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// The remote function failed: it returned `Err`, panicked, was unknown
    /// or could not decode its arguments.
    #[error(transparent)]
    Call(Box<CallError>),
    /// The reply channel died: the context disconnected or refused the message.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A latch was closed under a waiter.
    #[error(transparent)]
    Latch(#[from] LatchError),
    /// A connection could not be made or was lost.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A deadline passed.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A password was needed but none was given, or it was wrong.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The host key of an ssh target is unknown (under `enforce`) or changed.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// An error of the program's own, passed up with `?` inside
    /// [`mitogen::main`](crate::main) or [`Router::with`](crate::Router::with):
    /// I/O and parse errors, strings, or any error through [`Error::other`].
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wrap any error of the program's own as [`Error::Other`].
    ///
    /// # Examples
    /// ```
    /// #[derive(Debug)]
    /// struct Mine;
    /// impl std::fmt::Display for Mine {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("mine went wrong")
    ///     }
    /// }
    /// impl std::error::Error for Mine {}
    ///
    /// let e = mitogen::Error::other(Mine);
    /// assert!(matches!(e, mitogen::Error::Other(_)));
    /// assert_eq!(e.to_string(), "mine went wrong");
    /// ```
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Other(e.into())
    }
}

/// `?` on the errors programs meet most often gives [`Error::Other`].
macro_rules! other_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Other(e.into())
            }
        }
    )*};
}

other_from!(
    std::io::Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::ParseBoolError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::net::AddrParseError,
    std::fmt::Error,
    String,
    &str,
    Box<dyn std::error::Error + Send + Sync>,
);

/// A connection program asked for a password and none was given, or the
/// given one was refused (Mitogen's `PasswordError`).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Serialize, Deserialize)]
#[error("{method}: {reason}{}", fmt_output(output))]
pub struct PasswordError {
    /// `ssh`, `sudo`, `su` or `doas`.
    pub method: String,
    /// What happened, e.g. "incorrect password for user deploy".
    pub reason: String,
    /// The last lines the program printed.
    pub output: String,
}

/// An ssh host key could not be verified (Mitogen's `HostKeyError`).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Serialize, Deserialize)]
#[error("ssh: host key of {host} {reason}{}", fmt_output(output))]
pub struct HostKeyError {
    /// The host as given.
    pub host: String,
    /// "is not known (check_host_keys=enforce)" or "has changed".
    pub reason: String,
    /// The last lines ssh printed.
    pub output: String,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a remote call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The function returned `Err`.
    Returned,
    /// The function panicked.
    Panicked,
    /// No function of that name is registered in the target binary.
    UnknownFunction,
    /// The arguments could not be decoded as the function's parameters.
    BadArguments,
    /// The result could not be encoded or sent (e.g. larger than the maximum message size).
    BadResult,
    /// An earlier call in the same [`CallChain`](crate::CallChain) failed, so this one did not run.
    ChainFailed,
    /// The callee refused the call: a context accepts calls only from its
    /// parents (the policy `has_parent_authority`), and the master serves
    /// no calls at all, so calls up the tree or to a sibling are refused.
    Refused,
}

/// A remote function failed. Carries the function's name, the remote error
/// type and message, and the remote backtrace text when there is one
/// (Mitogen's `CallError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// What went wrong.
    pub kind: CallErrorKind,
    /// Registered name of the function, e.g. `my_crate::add`.
    pub function: String,
    /// Name of the context the call ran in (filled in by the caller).
    pub context: String,
    /// Id of the context the call ran in, when the caller knows it.
    #[serde(default)]
    pub context_id: Option<u32>,
    /// Short Rust type name of the remote error, e.g. `io::Error` or
    /// `String` (`"panic"` for panics).
    pub type_name: String,
    /// The remote error's `Display` text, or the panic message.
    pub message: String,
    /// Remote backtrace text; empty when none was captured. A function that
    /// returned `Err` has no backtrace: this then names where it is defined.
    pub backtrace: String,
    /// `file:line` of the remote function's definition (from `#[remote]`);
    /// empty for failures before any function was found.
    #[serde(default)]
    pub location: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CallErrorKind::Returned => "returned an error",
            CallErrorKind::Panicked => "panicked",
            CallErrorKind::UnknownFunction => "is not registered in the target binary",
            CallErrorKind::BadArguments => "could not decode its arguments",
            CallErrorKind::BadResult => "could not send its result",
            CallErrorKind::ChainFailed => "was skipped: an earlier call in its chain failed",
            CallErrorKind::Refused => "was refused",
        };
        write!(f, "call to {}", self.function)?;
        if !self.context.is_empty() {
            write!(f, " in context '{}'", self.context)?;
            if let Some(id) = self.context_id {
                write!(f, " (id {id})")?;
            }
        }
        write!(f, " {what}: ")?;
        // The type says something only for an error the function returned.
        if self.kind == CallErrorKind::Returned && !self.type_name.is_empty() {
            write!(f, "{}: ", self.type_name)?;
        }
        f.write_str(&self.message)?;
        if f.alternate() && !self.backtrace.is_empty() {
            write!(f, "\nremote backtrace:\n{}", self.backtrace)?;
        }
        Ok(())
    }
}

/// A Rust type name as a reader wants it: paths shortened to the last
/// segment, keeping the module for names as vague as `Error`
/// (`std::io::error::Error` → `io::Error`, `alloc::string::String` →
/// `String`, `alloc::vec::Vec<my::Thing>` → `Vec<Thing>`).
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut path = String::new();
    let flush = |path: &mut String, out: &mut String| {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        if let Some((last, parents)) = segments.split_last() {
            if *last == "Error" {
                // Skip a private module named after the type (`io::error::Error`);
                // the standard library's own roots say nothing.
                let parent = parents
                    .iter()
                    .rev()
                    .find(|p| !p.eq_ignore_ascii_case(last))
                    .filter(|p| !matches!(**p, "std" | "core" | "alloc"));
                if let Some(parent) = parent {
                    out.push_str(parent);
                    out.push_str("::");
                }
            }
            out.push_str(last);
        }
        path.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            flush(&mut path, &mut out);
            out.push(c);
        }
    }
    flush(&mut path, &mut out);
    out
}

impl std::error::Error for CallError {}

impl CallError {
    /// A failure raised on this side; `context` is filled in by the caller
    /// and `backtrace` only for panics.
    pub(crate) fn new(
        kind: CallErrorKind,
        function: &str,
        type_name: &str,
        message: impl Into<String>,
    ) -> CallError {
        CallError {
            kind,
            function: function.to_string(),
            context: String::new(),
            context_id: None,
            type_name: short_type_name(type_name),
            message: message.into(),
            backtrace: String::new(),
            location: String::new(),
        }
    }
}

/// A channel can deliver nothing more (Mitogen's `ChannelError`).
///
/// # Examples
/// ```
/// use mitogen::{ChannelError, Loss, LossKind};
/// let e = ChannelError::Dead(Loss::new(
///     LossKind::Signaled(9),
///     "web1",
///     "context web1 (id 3) disconnected: killed by signal 9",
/// ));
/// // A sender that ended its stream on purpose reads differently:
/// let end = ChannelError::SenderClosed { context: "web1".into() };
/// assert_eq!(end.kind(), None);
/// assert_eq!(end.to_string(), "channel closed by its sender in context 'web1'");
/// assert_eq!(e.kind(), Some(&LossKind::Signaled(9)));
/// assert_eq!(e.context(), Some("web1"));
/// assert!(e.to_string().ends_with("killed by signal 9"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum ChannelError {
    /// A dead message arrived: the far side is gone or refused the message.
    /// The [`Loss`] says why, by kind and in words.
    #[error("channel is dead: {0}")]
    Dead(Loss),
    /// The receiver was closed locally.
    #[error("channel is closed")]
    Closed,
    /// The normal end of a stream: the far [`Sender`](crate::Sender) was
    /// closed on purpose ([`Sender::close`](crate::Sender::close)). Nothing
    /// was lost, unlike [`ChannelError::Dead`].
    #[error("channel closed by its sender in context '{context}'")]
    SenderClosed {
        /// Name of the context the sender closed in.
        context: String,
    },
    /// [`Select::recv`](crate::Select::recv) on a select with no members
    /// left (Mitogen's "Select instance is empty").
    #[error("Select is empty: no member is left to receive from")]
    SelectEmpty,
}

impl ChannelError {
    /// Why the channel died, for programs: `None` when it was closed
    /// (locally or by its sender) rather than lost.
    pub fn kind(&self) -> Option<&LossKind> {
        match self {
            ChannelError::Dead(loss) => Some(&loss.kind),
            _ => None,
        }
    }

    /// Name of the context that was lost, refused or closed the sender;
    /// `None` when closed locally.
    pub fn context(&self) -> Option<&str> {
        match self {
            ChannelError::Dead(loss) => Some(&loss.context),
            ChannelError::SenderClosed { context } => Some(context),
            _ => None,
        }
    }
}

/// Why a context was lost, or why a message came back dead: a kind for
/// programs, the context's name and a sentence for people.
///
/// It dereferences to its text, so `loss.contains("signal")` works as it
/// did when the reason was a plain string.
///
/// # Examples
/// ```
/// use mitogen::{Loss, LossKind};
/// let loss = Loss::new(LossKind::Behind("relay".into()), "leaf", "context leaf lost behind hop relay");
/// assert!(matches!(&loss.kind, LossKind::Behind(hop) if hop == "relay"));
/// assert!(loss.contains("behind hop relay"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// What happened, for programs.
    pub kind: LossKind,
    /// Name of the context lost or refusing (never a bare id when a name is known).
    pub context: String,
    /// The whole reason, for people and logs.
    pub text: String,
}

impl Loss {
    /// A loss of `context` of `kind`, explained by `text`.
    pub fn new(kind: LossKind, context: impl Into<String>, text: impl Into<String>) -> Loss {
        Loss {
            kind,
            context: context.into(),
            text: text.into(),
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::ops::Deref for Loss {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// The kind of a [`Loss`]. Travels between contexts in `DEL_ROUTE`
/// (`docs/protocol.md`), so a loss deep in the tree keeps its kind.
///
/// # Examples
/// ```
/// use mitogen::LossKind;
/// assert_eq!(LossKind::Exited(3).to_string(), "exited with status 3");
/// assert_eq!(LossKind::Behind("db".into()).to_string(), "lost behind hop db");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LossKind {
    /// The process we started for the context exited with this status.
    Exited(i32),
    /// The process we started for the context was killed by this signal.
    Signaled(i32),
    /// The connection was closed by the far side (its process, if ours,
    /// was still running or its status was not known in time).
    Closed,
    /// A stream carried bytes that are not frames; the text quotes the
    /// decoder (e.g. `bad frame magic …`). Also reported by a child that
    /// closed its parent stream for that reason.
    Corrupt,
    /// A hop on the way to the context, named here, was lost: the context
    /// went with it.
    Behind(String),
    /// The far side refused the message or could not deliver it: refused
    /// by policy, no route, no handler, or a sender that closed.
    Refused,
    /// Shut down on request (ours or the context's own), or by our broker
    /// shutting down.
    Shutdown,
    /// The link was silent for too many keepalive intervals.
    KeepaliveTimeout,
    /// Anything else (a descriptor that could not be watched, a panic on
    /// the broker thread); the text says what.
    Other,
    /// Disconnected on request ([`Router::disconnect`](crate::Router::disconnect),
    /// [`Router::disconnect_stream`](crate::Router::disconnect_stream),
    /// [`Router::disconnect_all`](crate::Router::disconnect_all)) while the
    /// broker keeps running.
    Disconnected,
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossKind::Exited(n) => write!(f, "exited with status {n}"),
            LossKind::Signaled(n) => write!(f, "killed by signal {n}"),
            LossKind::Closed => f.write_str("connection closed by the far side"),
            LossKind::Corrupt => f.write_str("corrupt stream"),
            LossKind::Behind(hop) => write!(f, "lost behind hop {hop}"),
            LossKind::Refused => f.write_str("refused"),
            LossKind::Shutdown => f.write_str("shut down"),
            LossKind::KeepaliveTimeout => f.write_str("keepalive timeout"),
            LossKind::Other => f.write_str("lost"),
            LossKind::Disconnected => f.write_str("disconnected on request"),
        }
    }
}

impl LossKind {
    /// The kind for a `waitpid` status: exited or killed by a signal.
    pub(crate) fn of_wait_status(status: i32) -> LossKind {
        if libc::WIFSIGNALED(status) {
            LossKind::Signaled(libc::WTERMSIG(status))
        } else {
            LossKind::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// A latch was closed (Mitogen's `LatchError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThisError)]
#[error("latch is closed")]
pub struct LatchError;

/// A deadline passed before anything arrived (Mitogen's `TimeoutError`).
/// Every bounded wait (latch, receiver, channel, select, call) fails with
/// this one shape; its text rounds the time waited.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let e = mitogen::TimeoutError {
///     waited: Duration::from_micros(1_000_148),
///     what: "waiting for the result of app::f from context 'web1' (id 3)".into(),
/// };
/// assert_eq!(
///     e.to_string(),
///     "timed out after 1.0 s waiting for the result of app::f from context 'web1' (id 3)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Serialize, Deserialize)]
#[error("timed out after {} {what}", fmt_waited(*waited))]
pub struct TimeoutError {
    /// How long was waited.
    pub waited: Duration,
    /// What was being waited for, e.g. "waiting for a reply from context 'web1' (id 3)".
    pub what: String,
}

/// A wait as people read it: `250 ms` below a second, else `1.0 s`.
pub(crate) fn fmt_waited(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Error of `Latch::try_get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThisError)]
pub enum TryGetError {
    /// Nothing is queued.
    #[error("latch is empty")]
    Empty,
    /// The latch is closed.
    #[error("latch is closed")]
    Closed,
}

/// Error of `Latch::get_timeout` and `Latch::get_deadline`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum GetTimeoutError {
    /// The deadline passed: how long was waited, as for every timeout.
    #[error(transparent)]
    Timeout(TimeoutError),
    /// The latch is closed.
    #[error("latch is closed")]
    Closed,
}

/// Error of [`Select::remove`](crate::Select::remove) (Mitogen's `Select.Error`).
///
/// # Examples
/// ```
/// let mut select = mitogen::Select::new();
/// let e = select.remove(1234).unwrap_err();
/// assert_eq!(e.to_string(), "no member with key 1234 in this Select");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum SelectError {
    /// No member has this key (a receiver's handle, a call's handle, a
    /// nested select's or a latch's key).
    #[error("no member with key {key} in this Select")]
    NoMember {
        /// The key asked for.
        key: u32,
    },
}

/// Text of the dead reply to a message a handler's policy refused; the
/// caller of a refused call turns it into [`CallErrorKind::Refused`].
pub(crate) const POLICY_REFUSAL: &str = "refused by policy";

/// Text of the dead message [`Sender::close`](crate::Sender::close) sends:
/// the receiver reads it as [`ChannelError::SenderClosed`].
pub(crate) const SENDER_CLOSED: &str = "sender closed";

/// Error of `Receiver::try_recv` and `Select::try_recv`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum TryRecvError {
    /// Nothing is queued.
    #[error("receiver is empty")]
    Empty,
    /// Nothing more can arrive.
    #[error(transparent)]
    Channel(ChannelError),
}

/// Error of `Receiver::recv_timeout` and `recv_deadline`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum RecvTimeoutError {
    /// The deadline passed.
    #[error(transparent)]
    Timeout(TimeoutError),
    /// Nothing more can arrive.
    #[error(transparent)]
    Channel(ChannelError),
}

/// Why [`Sender::try_send`](crate::Sender::try_send) did not send; the
/// value comes back when there was no room.
#[derive(ThisError)]
pub enum TrySendError<T> {
    /// The receiver's flow-control window (or the stream's queue) is full.
    #[error("the receiver's flow-control window is full")]
    Full(T),
    /// The value cannot be sent: it does not encode, is too large, or the
    /// receiver's context is gone.
    #[error(transparent)]
    Failed(Error),
}

/// Why [`Sender::send_timeout`](crate::Sender::send_timeout) did not send;
/// the value comes back when time ran out.
#[derive(ThisError)]
pub enum SendTimeoutError<T> {
    /// No room in the receiver's window (or the stream's queue) in time.
    #[error("timed out after {} waiting for room to send", fmt_waited(*waited))]
    Timeout {
        /// The value, unsent.
        value: T,
        /// How long the sender waited.
        waited: Duration,
    },
    /// As [`TrySendError::Failed`].
    #[error(transparent)]
    Failed(Error),
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout { waited, .. } => f
                .debug_struct("Timeout")
                .field("waited", waited)
                .finish_non_exhaustive(),
            SendTimeoutError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        Error::Call(Box::new(e))
    }
}

impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Error {
        match e {
            RecvTimeoutError::Timeout(t) => Error::Timeout(t),
            RecvTimeoutError::Channel(c) => Error::Channel(c),
        }
    }
}

/// A stream to another context could not be set up or broke (Mitogen's `StreamError`).
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection program could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program, e.g. `ssh`.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error while talking to the new context.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The bootstrap failed; `output` holds the last lines the remote side printed.
    #[error("bootstrap of {name} failed: {reason}{}", fmt_output(output))]
    Bootstrap {
        /// Name of the context being created.
        name: String,
        /// What went wrong.
        reason: String,
        /// Last lines the connection program and target printed.
        output: String,
    },
    /// The target runs a different build of this program.
    #[error("version skew with {name}: {detail}")]
    VersionSkew {
        /// Name of the context.
        name: String,
        /// Both builds: each side's mitogen crate version, protocol
        /// version and function table hash.
        detail: String,
    },
    /// A message is larger than the maximum message size.
    #[error("message of {size} bytes exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit in force.
        max: usize,
    },
    /// No route leads to the context.
    #[error("no route to context {0}")]
    NoRoute(u32),
    /// Bad options were given to a connection method.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The broker thread has stopped: work can no longer be deferred to it.
    #[error("the broker has stopped: nothing more runs on its thread")]
    BrokerStopped,
    /// [`Router::add_handler`](crate::Router::add_handler) was given a
    /// handle that already has a handler (Mitogen refuses too).
    #[error("handle {handle} already has a handler in context {context}: delete it first (Router::del_handler)")]
    HandleInUse {
        /// The handle asked for.
        handle: u32,
        /// Name of this context.
        context: String,
    },
}

/// Why a connection could not be made, for programs that act on the cause
/// (retry later, try another host, ask for credentials): see
/// [`StreamError::kind`]. The error's text still names the context and
/// quotes what the connection program printed.
///
/// # Examples
/// ```no_run
/// use mitogen::{ConnectFailure, Error, SshOptions};
/// # mitogen::Router::with(|router| {
/// match router.ssh(SshOptions::new("web1")) {
///     Err(Error::Stream(e)) if e.kind() == Some(ConnectFailure::Refused) => {
///         eprintln!("nothing listens on web1's ssh port: {e}")
///     }
///     Err(e) => eprintln!("{e}"),
///     Ok(web1) => { /* … */ }
/// }
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The far host refused the connection (ssh: "Connection refused").
    Refused,
    /// The host name did not resolve (ssh: "Could not resolve hostname").
    UnknownHost,
    /// The connection took longer than `connect_timeout` (or ssh's own
    /// connect timeout): [`Error::connect_failure`] of an [`Error::Timeout`].
    TimedOut,
    /// Authentication or authorisation was refused: ssh's "Permission
    /// denied", sudo's "not in the sudoers file", doas's "Operation not
    /// permitted"; and every [`Error::Password`] (see
    /// [`Error::connect_failure`]).
    PermissionDenied,
    /// The ssh host key is unknown (under `enforce`) or changed: only from
    /// [`Error::connect_failure`], for an [`Error::HostKey`].
    HostKey,
    /// The connection program does not exist or is not executable.
    ProgramNotFound,
    /// The connection program exited with this status before the child
    /// said hello, for no reason recognised above.
    Exited {
        /// Its exit status.
        status: i32,
    },
    /// The connection program was killed by this signal before the child
    /// said hello.
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The container does not exist (docker, podman, kubectl, lxc, setns…).
    ContainerNotFound,
    /// The container exists but is not running.
    ContainerNotRunning,
    /// The container engine could not be reached: its daemon is down, its
    /// socket is missing, or we may not use it.
    EngineUnavailable,
    /// The target has no `/bin/sh` for the first stage: a container
    /// engine said so, or the connection program's words name the shell
    /// as not found (`sh: not found`, `sh: command not found`, `…/sh: No
    /// such file or directory`), or it exited with status 127 (command not
    /// found) without a word.
    NoShell,
    /// No candidate directory on the target is private (ours, mode 0700,
    /// not a symlink), writable and lets programs run; the reason lists
    /// each directory tried and why it was refused (cannot be created, a
    /// symlink, not owned by us, not mode 0700, cannot be written:
    /// read-only or full, cannot run programs: noexec).
    NoUsableDirectory,
    /// Writing the binary into the target's cache directory failed for
    /// want of room; the reason names the directory, the bytes needed and
    /// the bytes free. The partial file was removed.
    DiskFull,
    /// The user to run as does not exist on the target.
    UnknownUser,
    /// The container's leader process could not be found (setns).
    LeaderNotFound,
    /// The target is another architecture (or operating system) and no
    /// build of this program for it was added with
    /// [`Router::add_binary`](crate::Router::add_binary); the error names
    /// the target's `uname`.
    WrongArchitecture,
    /// The target runs another build of this program (another protocol
    /// or function table); the error names both builds: crate version,
    /// protocol, function table.
    VersionSkew,
    /// This program is dynamically linked and cannot run on the target:
    /// its ELF interpreter (dynamic loader) is missing there, or the
    /// target's C library is too old. Nothing was installed; the reason
    /// names the interpreter and how to build statically.
    DynamicBinary,
    /// The options were refused before anything ran.
    InvalidOptions,
    /// Anything else: the first stage failed (a broken upload, a checksum
    /// mismatch), the program closed the connection without exiting, an
    /// I/O error.
    BootstrapFailed,
}

impl ConnectFailure {
    /// The kinds a `StreamError::Bootstrap` reason can start with.
    pub(crate) const WORDED: [ConnectFailure; 15] = [
        ConnectFailure::Refused,
        ConnectFailure::UnknownHost,
        ConnectFailure::TimedOut,
        ConnectFailure::PermissionDenied,
        ConnectFailure::ProgramNotFound,
        ConnectFailure::ContainerNotFound,
        ConnectFailure::ContainerNotRunning,
        ConnectFailure::EngineUnavailable,
        ConnectFailure::NoShell,
        ConnectFailure::NoUsableDirectory,
        ConnectFailure::DiskFull,
        ConnectFailure::UnknownUser,
        ConnectFailure::LeaderNotFound,
        ConnectFailure::DynamicBinary,
        ConnectFailure::WrongArchitecture,
    ];

    /// The kind a bootstrap `reason` starts with (as written by its
    /// `Display`), or `BootstrapFailed`.
    fn of_reason(reason: &str) -> ConnectFailure {
        let number = |prefix: &str| {
            let rest = reason.strip_prefix(prefix)?;
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse::<i32>().ok()
        };
        if let Some(status) = number("exited with status ") {
            return ConnectFailure::Exited { status };
        }
        if let Some(signal) = number("killed by signal ") {
            return ConnectFailure::Killed { signal };
        }
        ConnectFailure::WORDED
            .into_iter()
            .find(|k| {
                reason
                    .strip_prefix(&k.to_string())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ', ';']))
            })
            .unwrap_or(ConnectFailure::BootstrapFailed)
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::UnknownHost => f.write_str("unknown host"),
            ConnectFailure::TimedOut => f.write_str("connection timed out"),
            ConnectFailure::PermissionDenied => f.write_str("permission denied"),
            ConnectFailure::HostKey => f.write_str("host key rejected"),
            ConnectFailure::ProgramNotFound => f.write_str("program not found"),
            ConnectFailure::Exited { status } => write!(f, "exited with status {status}"),
            ConnectFailure::Killed { signal } => write!(f, "killed by signal {signal}"),
            ConnectFailure::ContainerNotFound => f.write_str("container not found"),
            ConnectFailure::ContainerNotRunning => f.write_str("container not running"),
            ConnectFailure::EngineUnavailable => f.write_str("container engine unavailable"),
            ConnectFailure::NoShell => f.write_str("no shell on the target"),
            ConnectFailure::NoUsableDirectory => f.write_str("no usable directory"),
            ConnectFailure::DiskFull => f.write_str("disk full"),
            ConnectFailure::UnknownUser => f.write_str("unknown user"),
            ConnectFailure::LeaderNotFound => f.write_str("container leader process not found"),
            ConnectFailure::WrongArchitecture => f.write_str("wrong architecture"),
            ConnectFailure::VersionSkew => f.write_str("version skew"),
            ConnectFailure::DynamicBinary => f.write_str("dynamically linked binary"),
            ConnectFailure::InvalidOptions => f.write_str("invalid options"),
            ConnectFailure::BootstrapFailed => f.write_str("bootstrap failed"),
        }
    }
}

impl StreamError {
    /// Why the connection failed, or `None` for the errors of a stream
    /// that was working ([`MessageTooLarge`](StreamError::MessageTooLarge),
    /// [`NoRoute`](StreamError::NoRoute)) and of a router's use
    /// ([`BrokerStopped`](StreamError::BrokerStopped),
    /// [`HandleInUse`](StreamError::HandleInUse)).
    ///
    /// # Examples
    /// ```
    /// use mitogen::{ConnectFailure, Error, SshOptions, StreamError};
    /// mitogen::Router::with(|router| {
    ///     let mut opts = SshOptions::new("web1");
    ///     opts.ssh_path = "/nonexistent/ssh".into();
    ///     match router.ssh(opts) {
    ///         Err(Error::Stream(e)) => assert_eq!(e.kind(), Some(ConnectFailure::ProgramNotFound)),
    ///         other => panic!("{other:?}"),
    ///     }
    /// })
    /// .unwrap();
    /// ```
    pub fn kind(&self) -> Option<ConnectFailure> {
        Some(match self {
            StreamError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ConnectFailure::ProgramNotFound
                }
                _ => ConnectFailure::BootstrapFailed,
            },
            StreamError::Io { .. } => ConnectFailure::BootstrapFailed,
            StreamError::Bootstrap { reason, .. } => ConnectFailure::of_reason(reason),
            StreamError::VersionSkew { .. } => ConnectFailure::VersionSkew,
            StreamError::InvalidOptions(_) => ConnectFailure::InvalidOptions,
            StreamError::MessageTooLarge { .. }
            | StreamError::NoRoute(_)
            | StreamError::BrokerStopped
            | StreamError::HandleInUse { .. } => return None,
        })
    }
}

fn fmt_output(output: &str) -> String {
    let trimmed = output.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; it printed: {trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_short() {
        for (full, short) in [
            ("std::io::error::Error", "io::Error"),
            ("alloc::string::String", "String"),
            ("core::num::error::ParseIntError", "ParseIntError"),
            ("serde_json::error::Error", "serde_json::Error"),
            ("alloc::vec::Vec<my_app::Job>", "Vec<Job>"),
            ("core::fmt::Error", "fmt::Error"),
            (
                "alloc::boxed::Box<dyn core::error::Error + Send>",
                "Box<dyn Error + Send>",
            ),
        ] {
            assert_eq!(short_type_name(full), short, "{full}");
        }
    }

    #[test]
    fn waits_are_rounded() {
        assert_eq!(fmt_waited(Duration::from_micros(1_000_148)), "1.0 s");
        assert_eq!(fmt_waited(Duration::from_millis(2_460)), "2.5 s");
        assert_eq!(fmt_waited(Duration::from_micros(250_900)), "250 ms");
    }
}
