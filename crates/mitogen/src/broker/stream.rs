//! A framed connection to another context: the write side shared with user
//! threads, the read side owned by the broker thread.
//!
//! Sends from any thread first try a direct non-blocking `writev` when
//! nothing is queued, so a call usually costs no wake-up of the broker; what
//! does not fit is queued and flushed by the broker when the descriptor
//! becomes writable. Descriptors are closed only under the same lock, so a
//! sender can never write to a recycled descriptor number.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mitogen_wire::HEADER_LEN;

use super::{Broker, Core};
use crate::message::Message;
use crate::sys;

/// Sends closer together than this are queued for one broker flush.
const BURST_WINDOW: Duration = Duration::from_micros(20);

/// Bytes queued on a stream at or above which a sender waits: a user thread
/// blocks, and the broker stops reading the stream whose message it is
/// forwarding. One message may take the queue past it (the queue is never
/// refused a message it has room to start).
pub(crate) const QUEUE_HIGH: usize = 4 << 20;
/// Waiting senders and paused readers go on once the queue is below this.
const QUEUE_LOW: usize = QUEUE_HIGH / 2;

/// How long a sender may wait for room (in a stream's queue, or in a
/// receiver's flow-control window).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Until there is room.
    Forever,
    /// Until this instant.
    Until(Instant),
    /// Not at all: report that it is full.
    Never,
    /// Never wait, but go anyway: control messages, and anything sent from
    /// the broker thread, which must not block.
    Force,
}

impl Wait {
    /// `Forever` without a deadline, `Until` with one.
    pub(crate) fn deadline(deadline: Option<Instant>) -> Wait {
        deadline.map_or(Wait::Forever, Wait::Until)
    }
}

/// Broker-side callbacks of a stream; implemented by the router.
pub(crate) trait StreamEvents: Send + Sync {
    /// A whole message arrived.
    fn on_message(&self, stream: &Arc<Stream>, msg: Message);
    /// The stream is gone; `loss` says why.
    fn on_disconnect(&self, stream: &Arc<Stream>, loss: &crate::error::Loss);
}

/// One connection to a neighbouring context.
pub(crate) struct Stream {
    pub(crate) token: usize,
    pub(crate) name: String,
    /// Context id of the peer (0 until known).
    pub(crate) remote_id: AtomicU32,
    /// Child process behind this stream, if we started it.
    pub(crate) pid: Option<u32>,
    pub(crate) broker: Broker,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    /// Contexts that sent messages down this stream (unidirectional mode).
    pub(crate) egress: Mutex<std::collections::HashSet<u32>>,
    /// Contexts the far side sent messages to through us, other than
    /// upward: told with DEL_ROUTE when they are lost.
    pub(crate) talked_to: Mutex<std::collections::HashSet<u32>>,
    /// Listeners of its signals (`disconnect`, `shutdown`, `exit`).
    pub(crate) signals: crate::signal::Table,
    out: Mutex<Out>,
    /// Signalled when the queue drains below [`QUEUE_LOW`] or the stream closes.
    drained: Condvar,
}

struct Out {
    fds: Option<Fds>,
    queue: VecDeque<Chunk>,
    /// Bytes of `queue.front()` already written.
    offset: usize,
    /// The broker is (or will be) watching for writability.
    want_write: bool,
    /// Close the write side once the queue drains (graceful shutdown).
    closing: bool,
    /// When the last direct write happened.
    last_direct: Option<Instant>,
    /// Bytes in `queue` (whole chunks, written part included).
    queued: usize,
    /// The most `queued` has been (profiling).
    max_queued: usize,
    /// User threads waiting for room.
    waiters: usize,
    /// Streams (broker tokens) whose reading waits for this queue to drain.
    paused: Vec<usize>,
}

impl Out {
    /// Open, and below [`QUEUE_HIGH`]: a send may go on at once.
    #[inline]
    fn has_room(&self) -> bool {
        self.queued < QUEUE_HIGH && self.fds.is_some() && !self.closing
    }
}

