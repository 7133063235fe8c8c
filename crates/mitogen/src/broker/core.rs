//! The broker thread's state and event loop.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use mitogen_wire::Deframer;

use super::{lock, Broker, Deferred, FastMap, Stream, StreamEvents, Timer, STOPPED, WAKER};
use crate::error::{Loss, LossKind};
use crate::message::Message;
use crate::signal::{self, Subject};
use crate::sys;

/// Grace between SIGTERM and SIGKILL, and after SIGKILL before a child is
/// left to the background reaper.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long the loss of a stream to a child process waits for that
/// process's exit status when the stream ended first (a killed process's
/// descriptors close just before its exit is reported).
const EXIT_WAIT: Duration = Duration::from_millis(250);
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes read from one descriptor per wake-up. What is left is read on
/// the next turn of the loop, after every other ready descriptor, timer and
/// deferred closure has had its turn, so one busy peer cannot starve the rest.
const READ_BUDGET: usize = 1 << 20;
/// Most frames handed over from one stream per wake-up: a flood of small
/// frames costs more to dispatch than to read.
const FRAME_BUDGET: usize = 256;
/// Most bytes of a child's output read per wake-up: each line is logged on
/// this thread.
const LINES_BUDGET: usize = 128 * 1024;
/// Longest line of a child's output forwarded whole: longer ones are cut
/// into pieces of this size, so an endless line costs bounded memory.
const MAX_LINE: usize = 64 * 1024;

thread_local! {
    /// The stream whose frames the broker thread is handing over, and
    /// whether a full output queue asked for it to be paused.
    static READING: Cell<(Option<usize>, bool)> = const { Cell::new((None, false)) };
}

/// Broker thread: a message being handed over filled an output queue: stop
/// reading the stream it came from. Returns that stream's token.
pub(crate) fn pause_current_reader() -> Option<usize> {
    READING.with(|r| {
        let (token, _) = r.get();
        r.set((token, token.is_some()));
        token
    })
}

type LineFn = Box<dyn FnMut(Option<&[u8]>) + Send>;
type ExitFn = Box<dyn FnOnce(i32) + Send>;

enum Entry {
    Stream {
        stream: Arc<Stream>,
        fd: RawFd,
        deframer: Deframer,
        events: Arc<dyn StreamEvents>,
        write_token: Option<usize>,
        /// Not read until the output queue it filled drains.
        paused: bool,
    },
    WriteSide {
        stream_token: usize,
    },
    Lines {
        fd: OwnedFd,
        buf: Vec<u8>,
        on_line: LineFn,
    },
    Child {
        pid: u32,
        pidfd: OwnedFd,
        on_exit: Option<ExitFn>,
    },
}

/// State owned by the broker thread; reached through `Broker::defer_core`.
pub(crate) struct Core {
    poll: Poll,
    broker: Broker,
    entries: FastMap<usize, Entry>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_fns: HashMap<u64, (Timer, Deferred)>,
    next_timer: u64,
    shutdown_deadline: Option<Instant>,
    /// How far a timed-out shutdown has escalated.
    escalation: Escalation,
    /// Descriptors whose read budget ran out while more may be waiting:
    /// edge-triggered polling reports them no more, so they are read again
    /// on the next turn.
    read_again: Vec<usize>,
    /// Streams to child processes that ended before their process: their
    /// owner hears of the loss once the exit status is known (bounded).
    held: Vec<Held>,
    /// Exit statuses of children reaped while their stream was still open.
    statuses: HashMap<u32, i32>,
}

/// A closed stream whose loss waits for its process to exit.
struct Held {
    token: usize,
    pid: u32,
    stream: Arc<Stream>,
    events: Arc<dyn StreamEvents>,
    cause: Loss,
    timer: Timer,
}

/// Steps of a shutdown that ran out of time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escalation {
    /// Streams are still closing gracefully.
    Grace,
    /// Streams dropped, children sent SIGTERM.
    Terminated,
    /// Children sent SIGKILL.
    Killed,
}

/// How far [`Core::drain_frames`] got.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Drain {
    /// Every complete frame was handed over.
    Done,
    /// The frame budget ran out first.
    Budget,
    /// The stream is paused (a frame filled an output queue).
    Paused,
}

/// What one `read` of a stream brought.
enum ReadStep {
    /// `n` bytes; `short` when fewer than asked for (the descriptor was
    /// emptied).
    Data { n: usize, short: bool },
    /// Nothing more to read for now.
    Drained,
    /// The stream is over; the reason.
    Closed(String),
}

