//! [`Select`]: wait on many receivers (or other selects) at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::Latch;
use crate::broker::lock;
use crate::context::{AsyncCall, CallDecoder};
use crate::error::{
    ChannelError, Error, GetTimeoutError, RecvTimeoutError, SelectError, TimeoutError, TryGetError,
    TryRecvError,
};
use crate::message::Message;

type Notify = Arc<dyn Fn() + Send + Sync>;

/// Something a [`Select`] can wait on: a [`Receiver`](crate::Receiver), an
/// [`AsyncCall`], a [`Latch<Message>`](Latch) or another `Select`.
pub trait Member: Send + Sync {
    /// Key that identifies the member inside its select (a receiver's handle).
    fn key(&self) -> u32;
    /// Install (or remove) the readiness callback; returns how many
    /// notifications are already due.
    fn set_notify(&self, f: Option<Notify>) -> usize;
    /// Take one message without blocking.
    ///
    /// # Errors
    /// `Empty`, or the member's channel error.
    fn try_recv(&self) -> Result<Message, TryRecvError>;
}

impl std::fmt::Debug for dyn Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Member(key={})", self.key())
    }
}

/// Select keys live above the dynamic handle range, so a select's key never
/// equals a receiver's handle; the counter wraps within that half.
static NEXT_SELECT_KEY: AtomicU32 = AtomicU32::new(0);

/// A key for a member that has no handle (a select, a latch).
pub(crate) fn member_key() -> u32 {
    crate::router::DYNAMIC_END
        | (NEXT_SELECT_KEY.fetch_add(1, Ordering::Relaxed) & (crate::router::DYNAMIC_END - 1))
}

/// Waits on many members and returns messages as they arrive (Mitogen's
/// `mitogen.select.Select`). Members are receivers, pending calls, latches
/// of messages or other selects (selects nest). With `oneshot` (the
/// default) a member is removed after it yields one message, which suits
/// collecting one reply per call.
///
/// Messages come out in the order they arrive (completion order), not the
/// order members were added: tell them apart by
/// [`Message::receiver_handle`], or use [`Select::all_timeout`], whose
/// results carry the index of their call.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// use mitogen::{Receiver, Select};
/// let (a, b) = (Receiver::new(&router), Receiver::new(&router));
/// let (ta, tb) = (a.to_sender(), b.to_sender());
/// let mut select = Select::new();
/// select.add(a);
/// select.add(b);
/// tb.send(&2u8).unwrap();
/// ta.send(&1u8).unwrap();
/// let mut got: Vec<u8> = select.iter().map(|m| m.unpickle().unwrap()).collect();
/// got.sort();
/// assert_eq!(got, vec![1, 2]);
/// # }).unwrap();
/// ```
pub struct Select {
    key: u32,
    ready: Latch<u32>,
    members: Mutex<Vec<Box<dyn Member>>>,
    oneshot: bool,
}

impl Default for Select {
    fn default() -> Self {
        Select::new()
    }
}

impl std::fmt::Debug for Select {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Select({} members)", lock(&self.members).len())
    }
}

impl Select {
    /// An empty oneshot select.
    ///
    /// # Examples
    /// ```
    /// let select = mitogen::Select::new();
    /// assert!(select.is_empty());
    /// ```
    pub fn new() -> Select {
        Select::with_oneshot(true)
    }

    /// An empty select; with `oneshot == false` members stay after yielding.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Receiver, Select};
    /// // A persistent select: the receiver stays a member after each message.
    /// let mut select = Select::with_oneshot(false);
    /// let rx = Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// select.add(rx);
    /// for i in 0..3u8 {
    ///     tx.send(&i).unwrap();
    ///     assert_eq!(select.recv().unwrap().unpickle::<u8>().unwrap(), i);
    /// }
    /// assert_eq!(select.len(), 1);
    /// # }).unwrap();
    /// ```
    pub fn with_oneshot(oneshot: bool) -> Select {
        Select {
            key: member_key(),
            ready: Latch::new(),
            members: Mutex::new(Vec::new()),
            oneshot,
        }
    }

