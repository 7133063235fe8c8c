//! The broker thread's state and event loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use mitogen_wire::Deframer;

use super::{lock, Broker, Deferred, Stream, StreamEvents, Timer, STOPPED, WAKER};
use crate::message::Message;
use crate::sys;

/// Grace between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 64 * 1024;

type LineFn = Box<dyn FnMut(Option<&[u8]>) + Send>;
type ExitFn = Box<dyn FnOnce(i32) + Send>;

enum Entry {
    Stream {
        stream: Arc<Stream>,
        fd: RawFd,
        deframer: Deframer,
        events: Arc<dyn StreamEvents>,
        write_token: Option<usize>,
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
    entries: HashMap<usize, Entry>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_fns: HashMap<u64, (Timer, Deferred)>,
    next_timer: u64,
    shutdown_deadline: Option<Instant>,
    killed: bool,
}

impl Core {
    pub(super) fn new(poll: Poll, broker: Broker) -> Core {
        Core {
            poll,
            broker,
            entries: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_fns: HashMap::new(),
            next_timer: 0,
            shutdown_deadline: None,
            killed: false,
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
            events.on_disconnect(&stream, "closed before registration");
            return;
        };
        let token = stream.token;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        {
            events.on_disconnect(&stream, &format!("cannot watch descriptor: {e}"));
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
            },
        );
        self.update_alive();
        // Bytes buffered during the bootstrap may already hold whole frames.
        self.drain_frames(token);
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
        match stream.flush() {
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
            Err(e) => self.disconnect(token, &format!("write failed: {e}")),
        }
    }

    fn read_stream(&mut self, token: usize) {
        let reason = {
            let Some(Entry::Stream {
                stream,
                fd,
                deframer,
                ..
            }) = self.entries.get_mut(&token)
            else {
                return;
            };
            loop {
                let spare = deframer.spare(READ_CHUNK);
                let len = spare.len();
                match sys::read(*fd, spare) {
                    Ok(0) => {
                        deframer.commit(len, 0);
                        break Some("end of file".to_string());
                    }
                    Ok(n) => {
                        deframer.commit(len, n);
                        stream.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                        if n < len {
                            break None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        deframer.commit(len, 0);
                        break None;
                    }
                    // A pseudo-terminal master reads EIO once the child is gone.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        deframer.commit(len, 0);
                        break Some("end of file".to_string());
                    }
                    Err(e) => {
                        deframer.commit(len, 0);
                        break Some(format!("read failed: {e}"));
                    }
                }
            }
        };
        // Deliver what arrived before any end-of-file.
        self.drain_frames(token);
        if let Some(reason) = reason {
            self.disconnect(token, &reason);
        }
    }

    fn drain_frames(&mut self, token: usize) {
        let mut failure = None;
        if let Some(Entry::Stream {
            stream,
            deframer,
            events,
            ..
        }) = self.entries.get_mut(&token)
        {
            loop {
                match deframer.next_frame() {
                    Ok(Some(frame)) => events.on_message(stream, Message::from_frame(frame)),
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
            self.disconnect(token, &reason);
        }
    }

    /// Close a stream now and tell its owner why.
    pub(crate) fn disconnect(&mut self, token: usize, reason: &str) {
        let Some(Entry::Stream {
            stream,
            fd,
            events,
            write_token,
            ..
        }) = self.entries.remove(&token)
        else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(wt) = write_token {
            self.entries.remove(&wt);
            if let Some(wfd) = stream.separate_write_fd() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&wfd));
            }
        }
        drop(stream.take_fds());
        self.update_alive();
        tracing::debug!("stream {} disconnected: {reason}", stream.name);
        events.on_disconnect(&stream, reason);
        if let Some(pid) = stream.pid {
            self.expect_exit(pid);
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

    fn read_lines(&mut self, token: usize) {
        let Some(Entry::Lines { fd, buf, on_line }) = self.entries.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let eof = loop {
            match sys::read(fd.as_raw_fd(), &mut chunk) {
                Ok(0) => break true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            on_line(Some(&buf[start..start + pos]));
            start += pos + 1;
        }
        buf.drain(..start);
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

    fn reap(&mut self, token: usize) {
        let Some(Entry::Child { pid, .. }) = self.entries.get(&token) else {
            return;
        };
        if let Ok(Some(status)) = sys::reap(*pid) {
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
        }
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

    fn may_exit(&self) -> bool {
        self.shutdown_deadline.is_some()
            && !self
                .entries
                .values()
                .any(|e| matches!(e, Entry::Stream { .. } | Entry::Child { .. }))
    }

    /// Grace is over: drop streams, then SIGTERM and later SIGKILL children.
    fn force_shutdown(&mut self) {
        let streams: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Stream { .. }))
            .map(|(t, _)| *t)
            .collect();
        for t in streams {
            self.disconnect(t, "broker shutdown timed out");
        }
        let pids: Vec<u32> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Child { pid, .. } => Some(*pid),
                _ => None,
            })
            .collect();
        let signal = if self.killed {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        for pid in pids {
            tracing::warn!("child {pid} still running at shutdown: sending signal {signal}");
            let _ = sys::kill(pid, signal);
        }
        if self.killed {
            // SIGKILL cannot be ignored: wait for each one.
            let tokens: Vec<usize> = self.entries.keys().copied().collect();
            for t in tokens {
                if let Some(Entry::Child { pid, .. }) = self.entries.get(&t) {
                    let pid = *pid;
                    let deadline = Instant::now() + KILL_GRACE;
                    while Instant::now() < deadline && !matches!(sys::reap(pid), Ok(Some(_))) {
                        std::thread::yield_now();
                    }
                    if let Some(Entry::Child {
                        on_exit: Some(f), ..
                    }) = self.entries.remove(&t)
                    {
                        f(libc::SIGKILL);
                    }
                }
            }
        }
        self.killed = true;
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
            for f in batch {
                f(self);
            }
        }
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            self.broker
                .shared
                .wake_pending
                .store(false, Ordering::Release);
            self.run_deferred();
            self.run_timers();
            if self.may_exit() {
                break;
            }
            let now = Instant::now();
            if let Some(deadline) = self.shutdown_deadline {
                if now >= deadline {
                    if self.killed && self.may_exit() {
                        break;
                    }
                    self.force_shutdown();
                    continue;
                }
            }
            let next = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .into_iter()
                .chain(self.shutdown_deadline)
                .min();
            let timeout = next.map(|at| at.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("broker poll failed: {e}");
                    break;
                }
            }
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
                            self.read_stream(token.0);
                        }
                    }
                    Some(Entry::WriteSide { stream_token }) => {
                        let st = *stream_token;
                        if ev.is_error() || ev.is_write_closed() {
                            self.disconnect(st, "peer closed its input");
                        } else {
                            self.flush(st);
                        }
                    }
                    Some(Entry::Lines { .. }) => self.read_lines(token.0),
                    Some(Entry::Child { .. }) => self.reap(token.0),
                    None => {}
                }
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        let tokens: Vec<usize> = self.entries.keys().copied().collect();
        for t in tokens {
            self.disconnect(t, "broker stopped");
        }
        self.entries.clear();
        self.update_alive();
        self.broker.shared.state.store(STOPPED, Ordering::Release);
        // Drop work nobody will run (wakes defer_sync waiters).
        drop(std::mem::take(&mut *lock(&self.broker.shared.queue)));
        self.broker.shared.stopped.close();
    }
}