impl Core {
    pub(super) fn new(poll: Poll, broker: Broker) -> Core {
        Core {
            poll,
            broker,
            entries: FastMap::default(),
            timers: BinaryHeap::new(),
            timer_fns: HashMap::new(),
            next_timer: 0,
            shutdown_deadline: None,
            escalation: Escalation::Grace,
            read_again: Vec::new(),
            held: Vec::new(),
            statuses: HashMap::new(),
        }
    }

    fn update_alive(&self) {
        let n = self
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Stream { .. } | Entry::Child { .. }))
            .count();
        self.broker.shared.alive.store(n, Ordering::Relaxed);
    }

    /// Register a stream: frames read from it go to `events`. `deframer` may
    /// already hold bytes read during the bootstrap.
    pub(crate) fn add_stream(
        &mut self,
        stream: Arc<Stream>,
        deframer: Deframer,
        events: Arc<dyn StreamEvents>,
    ) {
        let Some(fd) = stream.read_fd() else {
            let cause = cause_of(stream.name.clone(), "closed before registration");
            report(&stream, &events, &cause);
            return;
        };
        let token = stream.token;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        {
            let why = format!("cannot watch descriptor: {e}");
            report(&stream, &events, &cause_of(stream.name.clone(), &why));
            return;
        }
        let mut write_token = None;
        if let Some(wfd) = stream.separate_write_fd() {
            let wt = self.broker.new_token();
            // Registered with no interest yet: watch_writable adds it on demand.
            let _ = sys::set_nonblocking(wfd, true);
            self.entries.insert(
                wt,
                Entry::WriteSide {
                    stream_token: token,
                },
            );
            write_token = Some(wt);
        }
        self.entries.insert(
            token,
            Entry::Stream {
                stream: stream.clone(),
                fd,
                deframer,
                events,
                write_token,
                paused: false,
            },
        );
        self.update_alive();
        // Bytes buffered during the bootstrap may already hold whole frames.
        let mut frames = FRAME_BUDGET;
        if self.drain_frames(token, &mut frames) == Drain::Budget {
            self.read_again.push(token);
        }
        if self.shutdown_deadline.is_some() && !stream.begin_close() {
            self.disconnect(token, "broker shutdown");
        }
    }

    /// Start or stop watching a stream's write side.
    pub(crate) fn watch_writable(&mut self, token: usize, on: bool) {
        let Some(Entry::Stream {
            stream,
            fd,
            write_token,
            ..
        }) = self.entries.get(&token)
        else {
            return;
        };
        let stream = stream.clone();
        let res = match write_token {
            None => {
                let interest = if on {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.poll
                    .registry()
                    .reregister(&mut SourceFd(fd), Token(token), interest)
            }
            Some(wt) => match stream.separate_write_fd() {
                Some(wfd) if on => self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&wfd), Token(*wt), Interest::WRITABLE)
                    .or_else(|_| {
                        self.poll.registry().reregister(
                            &mut SourceFd(&wfd),
                            Token(*wt),
                            Interest::WRITABLE,
                        )
                    }),
                Some(wfd) => self.poll.registry().deregister(&mut SourceFd(&wfd)),
                None => Ok(()),
            },
        };
        if let Err(e) = res {
            self.disconnect(token, &format!("cannot watch descriptor: {e}"));
            return;
        }
        if on {
            // It may be writable already (edge-triggered): try now.
            self.flush(token);
        }
    }

    fn flush(&mut self, token: usize) {
        let Some(Entry::Stream { stream, .. }) = self.entries.get(&token) else {
            return;
        };
        let mut resumed = Vec::new();
        let res = stream.flush(&mut resumed);
        self.resume(resumed);
        match res {
            Ok(true) => {
                let wt = matches!(
                    self.entries.get(&token),
                    Some(Entry::Stream {
                        write_token: Some(_),
                        ..
                    })
                );
                if wt {
                    self.watch_writable(token, false);
                } else if let Some(Entry::Stream { fd, .. }) = self.entries.get(&token) {
                    let _ = self.poll.registry().reregister(
                        &mut SourceFd(fd),
                        Token(token),
                        Interest::READABLE,
                    );
                }
            }
            Ok(false) => {}
            Err(e) => self.closed(token, LossKind::Closed, format!("write failed: {e}")),
        }
    }

    /// Read what a stream has, up to [`READ_BUDGET`] bytes and
    /// [`FRAME_BUDGET`] frames, handing over frames as they complete. When a
    /// budget runs out the stream is read again next turn: no new edge
    /// would report the bytes left.
    ///
    /// A short read ends the turn (the socket was empty: anything arriving
    /// later makes a new edge) unless `to_the_end`: then reading goes on to
    /// `WouldBlock` or end of file. Callers ask for that when the event said
    /// the peer closed (an end of file that came with the last data is
    /// reported once, together with it) and when re-reading.
    fn read_stream(&mut self, token: usize, to_the_end: bool) {
        let mut bytes = READ_BUDGET;
        let mut frames = FRAME_BUDGET;
        loop {
            // Frames left from last turn go first, so at most one read's
            // worth waits in the deframer.
            match self.drain_frames(token, &mut frames) {
                Drain::Done => {}
                Drain::Budget => {
                    self.read_again.push(token);
                    return;
                }
                Drain::Paused => return,
            }
            let Some(step) = self.read_once(token) else {
                return;
            };
            match step {
                ReadStep::Data { n, .. } if n >= bytes => {
                    self.read_again.push(token);
                    return;
                }
                ReadStep::Data { n, short } if to_the_end || !short => bytes -= n,
                ReadStep::Data { .. } | ReadStep::Drained => {
                    if self.drain_frames(token, &mut frames) == Drain::Budget {
                        self.read_again.push(token);
                    }
                    return;
                }
                ReadStep::Closed(reason) => {
                    // Deliver what arrived before the end of file, full
                    // queues or not: it is already in memory.
                    let mut unbounded = usize::MAX;
                    while self.drain_frames(token, &mut unbounded) == Drain::Paused {
                        if let Some(Entry::Stream { paused, .. }) = self.entries.get_mut(&token) {
                            *paused = false;
                        }
                    }
                    self.closed(token, LossKind::Closed, reason);
                    return;
                }
            }
        }
    }

    /// One `read` into the stream's deframer; `None` if it is gone.
    fn read_once(&mut self, token: usize) -> Option<ReadStep> {
        let Some(Entry::Stream {
            stream,
            fd,
            deframer,
            ..
        }) = self.entries.get_mut(&token)
        else {
            return None;
        };
        let spare = deframer.spare(READ_CHUNK);
        let len = spare.len();
        let res = sys::read(*fd, spare);
        deframer.commit(len, *res.as_ref().unwrap_or(&0));
        Some(match res {
            Ok(0) => ReadStep::Closed(EOF.into()),
            Ok(n) => {
                stream.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                ReadStep::Data { n, short: n < len }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadStep::Drained,
            // A pseudo-terminal master reads EIO once the child is gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => ReadStep::Closed(EOF.into()),
            Err(e) => ReadStep::Closed(format!("read failed: {e}")),
        })
    }

    /// Hand over the stream's complete frames, at most `budget` of them
    /// (counted down). Stops early when the budget runs out, or when a frame
    /// filled an output queue ([`pause_current_reader`]): the stream is then
    /// paused until that queue drains. A paused stream hands over nothing.
    fn drain_frames(&mut self, token: usize, budget: &mut usize) -> Drain {
        let mut failure = None;
        let mut result = Drain::Done;
        if let Some(Entry::Stream {
            stream,
            deframer,
            events,
            paused,
            ..
        }) = self.entries.get_mut(&token)
        {
            if *paused {
                return Drain::Paused;
            }
            loop {
                if *budget == 0 {
                    result = Drain::Budget;
                    break;
                }
                match deframer.next_frame() {
                    Ok(Some(frame)) => {
                        *budget -= 1;
                        READING.with(|r| r.set((Some(token), false)));
                        events.on_message(stream, Message::from_frame(frame));
                        let (_, pause) = READING.with(|r| r.replace((None, false)));
                        if pause {
                            *paused = true;
                            result = Drain::Paused;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(format!("corrupt stream from {}: {e}", stream.name));
                        break;
                    }
                }
            }
        }
        if let Some(reason) = failure {
            tracing::error!("{reason}; closing it");
            self.closed(token, LossKind::Corrupt, reason);
        }
        result
    }

    /// Read again the streams whose output queue drained (or closed).
    fn resume(&mut self, tokens: Vec<usize>) {
        for token in tokens {
            if let Some(Entry::Stream { paused, .. }) = self.entries.get_mut(&token) {
                if std::mem::take(paused) {
                    self.read_again.push(token);
                }
            }
        }
    }

    /// Close a stream now and tell its owner why; `reason` is one of this
    /// module's phrases, given a kind by [`cause_of`].
    pub(crate) fn disconnect(&mut self, token: usize, reason: &str) {
        let cause = cause_of(token_name(&self.entries, token), reason);
        self.disconnect_with(token, cause);
    }

    /// Close a stream for a reason found on the read or write path, of a
    /// known kind (no guessing from the words).
    fn closed(&mut self, token: usize, kind: LossKind, reason: String) {
        let name = token_name(&self.entries, token);
        self.disconnect_with(token, Loss::new(kind, name, reason));
    }

    /// Close a stream now and tell its owner of `cause`.
    ///
    /// A stream with no process of ours behind it (the parent stream) is
    /// reported before its descriptors close, so the owner can still send
    /// its last words down it. A stream to a child process is reported
    /// once the process has exited, so the loss carries its exit status
    /// and a requested shutdown ends when the process is gone: at most
    /// [`EXIT_WAIT`] after an unexpected end, and after a shutdown until
    /// the escalation of [`Core::expect_exit`] has run its course. A stream
    /// already closed and waiting for its process takes a better cause (a
    /// child's own farewell) in place of a bare end of file.
    pub(crate) fn disconnect_with(&mut self, token: usize, cause: Loss) {
        let Some(Entry::Stream {
            stream,
            fd,
            events,
            write_token,
            ..
        }) = self.entries.remove(&token)
        else {
            let long_wait = self.exit_wait(true);
            let Some(h) = self.held.iter_mut().find(|h| h.token == token) else {
                return;
            };
            if h.cause.kind != LossKind::Closed {
                return;
            }
            let shutdown = cause.kind == LossKind::Shutdown;
            h.cause = cause;
            if shutdown {
                // Wait for the exit as long as a shutdown may take.
                h.timer.cancel();
                h.timer = Timer::new();
                let timer = h.timer.clone();
                self.add_timer(
                    long_wait,
                    timer,
                    Box::new(move |core| core.release(token, None)),
                );
            }
            return;
        };
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(wt) = write_token {
            self.entries.remove(&wt);
            if let Some(wfd) = stream.separate_write_fd() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&wfd));
            }
        }
        tracing::debug!("stream {} disconnected: {}", stream.name, cause.text);
        let mut resumed = Vec::new();
        let Some(pid) = stream.pid else {
            report(&stream, &events, &cause);
            drop(stream.take_fds(&mut resumed));
            self.resume(resumed);
            self.update_alive();
            return;
        };
        drop(stream.take_fds(&mut resumed));
        self.resume(resumed);
        self.update_alive();
        self.expect_exit(pid);
        if let Some(status) = self.statuses.remove(&pid) {
            report(&stream, &events, &with_status(cause, Some(status)));
            return;
        }
        if !self.child_alive(pid) {
            report(&stream, &events, &cause);
            return;
        }
        let wait = self.exit_wait(cause.kind == LossKind::Shutdown);
        let timer = Timer::new();
        self.add_timer(
            wait,
            timer.clone(),
            Box::new(move |core| core.release(token, None)),
        );
        self.held.push(Held {
            token,
            pid,
            stream,
            events,
            cause,
            timer,
        });
    }

    /// How long a lost stream waits for its process: after a shutdown,
    /// as long as [`Core::expect_exit`] may take to end it.
    fn exit_wait(&self, shutdown: bool) -> Duration {
        if shutdown {
            self.broker.shutdown_timeout() + 2 * KILL_GRACE
        } else {
            EXIT_WAIT
        }
    }

    /// Tell the owner of held stream `token` of its loss, with the exit
    /// `status` of its process when known.
    fn release(&mut self, token: usize, status: Option<i32>) {
        let Some(i) = self.held.iter().position(|h| h.token == token) else {
            return;
        };
        let h = self.held.swap_remove(i);
        h.timer.cancel();
        report(&h.stream, &h.events, &with_status(h.cause, status));
    }

    /// Report every held loss as it stands (the broker is stopping).
    fn release_all(&mut self) {
        while let Some(token) = self.held.first().map(|h| h.token) {
            self.release(token, None);
        }
    }

    /// Forward each line read from `fd` to `on_line`; `None` marks end of file.
    pub(crate) fn add_lines(&mut self, fd: OwnedFd, on_line: LineFn) {
        let token = self.broker.new_token();
        let _ = sys::set_nonblocking(fd.as_raw_fd(), true);
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&fd.as_raw_fd()),
                Token(token),
                Interest::READABLE,
            )
            .is_ok()
        {
            self.entries.insert(
                token,
                Entry::Lines {
                    fd,
                    buf: Vec::new(),
                    on_line,
                },
            );
            self.read_lines(token);
        }
    }

    /// Forward the complete lines `fd` has, cutting any longer than
    /// [`MAX_LINE`], up to [`LINES_BUDGET`] bytes per wake-up.
    fn read_lines(&mut self, token: usize) {
        let Some(Entry::Lines { fd, buf, on_line }) = self.entries.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut budget = LINES_BUDGET;
        let eof = loop {
            match sys::read(fd.as_raw_fd(), &mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    forward_lines(buf, on_line);
                    if n >= budget {
                        self.read_again.push(token);
                        return;
                    }
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if eof {
            if !buf.is_empty() {
                on_line(Some(buf));
            }
            on_line(None);
            if let Some(Entry::Lines { fd, .. }) = self.entries.remove(&token) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
    }

    /// Reap `pid` when it exits, then call `on_exit` with its wait status.
    pub(crate) fn add_child(&mut self, pid: u32, on_exit: ExitFn) {
        let token = self.broker.new_token();
        match sys::pidfd_open(pid) {
            Ok(pidfd) => {
                let _ = self.poll.registry().register(
                    &mut SourceFd(&pidfd.as_raw_fd()),
                    Token(token),
                    Interest::READABLE,
                );
                self.entries.insert(
                    token,
                    Entry::Child {
                        pid,
                        pidfd,
                        on_exit: Some(on_exit),
                    },
                );
                self.update_alive();
                self.reap(token);
            }
            Err(e) => {
                // No pidfd (old kernel): poll for the exit on a timer.
                tracing::debug!("pidfd_open({pid}) failed ({e}); polling for its exit");
                self.poll_child(pid, on_exit);
            }
        }
    }

    fn poll_child(&mut self, pid: u32, on_exit: ExitFn) {
        match sys::reap(pid) {
            Ok(Some(status)) => on_exit(status),
            _ => self.add_timer(
                Duration::from_millis(20),
                Timer::new(),
                Box::new(move |core| core.poll_child(pid, on_exit)),
            ),
        }
    }

    /// Reap the child behind pidfd `token`; its stream's loss, held or
    /// still to come, learns the exit status.
    fn reap(&mut self, token: usize) {
        let Some(Entry::Child { pid, .. }) = self.entries.get(&token) else {
            return;
        };
        let pid = *pid;
        let Ok(Some(status)) = sys::reap(pid) else {
            return;
        };
        if let Some(Entry::Child { pidfd, on_exit, .. }) = self.entries.remove(&token) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&pidfd.as_raw_fd()));
            self.update_alive();
            if let Some(f) = on_exit {
                f(status);
            }
        }
        match self.held.iter().find(|h| h.pid == pid).map(|h| h.token) {
            Some(t) => self.release(t, Some(status)),
            None if self.stream_of(pid) => {
                self.statuses.insert(pid, status);
            }
            None => {}
        }
    }

    /// `true` while a registered stream leads to child process `pid`.
    fn stream_of(&self, pid: u32) -> bool {
        self.entries
            .values()
            .any(|e| matches!(e, Entry::Stream { stream, .. } if stream.pid == Some(pid)))
    }

    fn child_alive(&self, pid: u32) -> bool {
        self.entries
            .values()
            .any(|e| matches!(e, Entry::Child { pid: p, .. } if *p == pid))
    }

    /// The stream to `pid` is gone: it should exit by itself; if not, escalate.
    fn expect_exit(&mut self, pid: u32) {
        let grace = self.broker.shutdown_timeout();
        self.add_timer(
            grace,
            Timer::new(),
            Box::new(move |core| {
                if core.child_alive(pid) {
                    tracing::warn!("child {pid} did not exit {grace:?} after disconnect: SIGTERM");
                    let _ = sys::kill(pid, libc::SIGTERM);
                    core.add_timer(
                        KILL_GRACE,
                        Timer::new(),
                        Box::new(move |core| {
                            if core.child_alive(pid) {
                                tracing::warn!("child {pid} ignored SIGTERM: SIGKILL");
                                let _ = sys::kill(pid, libc::SIGKILL);
                            }
                        }),
                    );
                }
            }),
        );
    }

    pub(crate) fn add_timer(&mut self, delay: Duration, timer: Timer, f: Deferred) {
        let id = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Reverse((Instant::now() + delay, id)));
        self.timer_fns.insert(id, (timer, f));
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some((timer, f)) = self.timer_fns.remove(&id) {
                if !timer.is_cancelled() {
                    f(self);
                }
            }
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(Instant::now() + self.broker.shutdown_timeout());
        let signals = &self.broker.shared.signals;
        signals.fire(Subject::Own, signal::BEFORE_SHUTDOWN, &(), "the broker");
        signals.fire(Subject::Own, signal::SHUTDOWN, &(), "the broker");
        let streams: Vec<Arc<Stream>> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Stream { stream, .. } => Some(stream.clone()),
                _ => None,
            })
            .collect();
        for s in &streams {
            let owner = format!("stream {}", s.name);
            s.signals.fire(Subject::Own, signal::SHUTDOWN, &(), &owner);
        }
        let mut unclosable = Vec::new();
        for (token, e) in &self.entries {
            if let Entry::Stream { stream, .. } = e {
                if !stream.begin_close() {
                    unclosable.push(*token);
                }
            }
        }
        // Terminals cannot be half-closed: close them outright.
        for token in unclosable {
            self.disconnect(token, "broker shutdown");
        }
    }

    fn stream_tokens(&self) -> Vec<usize> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Stream { .. }))
            .map(|(t, _)| *t)
            .collect()
    }

    fn may_exit(&self) -> bool {
        self.shutdown_deadline.is_some()
            && !self
                .entries
                .values()
                .any(|e| matches!(e, Entry::Stream { .. } | Entry::Child { .. }))
    }

    /// Time is up for the current step of shutdown: drop streams and send
    /// children SIGTERM, then SIGKILL, then leave any child that still has
    /// not been reaped (stuck in the kernel) to a background reaper. Each
    /// step waits [`KILL_GRACE`] for the pidfds to report the exits.
    fn force_shutdown(&mut self) {
        let pids: Vec<(usize, u32)> = self
            .entries
            .iter()
            .filter_map(|(t, e)| match e {
                Entry::Child { pid, .. } => Some((*t, *pid)),
                _ => None,
            })
            .collect();
        // Streams first, at every step: one may have been added since.
        let streams = self.stream_tokens();
        for t in streams {
            self.disconnect(t, "broker shutdown timed out");
        }
        match self.escalation {
            Escalation::Grace => {
                for (_, pid) in pids {
                    tracing::warn!("child {pid} still running at shutdown: sending SIGTERM");
                    let _ = sys::kill(pid, libc::SIGTERM);
                }
                self.escalation = Escalation::Terminated;
            }
            Escalation::Terminated => {
                for (_, pid) in pids {
                    tracing::warn!("child {pid} ignored SIGTERM at shutdown: sending SIGKILL");
                    let _ = sys::kill(pid, libc::SIGKILL);
                }
                self.escalation = Escalation::Killed;
            }
            Escalation::Killed => {
                for (t, pid) in pids {
                    tracing::warn!(
                        "child {pid} not reaped {KILL_GRACE:?} after SIGKILL: \
                         leaving it to a background reaper"
                    );
                    if let Some(Entry::Child { pidfd, on_exit, .. }) = self.entries.remove(&t) {
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&pidfd.as_raw_fd()));
                        reap_later(pid);
                        if let Some(f) = on_exit {
                            f(libc::SIGKILL);
                        }
                    }
                    if let Some(h) = self.held.iter().find(|h| h.pid == pid).map(|h| h.token) {
                        self.release(h, None);
                    }
                }
                self.update_alive();
            }
        }
        self.shutdown_deadline = Some(Instant::now() + KILL_GRACE);
    }

    fn run_deferred(&mut self) -> bool {
        let mut ran = false;
        loop {
            let batch = std::mem::take(&mut *lock(&self.broker.shared.queue));
            if batch.is_empty() {
                return ran;
            }
            ran = true;
            self.broker.counters().deferred(batch.len());
            for f in batch {
                f(self);
            }
        }
    }

    /// The event loop. A panic anywhere in it (a handler, a timer or
    /// deferred closure, a log subscriber) is logged and stops the broker as
    /// a normal exit would: every stream is closed, so every waiter gets a
    /// dead message naming the panic, and `join` returns.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let reason = loop {
            match panic::catch_unwind(AssertUnwindSafe(|| self.turn(&mut events))) {
                Ok(true) => {}
                Ok(false) => break "broker stopped".to_string(),
                Err(payload) => {
                    let what = panic_text(payload.as_ref());
                    tracing::error!("broker thread panicked: {what}; closing every stream");
                    break format!("broker thread panicked: {what}");
                }
            }
        };
        self.finish(&reason);
    }

    /// One turn of the loop; `false` when the broker is done.
    fn turn(&mut self, events: &mut Events) -> bool {
        self.broker
            .shared
            .wake_pending
            .store(false, Ordering::Release);
        self.run_deferred();
        self.run_timers();
        if self.may_exit() {
            return false;
        }
        let now = Instant::now();
        if self.shutdown_deadline.is_some_and(|d| now >= d) {
            self.force_shutdown();
            return true;
        }
        // Work queued on this thread (by a timer, say) or reads cut short by
        // their budget must not wait for an unrelated event.
        let busy = !self.read_again.is_empty() || !lock(&self.broker.shared.queue).is_empty();
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .into_iter()
                .chain(self.shutdown_deadline)
                .min()
                .map(|at| at.saturating_duration_since(now))
        };
        if let Err(e) = self.poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("broker poll failed: {e}");
                return false;
            }
        }
        self.broker.counters().woke();
        let again = std::mem::take(&mut self.read_again);
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKER {
                continue;
            }
            match self.entries.get(&token.0) {
                Some(Entry::Stream { .. }) => {
                    if ev.is_writable() {
                        self.flush(token.0);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        let closed = ev.is_read_closed() || ev.is_error();
                        self.read_stream(token.0, closed);
                    }
                }
                Some(Entry::WriteSide { stream_token }) => {
                    let st = *stream_token;
                    if ev.is_error() || ev.is_write_closed() {
                        self.closed(st, LossKind::Closed, "peer closed its input".into());
                    } else {
                        self.flush(st);
                    }
                }
                Some(Entry::Lines { .. }) => self.read_lines(token.0),
                Some(Entry::Child { .. }) => self.reap(token.0),
                None => {}
            }
        }
        // Then the descriptors left with unread bytes last turn.
        for token in again {
            match self.entries.get(&token) {
                Some(Entry::Stream { .. }) => self.read_stream(token, true),
                Some(Entry::Lines { .. }) => self.read_lines(token),
                _ => {}
            }
        }
        true
    }

    /// Close every stream with `reason` and mark the broker stopped. A
    /// panic in a disconnect callback does not stop the rest.
    fn finish(&mut self, reason: &str) {
        // Children not reaped yet (after a panic) still get reaped.
        for e in self.entries.values() {
            if let Entry::Child { pid, .. } = e {
                reap_later(*pid);
            }
        }
        let streams = self.stream_tokens();
        for t in streams {
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| self.disconnect(t, reason))) {
                tracing::error!("panic while closing a stream: {}", panic_text(p.as_ref()));
            }
        }
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| self.release_all())) {
            tracing::error!("panic while closing a stream: {}", panic_text(p.as_ref()));
        }
        self.entries.clear();
        self.update_alive();
        // Listeners catch their own panics (`signal.rs`).
        let signals = self.broker.shared.signals.clone();
        signals.fire(Subject::Own, signal::EXIT, &(), "the broker");
        // Under the queue's lock, so a `defer` either is queued before
        // this (and dropped below) or sees STOPPED and says so.
        let dropped = {
            let mut queue = lock(&self.broker.shared.queue);
            self.broker.shared.state.store(STOPPED, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        // Drop work nobody will run (wakes defer_sync waiters).
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(dropped)));
        self.broker.shared.stopped.close();
    }
}

