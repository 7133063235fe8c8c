//! The [`Broker`]: one I/O thread per process that moves bytes.
//!
//! It owns a mio `Poll` and every descriptor: streams to other contexts,
//! output pipes of children, pidfds of child processes. Other threads talk to
//! it only by [`Broker::defer`]ring closures; wake-ups are coalesced so a
//! burst of requests costs one `write` to the waker. It knows nothing of
//! routing: complete frames are handed to a [`StreamEvents`] implementation
//! (the router).
//!
//! Each wake-up reads a descriptor until it would block or reports end of
//! file (polling is edge-triggered, so an end of file that came with the
//! last data is seen only then), but at most 1 MiB and 256 frames per
//! stream, and 128 KiB of a child's output, whose lines are cut at 64 KiB.
//! A descriptor left with unread bytes is read again on the next turn, after
//! the others: one busy peer cannot starve the rest or fill memory. A panic
//! on the broker thread is logged and stops the broker as a shutdown would,
//! so every waiter gets a dead message naming it and [`Broker::join`] returns.

mod core;
mod stream;
mod timer;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use mio::{Poll, Token, Waker};

pub(crate) use self::core::{panic_text, Core};
pub(crate) use stream::{Fds, SendError, Stream, StreamEvents, Wait};
pub use timer::Timer;

use crate::error::{Result, StreamError};
use crate::signal::{self, Emitter, Subject, Subscription, Table};
use crate::sync::Latch;

const WAKER: Token = Token(usize::MAX);
const RUNNING: u8 = 0;
const SHUTTING_DOWN: u8 = 1;
const STOPPED: u8 = 2;

type Deferred = Box<dyn FnOnce(&mut Core) + Send>;

/// Handle on a process's I/O thread (Mitogen's `Broker`). Cheap to clone.
///
/// Most programs never touch it: a [`Router`](crate::Router) makes and owns
/// one. It is public for `defer`, timers and shutdown control.
///
/// # Examples
/// ```
/// let broker = mitogen::Broker::new().unwrap();
/// let answer = broker.defer_sync(|| 6 * 7).unwrap();
/// assert_eq!(answer, 42);
/// broker.shutdown();
/// broker.join();
/// ```
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    waker: Waker,
    queue: Mutex<Vec<Deferred>>,
    wake_pending: AtomicBool,
    next_token: AtomicUsize,
    state: AtomicU8,
    thread_id: Mutex<Option<ThreadId>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: Latch<()>,
    shutdown_timeout_ms: AtomicUsize,
    /// Streams and child processes registered: what `keep_alive` reports.
    alive: AtomicUsize,
    /// Listeners of its signals (`before_shutdown`, `shutdown`, `exit`).
    signals: Table,
    /// Wake-ups and queue depth, counted while profiling.
    counters: crate::profile::BrokerCounters,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("state", &self.shared.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl Broker {
    /// Start a broker thread.
    ///
    /// # Errors
    /// The poller or thread could not be created.
    pub fn new() -> std::io::Result<Broker> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let broker = Broker {
            shared: Arc::new(Shared {
                waker,
                queue: Mutex::new(Vec::new()),
                wake_pending: AtomicBool::new(false),
                next_token: AtomicUsize::new(1),
                state: AtomicU8::new(RUNNING),
                thread_id: Mutex::new(None),
                thread: Mutex::new(None),
                stopped: Latch::new(),
                shutdown_timeout_ms: AtomicUsize::new(5000),
                alive: AtomicUsize::new(0),
                signals: Table::default(),
                counters: Default::default(),
            }),
        };
        let core = Core::new(poll, broker.clone());
        let handle = std::thread::Builder::new()
            .name("mitogen-broker".into())
            .spawn(move || core.run())?;
        *lock(&broker.shared.thread_id) = Some(handle.thread().id());
        *lock(&broker.shared.thread) = Some(handle);
        Ok(broker)
    }

    /// Run `f` on the broker thread: immediately when called from it,
    /// otherwise soon. Safe from any thread. Work deferred during shutdown
    /// still runs.
    ///
    /// # Errors
    /// [`StreamError::BrokerStopped`] once the broker thread has stopped:
    /// `f` is dropped without running (Mitogen raises there too).
    ///
    /// # Examples
    /// ```
    /// let broker = mitogen::Broker::new().unwrap();
    /// broker.defer(|| println!("on the broker thread")).unwrap();
    /// broker.shutdown();
    /// broker.join();
    /// assert!(broker.defer(|| {}).is_err());
    /// ```
    pub fn defer(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        if self.on_broker_thread() {
            f();
            return Ok(());
        }
        if self.try_defer_core(move |_| f()) {
            Ok(())
        } else {
            Err(StreamError::BrokerStopped.into())
        }
    }

    /// Run `f` on the broker thread and wait for its result.
    ///
    /// # Errors
    /// [`LatchError`](crate::LatchError) if the broker stopped before running it.
    pub fn defer_sync<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, crate::LatchError> {
        if self.on_broker_thread() {
            return Ok(f());
        }
        let latch = Latch::new();
        let guard = CloseOnDrop(latch.clone());
        self.defer_core(move |_| {
            let _ = guard.0.put(f());
        });
        latch.get()
    }

    pub(crate) fn defer_core(&self, f: impl FnOnce(&mut Core) + Send + 'static) {
        self.try_defer_core(f);
    }

    /// Queue `f` for the broker thread; `false` when the broker has
    /// stopped (`f` is dropped here, which wakes any waiter it holds).
    fn try_defer_core(&self, f: impl FnOnce(&mut Core) + Send + 'static) -> bool {
        let mut queue = lock(&self.shared.queue);
        if self.shared.state.load(Ordering::Acquire) == STOPPED {
            drop(queue);
            drop(f);
            return false;
        }
        queue.push(Box::new(f));
        drop(queue);
        if !self.on_broker_thread() && !self.shared.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.shared.waker.wake();
        }
        true
    }

    /// Run `f` on the broker thread after `delay`. The returned [`Timer`] can cancel it.
    pub fn schedule(&self, delay: Duration, f: impl FnOnce() + Send + 'static) -> Timer {
        let timer = Timer::new();
        let t2 = timer.clone();
        self.defer_core(move |core| core.add_timer(delay, t2, Box::new(move |_| f())));
        timer
    }

    pub(crate) fn new_token(&self) -> usize {
        self.shared.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// `true` on the broker's own thread.
    pub fn on_broker_thread(&self) -> bool {
        *lock(&self.shared.thread_id) == Some(std::thread::current().id())
    }

    /// Ask the broker to close its streams gracefully and stop: queued
    /// messages are flushed, children are given [`Broker::shutdown_timeout`]
    /// to exit, then are sent SIGTERM and finally SIGKILL. Returns at once;
    /// see [`Broker::join`].
    pub fn shutdown(&self) {
        if self
            .shared
            .state
            .compare_exchange(RUNNING, SHUTTING_DOWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.defer_core(Core::begin_shutdown);
        }
    }

    /// Wait until the broker thread has stopped.
    pub fn join(&self) {
        let _ = self.shared.stopped.get();
        if let Some(h) = lock(&self.shared.thread).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Profiling counters of this broker.
    pub(crate) fn counters(&self) -> &crate::profile::BrokerCounters {
        &self.shared.counters
    }

    /// `true` while streams or child processes are registered (Mitogen's `keep_alive`).
    pub fn keep_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed) > 0
    }

    /// `true` once the broker thread has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == STOPPED
    }

    /// `true` once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) != RUNNING
    }

    /// Grace given to streams and children during shutdown (default 5 s).
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.shutdown_timeout_ms.load(Ordering::Relaxed) as u64)
    }

    /// Change [`Broker::shutdown_timeout`].
    pub fn set_shutdown_timeout(&self, timeout: Duration) {
        self.shared
            .shutdown_timeout_ms
            .store(timeout.as_millis() as usize, Ordering::Relaxed);
    }
}