    /// A oneshot select over `members`.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Receiver, Select};
    /// let receivers = vec![Receiver::new(&router), Receiver::new(&router)];
    /// let senders: Vec<_> = receivers.iter().map(Receiver::to_sender).collect();
    /// let select = Select::from_members(receivers);
    /// for tx in &senders {
    ///     tx.send(&()).unwrap();
    /// }
    /// assert_eq!(select.iter().count(), 2);
    /// # }).unwrap();
    /// ```
    pub fn from_members<M: Member + 'static>(members: impl IntoIterator<Item = M>) -> Select {
        let mut s = Select::new();
        for m in members {
            s.add(m);
        }
        s
    }

    /// Add a member; messages it already holds become ready at once.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Latch, Message, Receiver, Select};
    /// let mut select = Select::new();
    /// let rx = Receiver::new(&router);
    /// rx.to_sender().send(&1u8).unwrap(); // already queued: ready at once
    /// select.add(rx);
    /// let latch: Latch<Message> = Latch::new(); // latches of messages are members too
    /// select.add(latch.clone());
    /// assert_eq!(select.len(), 2);
    /// assert!(select.is_ready());
    /// # }).unwrap();
    /// ```
    pub fn add<M: Member + 'static>(&mut self, member: M) {
        let key = member.key();
        let ready = self.ready.clone();
        let due = member.set_notify(Some(Arc::new(move || {
            let _ = ready.put(key);
        })));
        for _ in 0..due {
            let _ = self.ready.put(key);
        }
        lock(&self.members).push(Box::new(member));
    }

    /// Remove and return the member with `key` (a receiver's or call's
    /// handle, a latch's or nested select's [`Member::key`]).
    ///
    /// # Errors
    /// [`SelectError::NoMember`] when no member has that key (Mitogen
    /// raises `Select.Error` too).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// let handle = rx.handle();
    /// let mut select = mitogen::Select::new();
    /// select.add(rx);
    /// assert!(select.remove(handle).is_ok());
    /// assert_eq!(
    ///     select.remove(handle).unwrap_err().to_string(),
    ///     format!("no member with key {handle} in this Select")
    /// );
    /// # }).unwrap();
    /// ```
    pub fn remove(&mut self, key: u32) -> Result<Box<dyn Member>, SelectError> {
        self.take(key).ok_or(SelectError::NoMember { key })
    }

    fn take(&self, key: u32) -> Option<Box<dyn Member>> {
        let mut members = lock(&self.members);
        let pos = members.iter().position(|m| m.key() == key)?;
        let m = members.swap_remove(pos);
        m.set_notify(None);
        Some(m)
    }

    /// Number of members.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let mut select = mitogen::Select::new();
    /// select.add(mitogen::Receiver::new(&router));
    /// assert_eq!(select.len(), 1);
    /// # }).unwrap();
    /// ```
    pub fn len(&self) -> usize {
        lock(&self.members).len()
    }

    /// `true` when the select has no members.
    ///
    /// # Examples
    /// ```
    /// let select = mitogen::Select::new();
    /// assert!(select.is_empty());
    /// assert_eq!(select.recv().unwrap_err(), mitogen::ChannelError::SelectEmpty);
    /// ```
    pub fn is_empty(&self) -> bool {
        lock(&self.members).is_empty()
    }

    /// `true` when a message is ready, so `recv` would not block (the
    /// opposite of Mitogen's `empty()`).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let mut select = mitogen::Select::new();
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// select.add(rx);
    /// assert!(!select.is_ready());
    /// tx.send(&()).unwrap();
    /// assert!(select.is_ready());
    /// # }).unwrap();
    /// ```
    #[doc(alias = "empty")]
    pub fn is_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Remove every member and wake waiters with [`ChannelError::Closed`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let mut select = mitogen::Select::new();
    /// select.add(mitogen::Receiver::new(&router));
    /// select.close();
    /// assert!(select.is_empty());
    /// assert_eq!(select.recv().unwrap_err(), mitogen::ChannelError::Closed);
    /// # }).unwrap();
    /// ```
    pub fn close(&mut self) {
        for m in lock(&self.members).drain(..) {
            m.set_notify(None);
        }
        self.ready.close();
    }

    /// Take a ready message without blocking.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] or a member's channel error.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let mut select = mitogen::Select::new();
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// select.add(rx);
    /// assert_eq!(select.try_recv().unwrap_err(), mitogen::TryRecvError::Empty);
    /// tx.send(&1u8).unwrap();
    /// assert_eq!(select.try_recv().unwrap().unpickle::<u8>().unwrap(), 1);
    /// # }).unwrap();
    /// ```
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        loop {
            let key = match self.ready.try_get() {
                Ok(k) => k,
                Err(TryGetError::Empty) => return Err(TryRecvError::Empty),
                Err(TryGetError::Closed) => {
                    return Err(TryRecvError::Channel(ChannelError::Closed))
                }
            };
            if let Some(r) = self.take_from(key) {
                return r;
            }
        }
    }

    /// Block until any member yields a message (Mitogen's `get`), in the
    /// order messages arrive.
    ///
    /// # Errors
    /// The member's [`ChannelError`] (e.g. a dead reply),
    /// [`ChannelError::SelectEmpty`] when no member is left, or
    /// [`ChannelError::Closed`] when the select was closed.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Receiver, Select};
    /// let (a, b) = (Receiver::new(&router), Receiver::new(&router));
    /// let tb = b.to_sender();
    /// let b_handle = b.handle();
    /// let mut select = Select::new();
    /// select.add(a);
    /// select.add(b);
    /// std::thread::spawn(move || tb.send(&"from b").unwrap());
    /// let msg = select.recv().unwrap(); // whichever member is ready first
    /// assert_eq!(msg.receiver_handle(), b_handle);
    /// # }).unwrap();
    /// ```
    #[doc(alias = "get")]
    pub fn recv(&self) -> Result<Message, ChannelError> {
        self.recv_inner(None).map_err(|e| match e {
            RecvTimeoutError::Channel(c) => c,
            RecvTimeoutError::Timeout(_) => unreachable!("no deadline"),
        })
    }

    /// Block for at most `timeout`.
    ///
    /// # Errors
    /// As [`Select::recv`], plus [`RecvTimeoutError::Timeout`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// let mut select = mitogen::Select::new();
    /// select.add(mitogen::Receiver::new(&router));
    /// match select.recv_timeout(Duration::from_millis(10)) {
    ///     Err(mitogen::RecvTimeoutError::Timeout(t)) => {
    ///         assert!(t.to_string().contains("waiting on a Select of 1 members"));
    ///     }
    ///     other => panic!("expected a timeout, got {other:?}"),
    /// }
    /// # }).unwrap();
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.recv_inner(super::deadline_after(timeout))
    }

    /// Block until `deadline`.
    ///
    /// # Errors
    /// As [`Select::recv_timeout`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::{Duration, Instant};
    /// let mut select = mitogen::Select::new();
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().send(&2u8).unwrap();
    /// select.add(rx);
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// assert_eq!(select.recv_deadline(deadline).unwrap().unpickle::<u8>().unwrap(), 2);
    /// # }).unwrap();
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message, RecvTimeoutError> {
        self.recv_inner(Some(deadline))
    }

    fn recv_inner(&self, deadline: Option<Instant>) -> Result<Message, RecvTimeoutError> {
        let started = Instant::now();
        loop {
            if self.ready.is_closed() && self.ready.is_empty() {
                return Err(RecvTimeoutError::Channel(ChannelError::Closed));
            }
            if lock(&self.members).is_empty() && self.ready.is_empty() {
                return Err(RecvTimeoutError::Channel(ChannelError::SelectEmpty));
            }
            let key = match self.ready.get_until(deadline) {
                Ok(k) => k,
                Err(GetTimeoutError::Closed) => {
                    return Err(RecvTimeoutError::Channel(ChannelError::Closed))
                }
                Err(GetTimeoutError::Timeout(_)) => {
                    return Err(RecvTimeoutError::Timeout(TimeoutError {
                        waited: started.elapsed(),
                        what: format!("waiting on a Select of {} members", self.len()),
                    }))
                }
            };
            match self.take_from(key) {
                Some(Ok(m)) => return Ok(m),
                Some(Err(TryRecvError::Channel(e))) => return Err(RecvTimeoutError::Channel(e)),
                Some(Err(TryRecvError::Empty)) | None => continue,
            }
        }
    }

    /// Try the member `key`; `None` when it is gone or had nothing.
    fn take_from(&self, key: u32) -> Option<Result<Message, TryRecvError>> {
        let members = lock(&self.members);
        let member = members.iter().find(|m| m.key() == key)?;
        match member.try_recv() {
            Err(TryRecvError::Empty) => None,
            r => {
                let finished = self.oneshot || matches!(r, Err(TryRecvError::Channel(_)));
                drop(members);
                if finished {
                    self.take(key);
                }
                Some(r)
            }
        }
    }

    /// Iterate over messages until no member is left (or an error).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let receivers: Vec<_> = (0..3).map(|_| mitogen::Receiver::new(&router)).collect();
    /// for (i, rx) in receivers.iter().enumerate() {
    ///     rx.to_sender().send(&i).unwrap();
    /// }
    /// let select = mitogen::Select::from_members(receivers);
    /// let mut got: Vec<usize> = select.iter().map(|m| m.unpickle().unwrap()).collect();
    /// got.sort(); // arrival order
    /// assert_eq!(got, [0, 1, 2]);
    /// # }).unwrap();
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Wait for every call and return their results in completion order
    /// (Mitogen's `Select.all`), not the order of `calls`: use
    /// [`Select::all_timeout`] for results tagged with their call. The
    /// first failure is returned as the error.
    ///
    /// # Errors
    /// The first [`Error`] any call ends with.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn pid() -> u32 { std::process::id() }
    /// # fn main() {}
    /// # fn f(contexts: Vec<mitogen::Context>) -> mitogen::Result<()> {
    /// let calls = contexts.iter().map(|c| c.call_async(pid::remote, ()));
    /// let mut pids = mitogen::Select::all(calls.collect::<Result<Vec<_>, _>>()?)?;
    /// pids.sort(); // completion order: sort, or use all_timeout's indexes
    /// # Ok(()) }
    /// ```
    pub fn all<R: DeserializeOwned + Send + 'static>(
        calls: impl IntoIterator<Item = AsyncCall<R>>,
    ) -> Result<Vec<R>, Error> {
        let tagged = Select::all_until(calls, None)?;
        Ok(tagged.into_iter().map(|(_, r)| r).collect())
    }

    /// Wait at most `timeout` for every call; each result comes with the
    /// index of its call in `calls` (results in completion order: sort by
    /// the index for call order). The first failure is returned as the
    /// error.
    ///
    /// Calls still running at the timeout are not stopped: each keeps its
    /// context's dispatcher busy until it ends (see
    /// [`Context::call_timeout`](crate::Context::call_timeout)).
    ///
    /// # Errors
    /// The first [`Error`] any call ends with, or [`Error::Timeout`] naming
    /// the calls still pending.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn pid() -> u32 { std::process::id() }
    /// # fn main() {}
    /// # fn f(contexts: Vec<mitogen::Context>) -> mitogen::Result<()> {
    /// use std::time::Duration;
    /// let calls = contexts.iter().map(|c| c.call_async(pid::remote, ()));
    /// let mut pids = mitogen::Select::all_timeout(
    ///     calls.collect::<Result<Vec<_>, _>>()?,
    ///     Duration::from_secs(30),
    /// )?;
    /// pids.sort_by_key(|(index, _)| *index);
    /// for (index, pid) in pids {
    ///     println!("{}: {pid}", contexts[index].name());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn all_timeout<R: DeserializeOwned + Send + 'static>(
        calls: impl IntoIterator<Item = AsyncCall<R>>,
        timeout: Duration,
    ) -> Result<Vec<(usize, R)>, Error> {
        Select::all_until(calls, super::deadline_after(timeout))
    }

    /// As [`Select::all_timeout`], waiting until `deadline`.
    ///
    /// # Errors
    /// As [`Select::all_timeout`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn pid() -> u32 { std::process::id() }
    /// # fn main() {}
    /// # fn f(contexts: Vec<mitogen::Context>) -> mitogen::Result<()> {
    /// use std::time::{Duration, Instant};
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// let calls = contexts.iter().map(|c| c.call_async(pid::remote, ()));
    /// let pids = mitogen::Select::all_deadline(calls.collect::<Result<Vec<_>, _>>()?, deadline)?;
    /// assert_eq!(pids.len(), contexts.len());
    /// # Ok(()) }
    /// ```
    pub fn all_deadline<R: DeserializeOwned + Send + 'static>(
        calls: impl IntoIterator<Item = AsyncCall<R>>,
        deadline: Instant,
    ) -> Result<Vec<(usize, R)>, Error> {
        Select::all_until(calls, Some(deadline))
    }

    fn all_until<R: DeserializeOwned + Send + 'static>(
        calls: impl IntoIterator<Item = AsyncCall<R>>,
        deadline: Option<Instant>,
    ) -> Result<Vec<(usize, R)>, Error> {
        let mut pending = std::collections::HashMap::new();
        let mut select = Select::new();
        for (index, call) in calls.into_iter().enumerate() {
            pending.insert(call.handle(), (index, call.decoder()));
            select.add(call);
        }
        let mut out = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let msg = match select.recv_inner(deadline) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout(t)) => {
                    return Err(all_timed_out(t, &pending, out.len() + pending.len()).into())
                }
                Err(RecvTimeoutError::Channel(e)) => return Err(e.into()),
            };
            let Some((index, decoder)) = pending.remove(&msg.receiver_handle()) else {
                continue;
            };
            out.push((index, decoder.decode(msg)?));
        }
        Ok(out)
    }
}

/// The timeout of [`Select::all_until`], naming the calls still pending.
fn all_timed_out<R>(
    t: TimeoutError,
    pending: &std::collections::HashMap<u32, (usize, CallDecoder<R>)>,
    total: usize,
) -> TimeoutError {
    let mut left: Vec<_> = pending.values().collect();
    left.sort_by_key(|(index, _)| *index);
    let named: Vec<String> = left
        .iter()
        .take(5)
        .map(|(index, d)| format!("call {index}: {}", d.waiting_for()))
        .collect();
    let more = left.len().saturating_sub(named.len());
    TimeoutError {
        what: format!(
            "waiting for {} of {total} calls ({}{})",
            left.len(),
            named.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
        ..t
    }
}

impl Member for Select {
    fn key(&self) -> u32 {
        self.key
    }
    fn set_notify(&self, f: Option<Notify>) -> usize {
        let (n, closed) = self.ready.set_notify(f);
        n + usize::from(closed)
    }
    fn try_recv(&self) -> Result<Message, TryRecvError> {
        Select::try_recv(self)
    }
}