/// Bytes waiting to be sent: owned by the queue, or shared with their
/// owner (a binary served to many children is held once, not once per
/// queued reply).
enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(v: Vec<u8>) -> Chunk {
        Chunk::Owned(v)
    }
}

impl From<Arc<[u8]>> for Chunk {
    fn from(a: Arc<[u8]>) -> Chunk {
        Chunk::Shared(a)
    }
}

pub(crate) struct Fds {
    pub(crate) read: OwnedFd,
    /// `None` when reads and writes share one descriptor (a socket).
    pub(crate) write: Option<OwnedFd>,
    /// Held open for the stream's life: the controlling terminal of the
    /// program behind it (closing it would hang the program up).
    pub(crate) _keep: Option<OwnedFd>,
}

impl Fds {
    pub(crate) fn write_fd(&self) -> RawFd {
        self.write.as_ref().unwrap_or(&self.read).as_raw_fd()
    }
}

/// Why a send failed.
#[derive(Debug)]
pub(crate) enum SendError {
    Closed,
    /// The stream closed while the sender waited for room.
    ClosedWhileWaiting,
    /// No room in the queue before the deadline.
    Full,
}

impl Stream {
    pub(crate) fn new(
        token: usize,
        name: String,
        fds: Fds,
        pid: Option<u32>,
        broker: Broker,
    ) -> Stream {
        Stream {
            token,
            name,
            remote_id: AtomicU32::new(0),
            pid,
            broker,
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            egress: Mutex::new(std::collections::HashSet::new()),
            talked_to: Mutex::new(std::collections::HashSet::new()),
            signals: crate::signal::Table::default(),
            out: Mutex::new(Out {
                fds: Some(fds),
                queue: VecDeque::new(),
                offset: 0,
                want_write: false,
                closing: false,
                last_direct: None,
                queued: 0,
                max_queued: 0,
                waiters: 0,
                paused: Vec::new(),
            }),
            drained: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remote_id(&self) -> u32 {
        self.remote_id.load(Ordering::Relaxed)
    }

    /// Queue one frame (`header` then `body`) for sending. Safe from any
    /// thread; see [`Stream::send_batch`] for `wait`.
    pub(crate) fn send(
        self: &Arc<Self>,
        header: [u8; HEADER_LEN],
        body: Vec<u8>,
        wait: Wait,
    ) -> Result<(), SendError> {
        self.send_frames(vec![(header, body)], wait)
    }

    /// Queue frames for sending, in order, with as few system calls as
    /// possible: when nothing is queued they go out in one `writev` from
    /// the calling thread, and only what does not fit is left to the broker.
    ///
    /// While [`QUEUE_HIGH`] bytes or more are queued, a user thread waits as
    /// `wait` allows; the broker thread never waits: it sends, and stops
    /// reading the stream whose message it is handling until this queue
    /// drains, so backpressure reaches the peer producing the bytes.
    pub(crate) fn send_batch(
        self: &Arc<Self>,
        frames: Vec<([u8; HEADER_LEN], Vec<u8>)>,
        wait: Wait,
    ) -> Result<(), SendError> {
        self.send_frames(frames, wait)
    }

    /// Queue one frame whose body is shared: what is not written at once is
    /// queued as another reference to `body`, never as a copy. Never waits.
    pub(crate) fn send_shared(
        self: &Arc<Self>,
        header: [u8; HEADER_LEN],
        body: Arc<[u8]>,
    ) -> Result<(), SendError> {
        self.send_frames(vec![(header, body)], Wait::Force)
    }

    /// Wait (as `wait` allows) until the queue has room.
    #[inline(never)]
    fn room<'a>(
        &'a self,
        mut out: MutexGuard<'a, Out>,
        wait: Wait,
    ) -> Result<MutexGuard<'a, Out>, SendError> {
        let mut waited = false;
        loop {
            if out.has_room() {
                return Ok(out);
            }
            if out.fds.is_none() || out.closing {
                return Err(if waited {
                    SendError::ClosedWhileWaiting
                } else {
                    SendError::Closed
                });
            }
            // The broker thread handing over a frame: stop reading where
            // it came from, whatever the message (a refusal too).
            if let Some(reader) = super::core::pause_current_reader() {
                if !out.paused.contains(&reader) {
                    out.paused.push(reader);
                }
                return Ok(out);
            }
            let deadline = match wait {
                Wait::Force => return Ok(out),
                Wait::Never => return Err(SendError::Full),
                // Elsewhere on the broker thread (a timer): it must not block.
                _ if self.broker.on_broker_thread() => return Ok(out),
                Wait::Until(d) if Instant::now() >= d => return Err(SendError::Full),
                Wait::Until(d) => Some(d),
                Wait::Forever => None,
            };
            out.waiters += 1;
            waited = true;
            out = super::wait_on(&self.drained, out, deadline);
            out.waiters -= 1;
        }
    }