/// Hand each complete line of `buf` to `on_line`, cutting lines longer than
/// [`MAX_LINE`] into pieces; keep the unfinished rest in `buf`.
fn forward_lines(buf: &mut Vec<u8>, on_line: &mut LineFn) {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        // A newline right after MAX_LINE bytes still ends that line.
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        if let Some(pos) = window.iter().position(|&b| b == b'\n') {
            on_line(Some(&rest[..pos]));
            start += pos + 1;
        } else if rest.len() > MAX_LINE {
            on_line(Some(&rest[..MAX_LINE]));
            start += MAX_LINE;
        } else {
            break;
        }
    }
    buf.drain(..start);
}

/// Name of the stream registered as `token`, for a loss's context.
fn token_name(entries: &FastMap<usize, Entry>, token: usize) -> String {
    match entries.get(&token) {
        Some(Entry::Stream { stream, .. }) => stream.name.clone(),
        _ => String::new(),
    }
}

/// How an end of file reads in a loss.
const EOF: &str = "connection closed by the far side (end of file)";

/// The kind of a disconnect `reason`, one of the phrases of this module:
/// end of file and failed reads and writes are the far side closing, a
/// decoder's complaint is a corrupt stream, the broker's own shutdown is a
/// shutdown. The text is kept as it is.
fn cause_of(context: String, reason: &str) -> Loss {
    let kind = if reason == EOF
        || reason.starts_with("read failed")
        || reason.starts_with("write failed")
        || reason == "peer closed its input"
        || reason == "closed before registration"
    {
        LossKind::Closed
    } else if reason.starts_with("corrupt stream") {
        LossKind::Corrupt
    } else if reason.starts_with("broker shutdown") || reason == "broker stopped" {
        LossKind::Shutdown
    } else {
        LossKind::Other
    };
    Loss::new(kind, context, reason)
}

