//! Profiling (Mitogen's `Router.profiling`): per-context counters of calls
//! served, stream bytes, broker wake-ups and queue depths; a [`Stats`]
//! snapshot of this process ([`Router::stats`]) or of another context
//! ([`Context::stats`]); a JSON dump on exit; and stack dumps of every
//! thread of a context ([`Context::dump_stacks`]).
//!
//! Profiling is a process-wide switch, off by default, inherited by every
//! context started while it is on (and by contexts started with
//! [`CommonOptions::profiling`](crate::CommonOptions::profiling)), so a
//! whole tree profiles. Off, each hook costs one relaxed atomic load.
//! Stream bytes are counted always; stats and stack dumps can be asked
//! for whether profiling is on or not.
//!
//! Requests travel on the `PROFILE` handle and are answered by the broker
//! thread (stats) or a thread it starts (stack dumps), never by the
//! dispatcher: a context stuck in a call still answers. Like calls, they
//! are accepted only from the context's parents.
//!
//! On exit, a context with profiling on writes its [`Stats`] as JSON to
//! `stats.<pid>.json` in the private directory debug logs use (see
//! [`Router::enable_debug`]); [`Stats::dump_path`] names the file. A
//! child writes it after its broker has stopped, so its counts are final;
//! the master writes it when [`Router::shutdown`] begins.

mod histogram;
mod stacks;
mod symbols;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use histogram::Histogram;
use mitogen_wire::handle::PROFILE;

use crate::broker::{lock, Stream};
use crate::context::Context;
use crate::error::Result;
use crate::message::Message;
use crate::router::{has_parent_authority, Router};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// `true` while this process profiles: the one check every hook makes.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Counts and durations of one function's calls.
struct Served {
    durations: Histogram,
    failed: u64,
}

/// Calls served by this process's dispatcher, by function: bounded by the
/// number of registered functions (only those are recorded).
static SERVED: Mutex<BTreeMap<&'static str, Served>> = Mutex::new(BTreeMap::new());
/// Most calls waiting in the dispatcher's queue at once (the running one included).
static MAX_CALL_QUEUE: AtomicU64 = AtomicU64::new(0);

/// The start of a call, when profiling.
#[inline]
pub(crate) fn call_started() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Record a call of `function` that started at `started` (from
/// [`call_started`]; `None`: not profiling).
#[inline]
pub(crate) fn call_finished(function: &'static str, started: Option<Instant>, failed: bool) {
    let Some(started) = started else { return };
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut served = lock(&SERVED);
    let entry = served.entry(function).or_insert_with(|| Served {
        durations: Histogram::new(),
        failed: 0,
    });
    entry.durations.record(ns);
    entry.failed += u64::from(failed);
}

/// Note the dispatcher's queue depth; `depth` runs only when profiling.
#[inline]
pub(crate) fn call_queue(depth: impl FnOnce() -> usize) {
    if enabled() {
        MAX_CALL_QUEUE.fetch_max(depth() as u64, Ordering::Relaxed);
    }
}

/// A broker's counters (a field of the broker); updated only when profiling.
#[derive(Default)]
pub(crate) struct BrokerCounters {
    wakeups: AtomicU64,
    max_deferred: AtomicU64,
}

impl BrokerCounters {
    /// The broker's poll returned.
    #[inline]
    pub(crate) fn woke(&self) {
        if enabled() {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The broker took `n` deferred closures at once.
    #[inline]
    pub(crate) fn deferred(&self, n: usize) {
        if enabled() {
            self.max_deferred.fetch_max(n as u64, Ordering::Relaxed);
        }
    }
}

/// A snapshot of one context's profile ([`Router::stats`],
/// [`Context::stats`]). Durations are in nanoseconds.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// router.enable_profiling();
/// let stats = router.stats();
/// assert_eq!(stats.context_id, 0);
/// assert!(stats.profiling);
/// println!("{}", serde_json::to_string_pretty(&stats).unwrap());
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The context's id.
    pub context_id: u32,
    /// The context's name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Whether it was profiling when the snapshot was taken; the counters
    /// below other than stream bytes stay 0 while it is not.
    pub profiling: bool,
    /// Calls served, per function, sorted by name.
    pub functions: Vec<FunctionStats>,
    /// Its streams: to its parent and to each direct child.
    pub streams: Vec<StreamStats>,
    /// Times the broker thread woke up from polling.
    pub broker_wakeups: u64,
    /// Most closures the broker took from its work queue at once.
    pub max_broker_queue: u64,
    /// Most calls queued in the dispatcher at once, the running one included.
    pub max_call_queue: u64,
    /// Where this context writes these stats as JSON when it exits
    /// (profiling on; see [`Router::set_profiling`]).
    pub dump_path: Option<String>,
}

impl Stats {
    /// The stats of a function, by its full name (`crate::module::fn`) or
    /// by its last path segment.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let stats = router.stats();
    /// assert!(stats.function("add").is_none()); // the master serves no calls
    /// # }).unwrap();
    /// ```
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| {
            f.function == name
                || f.function
                    .rsplit_once("::")
                    .is_some_and(|(_, last)| last == name)
        })
    }

    /// Calls served, all functions together.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert_eq!(router.stats().calls(), 0);
    /// # }).unwrap();
    /// ```
    pub fn calls(&self) -> u64 {
        self.functions.iter().map(|f| f.calls).sum()
    }
}