    fn send_frames<B: AsRef<[u8]> + Into<Chunk>>(
        self: &Arc<Self>,
        frames: Vec<([u8; HEADER_LEN], B)>,
        wait: Wait,
    ) -> Result<(), SendError> {
        let out = self.lock();
        let mut out = if out.has_room() {
            out
        } else {
            self.room(out, wait)?
        };
        let Some(fds) = out.fds.as_ref() else {
            return Err(SendError::Closed);
        };
        let total: usize = frames
            .iter()
            .map(|(_, b)| HEADER_LEN + b.as_ref().len())
            .sum();
        self.bytes_sent.fetch_add(total as u64, Ordering::Relaxed);
        let mut written = 0;
        // A sender writing faster than the peer can be woken gets batched:
        // its frames wait for one broker flush instead of costing a system
        // call (and a wake-up of the reader) each. A lone send goes direct.
        let now = Instant::now();
        let busy = out
            .last_direct
            .is_some_and(|t| now.duration_since(t) < BURST_WINDOW);
        if out.queue.is_empty() && !busy {
            let fd = fds.write_fd();
            out.last_direct = Some(now);
            while written < total {
                let slices = slices_from(&frames, written);
                match sys::writev(fd, &slices) {
                    Ok(n) => written += n,
                    // WouldBlock: queue the rest. Other errors: queue it too;
                    // the broker's flush meets the same error and disconnects.
                    Err(_) => break,
                }
            }
            if written == total {
                return Ok(());
            }
        }
        // Queue what is left; the first chunk may be partly written, which
        // `offset` records (the queue was empty in that case).
        let mut skip = written;
        for (header, body) in frames {
            for chunk in [Chunk::Owned(header.to_vec()), body.into()] {
                if skip >= chunk.len() {
                    skip -= chunk.len();
                    continue;
                }
                if out.queue.is_empty() {
                    out.offset = skip;
                }
                skip = 0;
                out.queued += chunk.len();
                out.queue.push_back(chunk);
            }
        }
        out.max_queued = out.max_queued.max(out.queued);
        self.schedule_flush(out);
        Ok(())
    }

    fn schedule_flush(self: &Arc<Self>, mut out: MutexGuard<'_, Out>) {
        if out.want_write {
            return;
        }
        out.want_write = true;
        drop(out);
        let token = self.token;
        self.broker
            .defer_core(move |core: &mut Core| core.watch_writable(token, true));
    }

    /// Broker thread: write what is queued. `Ok(true)` when the queue is
    /// empty. Streams whose reading waited for this queue to drain are added
    /// to `resumed` once it is below [`QUEUE_LOW`].
    pub(crate) fn flush(&self, resumed: &mut Vec<usize>) -> io::Result<bool> {
        let mut out = self.lock();
        let res = Self::write_queue(&mut out);
        if out.queued < QUEUE_LOW {
            resumed.append(&mut out.paused);
            if out.waiters > 0 {
                self.drained.notify_all();
            }
        }
        res
    }