/// `cause` once the exit `status` of the process behind the stream is
/// known: an end of file (or unexplained loss) becomes "exited with status
/// N" or "killed by signal N"; a shutdown, a corrupt stream or a child's
/// own explanation stay as they are.
fn with_status(cause: Loss, status: Option<i32>) -> Loss {
    match (status, &cause.kind) {
        (Some(st), LossKind::Closed) => {
            let kind = LossKind::of_wait_status(st);
            let text = kind.to_string();
            Loss::new(kind, cause.context, text)
        }
        _ => cause,
    }
}

/// Reap `pid` from a background thread whenever it finally exits: it
/// outlived SIGKILL (stuck in the kernel) or the broker stopped first.
fn reap_later(pid: u32) {
    let spawned = std::thread::Builder::new()
        .name(format!("mitogen-reap-{pid}"))
        .spawn(move || {
            let mut pause = Duration::from_millis(10);
            while let Ok(None) = sys::reap(pid) {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a reaper for child {pid}: {e}; it stays a zombie");
    }
}

/// Tell the router a stream is gone, then the stream's own listeners.
fn report(stream: &Arc<Stream>, events: &Arc<dyn StreamEvents>, cause: &Loss) {
    events.on_disconnect(stream, cause);
    let owner = format!("stream {}", stream.name);
    stream
        .signals
        .fire(Subject::Own, signal::DISCONNECT, cause, &owner);
}

/// The message of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Feed `input` in one piece; return the lines forwarded and what is kept.
    fn lines_of(input: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut on_line: LineFn = Box::new(move |l| s2.lock().unwrap().push(l.unwrap().to_vec()));
        let mut buf = input.to_vec();
        forward_lines(&mut buf, &mut on_line);
        let lines = seen.lock().unwrap().clone();
        (lines, buf)
    }

    #[test]
    fn lines_are_split_and_the_rest_kept() {
        let (lines, rest) = lines_of(b"one\ntwo\n\nthr");
        assert_eq!(lines, [&b"one"[..], b"two", b""]);
        assert_eq!(rest, b"thr");
    }

    #[test]
    fn long_lines_are_cut_at_max_line() {
        let mut input = vec![b'a'; 2 * MAX_LINE + 10];
        input.push(b'\n');
        let (lines, rest) = lines_of(&input);
        let lens: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_line_of_exactly_max_line_is_not_followed_by_an_empty_one() {
        let mut input = vec![b'a'; MAX_LINE];
        input.extend_from_slice(b"\nb");
        let (lines, rest) = lines_of(&input);
        assert_eq!(lines, [vec![b'a'; MAX_LINE]]);
        assert_eq!(rest, b"b");
        // Unfinished and not yet too long: kept whole.
        let (lines, rest) = lines_of(&vec![b'a'; MAX_LINE]);
        assert!(lines.is_empty());
        assert_eq!(rest.len(), MAX_LINE);
    }
}