/// Calls of one function served by a context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's registered name (`crate::module::fn`).
    pub function: String,
    /// Calls served.
    pub calls: u64,
    /// Of which failed (returned `Err` or panicked).
    pub failed: u64,
    /// Time spent in them, together.
    pub total_ns: u64,
    /// Median duration (within 1/8: a log-linear histogram bucket).
    pub p50_ns: u64,
    /// 99th percentile duration (within 1/8).
    pub p99_ns: u64,
    /// Longest call.
    pub max_ns: u64,
}

/// Traffic on one stream of a context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamStats {
    /// The stream's name (the context at its far end).
    pub name: String,
    /// The id of the context at its far end.
    pub context_id: u32,
    /// Bytes read from it, frame headers included.
    pub bytes_in: u64,
    /// Bytes written to it, frame headers included.
    pub bytes_out: u64,
    /// Most bytes queued on it waiting for the peer to read.
    pub max_queued_bytes: u64,
}

/// The stats of `router`'s process, with `extra` streams (gone from the
/// router's tables by now) counted too.
fn snapshot(router: &Router, extra: &[Arc<Stream>]) -> Stats {
    let mut streams: Vec<Arc<Stream>> = extra.to_vec();
    let parent = router
        .parent_ids()
        .first()
        .and_then(|&p| router.stream_to(p));
    for s in parent.into_iter().chain(router.child_streams()) {
        if !streams.iter().any(|x| Arc::ptr_eq(x, &s)) {
            streams.push(s);
        }
    }
    let functions = lock(&SERVED)
        .iter()
        .map(|(name, s)| FunctionStats {
            function: name.to_string(),
            calls: s.durations.count(),
            failed: s.failed,
            total_ns: s.durations.total(),
            p50_ns: s.durations.quantile(0.5),
            p99_ns: s.durations.quantile(0.99),
            max_ns: s.durations.max(),
        })
        .collect();
    let (broker_wakeups, max_broker_queue) = {
        let c = router.broker().counters();
        (
            c.wakeups.load(Ordering::Relaxed),
            c.max_deferred.load(Ordering::Relaxed),
        )
    };
    Stats {
        context_id: router.context_id(),
        name: router.name_of(router.context_id()),
        pid: std::process::id(),
        profiling: enabled(),
        functions,
        streams: streams
            .iter()
            .map(|s| StreamStats {
                name: s.name.clone(),
                context_id: s.remote_id(),
                bytes_in: s.bytes_received.load(Ordering::Relaxed),
                bytes_out: s.bytes_sent.load(Ordering::Relaxed),
                max_queued_bytes: s.max_queued() as u64,
            })
            .collect(),
        broker_wakeups,
        max_broker_queue,
        max_call_queue: MAX_CALL_QUEUE.load(Ordering::Relaxed),
        dump_path: dump_file().map(|(path, _)| path.display().to_string()),
    }
}