    fn write_queue(out: &mut Out) -> io::Result<bool> {
        let Some(fd) = out.fds.as_ref().map(Fds::write_fd) else {
            return Ok(true);
        };
        while !out.queue.is_empty() {
            let res = {
                let slices: Vec<IoSlice<'_>> = out
                    .queue
                    .iter()
                    .take(64)
                    .enumerate()
                    .map(|(i, b)| IoSlice::new(if i == 0 { &b[out.offset..] } else { &b[..] }))
                    .collect();
                sys::writev(fd, &slices)
            };
            match res {
                Ok(mut n) => {
                    while n > 0 {
                        let front_left = out.queue[0].len() - out.offset;
                        if n >= front_left {
                            n -= front_left;
                            if let Some(c) = out.queue.pop_front() {
                                out.queued -= c.len();
                            }
                            out.offset = 0;
                        } else {
                            out.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        out.want_write = false;
        if out.closing && !Self::close_write_side(out) {
            return Err(io::Error::other("closed"));
        }
        Ok(true)
    }

    /// Half-close; `false` when only closing everything would signal the peer.
    fn close_write_side(out: &mut Out) -> bool {
        let Some(fds) = out.fds.as_mut() else {
            return true;
        };
        match fds.write.take() {
            // Maybe a duplicate of a socket: closing it alone sends no EOF.
            Some(w) => {
                sys::shutdown_write(w.as_raw_fd());
                drop(w);
                true
            }
            None => sys::shutdown_write(fds.read.as_raw_fd()),
        }
    }

    /// Broker thread: graceful close: send what is queued, then half-close so
    /// the peer sees end of file. Returns `false` when the descriptor cannot
    /// be half-closed (a terminal): the caller closes it outright.
    pub(crate) fn begin_close(self: &Arc<Self>) -> bool {
        let mut out = self.lock();
        if out.closing || out.fds.is_none() {
            return true;
        }
        out.closing = true;
        if out.queue.is_empty() {
            Self::close_write_side(&mut out)
        } else {
            self.schedule_flush(out);
            true
        }
    }

    /// Broker thread: take the descriptors away (closing them when dropped).
    /// Waiting senders wake (and fail); the streams whose reading waited for
    /// this queue are added to `resumed`.
    pub(crate) fn take_fds(&self, resumed: &mut Vec<usize>) -> Option<Fds> {
        let mut out = self.lock();
        out.queue.clear();
        out.queued = 0;
        resumed.append(&mut out.paused);
        self.drained.notify_all();
        out.fds.take()
    }

    /// The most bytes this stream has had queued at once.
    pub(crate) fn max_queued(&self) -> usize {
        self.lock().max_queued
    }

    /// The raw write descriptor, if still open and distinct from the read one.
    pub(crate) fn separate_write_fd(&self) -> Option<RawFd> {
        let out = self.lock();
        out.fds.as_ref()?.write.as_ref().map(|w| w.as_raw_fd())
    }

    pub(crate) fn read_fd(&self) -> Option<RawFd> {
        let out = self.lock();
        out.fds.as_ref().map(|f| f.read.as_raw_fd())
    }
}

/// I/O slices for `frames`, skipping the first `written` bytes.
fn slices_from<B: AsRef<[u8]>>(
    frames: &[([u8; HEADER_LEN], B)],
    mut written: usize,
) -> Vec<IoSlice<'_>> {
    let mut slices = Vec::with_capacity(frames.len() * 2);
    for (header, body) in frames {
        for part in [&header[..], body.as_ref()] {
            if written >= part.len() {
                written -= part.len();
            } else {
                slices.push(IoSlice::new(&part[written..]));
                written = 0;
            }
        }
    }
    slices
}