/// Signals (see [`mitogen::signal`](crate::signal)): each callback runs on
/// the broker thread, must not block, and has its panics caught and logged.
impl Broker {
    /// Call `f` once [`Broker::shutdown`] was called, before the
    /// `shutdown` listeners: for work that needs the process intact, as a
    /// parent may signal a child that is slow to shut down (Mitogen's
    /// `before_shutdown`).
    ///
    /// # Examples
    /// ```
    /// let broker = mitogen::Broker::new().unwrap();
    /// let _sub = broker.on_before_shutdown(|| eprintln!("shutting down soon"));
    /// broker.shutdown();
    /// broker.join();
    /// ```
    pub fn on_before_shutdown(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.shared
            .signals
            .listen(Subject::Own, signal::BEFORE_SHUTDOWN, move |_: &()| f())
    }

    /// Call `f` when shutdown begins, before any stream is asked to close
    /// (Mitogen's Broker `shutdown` signal).
    ///
    /// # Examples
    /// ```
    /// let broker = mitogen::Broker::new().unwrap();
    /// let _sub = broker.on_shutdown(|| eprintln!("shutdown begins"));
    /// broker.shutdown();
    /// broker.join();
    /// ```
    pub fn on_shutdown(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.shared
            .signals
            .listen(Subject::Own, signal::SHUTDOWN, move |_: &()| f())
    }

    /// Call `f` just before the broker thread ends: every stream has
    /// closed and its disconnects have fired (Mitogen's Broker `exit`).
    /// Also after a panic on the broker thread.
    ///
    /// # Examples
    /// ```
    /// let broker = mitogen::Broker::new().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// broker.on_exit(move || tx.send("exited").unwrap()).detach();
    /// broker.shutdown();
    /// broker.join();
    /// assert_eq!(rx.recv().unwrap(), "exited");
    /// ```
    pub fn on_exit(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.shared
            .signals
            .listen(Subject::Own, signal::EXIT, move |_: &()| f())
    }

    /// Its listeners (the router registers its own on `exit`).
    pub(crate) fn signals(&self) -> &Table {
        &self.shared.signals
    }
}

impl Emitter for Broker {}

impl signal::sealed::Sealed for Broker {
    fn signals_of(&self) -> (Table, Subject, String) {
        (
            self.shared.signals.clone(),
            Subject::Own,
            "the broker".into(),
        )
    }
}

/// Closes a latch when dropped, so a waiter wakes even if the work holding
/// it is discarded.
struct CloseOnDrop<T>(Latch<T>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The hash map of tables consulted per message (handlers, routes, broker
/// entries, flow windows): foldhash, seeded per process, is several times
/// cheaper than SipHash on these small integer keys. Keys there are ours
/// (handles, ids, tokens) or only looked up, never inserted by a peer at will.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait on `cv` with `guard`, until `deadline` if given (a spurious or
/// timed-out wake-up returns too: callers re-check their condition).
pub(crate) fn wait_on<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    deadline: Option<std::time::Instant>,
) -> std::sync::MutexGuard<'a, T> {
    match deadline {
        None => cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            cv.wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0
        }
    }
}