/// The file this process's stats go to on exit: reserved (created empty,
/// mode 0600, never through a symlink) when profiling is first turned on.
fn dump_file() -> Option<&'static (PathBuf, Mutex<std::fs::File>)> {
    static FILE: OnceLock<Option<(PathBuf, Mutex<std::fs::File>)>> = OnceLock::new();
    if !enabled() && FILE.get().is_none() {
        return None;
    }
    FILE.get_or_init(|| {
        let (path, file) = crate::log::private_file("stats", "json")?;
        Some((path, Mutex::new(file)))
    })
    .as_ref()
}

/// Write this process's stats to its dump file (profiling on only).
fn write_dump(stats: &Stats) {
    use std::io::{Seek, Write};
    if !stats.profiling {
        return;
    }
    let Some((path, file)) = dump_file() else {
        tracing::warn!("profiling: no private directory to write the stats dump in");
        return;
    };
    let mut file = lock(file);
    let written = serde_json::to_vec_pretty(stats)
        .map_err(std::io::Error::other)
        .and_then(|json| {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(&json)?;
            file.write_all(b"\n")
        });
    match written {
        Ok(()) => tracing::debug!("profiling: stats written to {}", path.display()),
        Err(e) => tracing::warn!("profiling: cannot write {}: {e}", path.display()),
    }
}

/// A child's configuration asks it to profile.
pub(crate) fn start_in_child() {
    ENABLED.store(true, Ordering::Relaxed);
    let _ = dump_file();
}

/// A child is done: its broker has stopped. `parent` is the stream to its
/// parent, gone from the router's tables by now.
pub(crate) fn child_exiting(router: &Router, parent: &Arc<Stream>) {
    if enabled() {
        write_dump(&snapshot(router, std::slice::from_ref(parent)));
    }
}

/// The master's router is shutting down.
pub(crate) fn master_shutting_down(router: &Router) {
    if enabled() && router.context_id() == 0 {
        write_dump(&snapshot(router, &[]));
    }
}

/// What a `PROFILE` request asks for.
const ASK_STATS: u8 = 0;
const ASK_STACKS: u8 = 1;

/// Answer `PROFILE` requests from this context's parents.
pub(crate) fn install(router: &Router) {
    router.add_service(
        Router::own(answer),
        PROFILE,
        Some(Arc::new(has_parent_authority)),
    );
}

/// Broker thread: answer a stats request at once; a stack dump on a
/// thread of its own (it waits for every thread to answer a signal).
fn answer(router: &Router, msg: Message) {
    match msg.unpickle::<u8>() {
        Ok(ASK_STATS) => {
            if let Err(e) = msg.reply(&snapshot(router, &[])) {
                tracing::warn!("profiling: cannot send stats: {e}");
            }
        }
        Ok(ASK_STACKS) => {
            let spawned = std::thread::Builder::new()
                .name("mitogen-stacks".into())
                .spawn({
                    let msg = msg.clone();
                    move || {
                        if let Err(e) = msg.reply(&stacks::dump()) {
                            tracing::warn!("profiling: cannot send the stack dump: {e}");
                        }
                    }
                });
            if let Err(e) = spawned {
                router.refuse(
                    &msg,
                    &format!("cannot start a thread for the stack dump: {e}"),
                );
            }
        }
        Ok(other) => router.refuse(&msg, &format!("unknown profiling request {other}")),
        Err(e) => router.refuse(&msg, &format!("bad profiling request: {e}")),
    }
}

impl Router {
    /// Turn profiling on for this process and every context started from
    /// now on, down the whole tree (Mitogen's `Router.profiling`). Same as
    /// `set_profiling(true)`; see [`Router::set_profiling`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn add(a: i32, b: i32) -> i32 { a + b }
    /// # fn main() {
    /// mitogen::main(|router| {
    ///     router.enable_profiling();
    ///     let child = router.local(Default::default())?;
    ///     child.call(add::remote, (1, 2))?;
    ///     let stats = child.stats()?;
    ///     assert_eq!(stats.function("add").unwrap().calls, 1);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn enable_profiling(&self) {
        self.set_profiling(true);
    }

    /// Turn profiling on or off. It is a process-wide switch (every router
    /// in this process shares it), inherited by the contexts started while
    /// it is on. Profiling records, per context: calls served per function
    /// (count, failures, p50/p99/max duration in a fixed-size histogram),
    /// broker wake-ups, and the deepest broker, dispatcher and stream
    /// queues; read them with [`Router::stats`] or [`Context::stats`]. Each
    /// profiling context writes its stats as JSON when it exits
    /// ([`Stats::dump_path`]). Off, the hot path pays one relaxed atomic
    /// load per hook.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router.set_profiling(true);
    /// assert!(router.profiling());
    /// router.set_profiling(false);
    /// assert!(!router.profiling());
    /// # }).unwrap();
    /// ```
    pub fn set_profiling(&self, on: bool) {
        ENABLED.store(on, Ordering::Relaxed);
        if on {
            let _ = dump_file();
        }
    }

    /// Whether this process profiles (see [`Router::set_profiling`]).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router.enable_profiling();
    /// assert!(router.profiling());
    /// # }).unwrap();
    /// ```
    pub fn profiling(&self) -> bool {
        enabled()
    }

    /// A snapshot of this process's profile: see [`Stats`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let stats = router.stats();
    /// assert_eq!(stats.pid, std::process::id());
    /// assert!(stats.streams.is_empty()); // no children yet
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> Stats {
        snapshot(self, &[])
    }

    /// The stack of every thread of this process but the calling one, as
    /// text: each thread's name and id, then its frames (see
    /// [`Context::dump_stacks`] for what release builds show).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let text = router.dump_stacks();
    /// assert!(text.starts_with("thread '"), "{text}"); // the broker's, at least
    /// eprintln!("{text}");
    /// # }).unwrap();
    /// ```
    pub fn dump_stacks(&self) -> String {
        stacks::dump()
    }
}

impl Context {
    /// The profile of this context: see [`Stats`] and
    /// [`Router::set_profiling`]. Answered by the context's broker thread,
    /// so it answers while a call runs there.
    ///
    /// # Errors
    /// [`Error::Channel`](crate::Error::Channel) when the context is lost
    /// or refuses (only its parents may ask).
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn add(a: i32, b: i32) -> i32 { a + b }
    /// # fn main() {
    /// # mitogen::Router::with(|router| {
    /// router.enable_profiling();
    /// let child = router.local(Default::default()).unwrap();
    /// child.call(add::remote, (2, 3)).unwrap();
    /// let stats = child.stats().unwrap();
    /// let add = stats.function("add").unwrap();
    /// println!("{} calls, p99 {} ns", add.calls, add.p99_ns);
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        if self.context_id() == self.router().context_id() {
            return Ok(self.router().stats());
        }
        self.ask(ASK_STATS)?.unpickle()
    }

    /// The stack of every thread of this context, as text: each thread's
    /// name and id, then its frames, innermost first. For a hung call: the
    /// dispatcher runs calls on the thread named `main`.
    ///
    /// The request is served by a thread of its own, which signals each
    /// thread in turn (a real-time signal, `SIGRTMIN+7`) and waits up to
    /// 1 s for it to record its return addresses; a thread that does not
    /// answer is listed with the reason. Binaries with symbols show
    /// function names, read from the executable's ELF symbol table (no
    /// files or lines, no inlined functions). A release build with
    /// `strip = "symbols"` (as this workspace's) shows each frame as an
    /// offset into the executable: resolve it with
    /// `addr2line -f -e <the same build, unstripped> <offset>`, or build
    /// with `strip = "debuginfo"` to keep function names.
    ///
    /// # Errors
    /// [`Error::Channel`](crate::Error::Channel) when the context is lost
    /// or refuses (only its parents may ask).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// println!("{}", child.dump_stacks().unwrap());
    /// # }).unwrap();
    /// ```
    pub fn dump_stacks(&self) -> Result<String> {
        if self.context_id() == self.router().context_id() {
            return Ok(self.router().dump_stacks());
        }
        self.ask(ASK_STACKS)?.unpickle()
    }

    /// Send a `PROFILE` request and wait for the answer.
    fn ask(&self, what: u8) -> Result<Message> {
        self.send_await(Message::pickled(&what, PROFILE)?, None)
    }
}
