//! [`Receiver`]: messages arriving on one handle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Latch, Member, Sender};
use crate::context::Context;
use crate::error::{
    ChannelError, GetTimeoutError, RecvTimeoutError, TimeoutError, TryGetError, TryRecvError,
};
use crate::message::Message;
use crate::router::{OwedCache, Policy, Router};

/// Options of [`Receiver::with_options`], Mitogen's `Receiver` arguments.
#[derive(Clone, Default)]
pub struct ReceiverOptions {
    /// Listen on this handle instead of a new one.
    pub handle: Option<u32>,
    /// Remove the handler after the first message (Mitogen's `persist=False`).
    pub oneshot: bool,
    /// Context whose disconnection wakes this receiver with a dead message.
    pub respondent: Option<u32>,
    /// Refuse messages this policy rejects.
    pub policy: Option<Policy>,
}

/// Receives the messages sent to one handle of this context (Mitogen's `Receiver`).
///
/// Dead messages come out as [`ChannelError::Dead`] with their reason; the
/// normal end of a stream (its [`Sender`] closed) as
/// [`ChannelError::SenderClosed`].
/// Dropping or [closing](Receiver::close) the receiver removes its handler.
///
/// Taking a message out returns its bytes to the sender's flow-control
/// window ([`Router::flow_window`]): a receiver nobody reads makes its
/// senders in other contexts wait once that window is full, instead of
/// growing without bound. Messages still queued when it is dropped are
/// credited then.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// let rx = mitogen::Receiver::new(&router);
/// rx.to_sender().send(&"hi").unwrap();
/// let msg = rx.recv().unwrap();
/// assert_eq!(msg.unpickle::<String>().unwrap(), "hi");
/// # }).unwrap();
/// ```
pub struct Receiver {
    router: Router,
    handle: u32,
    latch: Latch<Message>,
    closed: Arc<AtomicBool>,
    /// What we owe the last sender seen (flow-control credit).
    owed: OnceLock<OwedCache>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Receiver(handle={})", self.handle)
    }
}

impl Receiver {
    /// A receiver on a newly allocated handle.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// assert!(rx.is_empty());
    /// # }).unwrap();
    /// ```
    pub fn new(router: &Router) -> Receiver {
        Receiver::with_options(router, ReceiverOptions::default())
    }

    /// A receiver with explicit options.
    ///
    /// # Panics
    /// When `opts.handle` already has a handler (Mitogen refuses too):
    /// two receivers on one handle would steal each other's messages.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Receiver, ReceiverOptions};
    /// // Removed after its first message, like Mitogen's `persist=False`.
    /// let opts = ReceiverOptions { oneshot: true, ..Default::default() };
    /// let rx = Receiver::with_options(&router, opts);
    /// rx.to_sender().send(&1u8).unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<u8>().unwrap(), 1);
    /// # }).unwrap();
    /// ```
    pub fn with_options(router: &Router, opts: ReceiverOptions) -> Receiver {
        let latch = Latch::new();
        let l2 = latch.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let handle = router
            .add_queueing_handler(
                move |mut msg: Message| {
                    msg.receiver = msg.handle;
                    let _ = l2.put(msg);
                },
                opts,
            )
            .unwrap_or_else(|e| panic!("Receiver::with_options: {e}"));
        Receiver {
            router: router.clone(),
            handle,
            latch,
            closed,
            owed: OnceLock::new(),
        }
    }

    /// The handle messages must be sent to.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Context, Receiver, Sender};
    /// let rx = Receiver::new(&router);
    /// // Anyone who knows the context and the handle can send to it.
    /// let tx = Sender::new(Context::local(&router), rx.handle());
    /// tx.send(&"hello").unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<String>().unwrap(), "hello");
    /// # }).unwrap();
    /// ```
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The router it receives through.
    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// A [`Sender`] that delivers to this receiver from any context.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender(); // pass it to a remote function as an argument
    /// assert_eq!(tx.dst_handle(), rx.handle());
    /// # }).unwrap();
    /// ```
    pub fn to_sender(&self) -> Sender {
        Sender::new(Context::local(&self.router), self.handle)
    }

    /// A message was taken out: credit its sender's window, then turn a
    /// dead message into its error.
    fn map(&self, mut msg: Message) -> Result<Message, ChannelError> {
        if msg.flow {
            self.router.consumed(&msg, Some(&self.owed));
            msg.flow = false;
        }
        match msg.dead_error() {
            Some(e) => Err(e),
            None => Ok(msg),
        }
    }

    /// Take a queued message without blocking.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or [`TryRecvError::Channel`] for a dead message or closed receiver.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{ChannelError, TryRecvError};
    /// let rx = mitogen::Receiver::new(&router);
    /// assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    /// rx.to_sender().send(&1u8).unwrap(); // to this context: queued at once
    /// assert_eq!(rx.try_recv().unwrap().unpickle::<u8>().unwrap(), 1);
    /// rx.close();
    /// assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Channel(ChannelError::Closed));
    /// # }).unwrap();
    /// ```
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        match self.latch.try_get() {
            Ok(m) => self.map(m).map_err(TryRecvError::Channel),
            Err(TryGetError::Empty) => Err(TryRecvError::Empty),
            Err(TryGetError::Closed) => Err(TryRecvError::Channel(ChannelError::Closed)),
        }
    }

    /// Block until a message arrives (Mitogen's `get`).
    ///
    /// # Errors
    /// [`ChannelError::Dead`] with the reason, or [`ChannelError::Closed`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// std::thread::spawn(move || tx.send(&vec![1u8, 2]).unwrap());
    /// let msg = rx.recv().unwrap(); // blocks until the thread sends
    /// assert_eq!(msg.unpickle::<Vec<u8>>().unwrap(), [1, 2]);
    /// # }).unwrap();
    /// ```
    #[doc(alias = "get")]
    pub fn recv(&self) -> Result<Message, ChannelError> {
        match self.recv_inner(None) {
            Ok(m) => Ok(m),
            Err(RecvTimeoutError::Channel(e)) => Err(e),
            Err(RecvTimeoutError::Timeout(_)) => unreachable!("no deadline"),
        }
    }

    /// Block for at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Channel`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// let rx = mitogen::Receiver::new(&router);
    /// match rx.recv_timeout(Duration::from_millis(10)) {
    ///     Err(mitogen::RecvTimeoutError::Timeout(t)) => {
    ///         assert!(t.to_string().contains("waiting for a message on handle"));
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
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Channel`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::{Duration, Instant};
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().send(&5u8).unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// assert_eq!(rx.recv_deadline(deadline).unwrap().unpickle::<u8>().unwrap(), 5);
    /// # }).unwrap();
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message, RecvTimeoutError> {
        self.recv_inner(Some(deadline))
    }

    fn recv_inner(&self, deadline: Option<Instant>) -> Result<Message, RecvTimeoutError> {
        match self.latch.get_until(deadline) {
            Ok(m) => self.map(m).map_err(RecvTimeoutError::Channel),
            Err(GetTimeoutError::Closed) => Err(RecvTimeoutError::Channel(ChannelError::Closed)),
            Err(GetTimeoutError::Timeout(t)) => Err(RecvTimeoutError::Timeout(TimeoutError {
                what: format!(
                    "waiting for a message on handle {} in context '{}' (id {})",
                    self.handle,
                    self.router.name_of(self.router.context_id()),
                    self.router.context_id()
                ),
                ..t
            })),
        }
    }

    /// Iterate over messages until the channel is dead or closed.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// for i in 0..3u8 {
    ///     tx.send(&i).unwrap();
    /// }
    /// tx.close().unwrap(); // ends the iteration
    /// let got: Vec<u8> = rx.iter().map(|m| m.unpickle().unwrap()).collect();
    /// assert_eq!(got, [0, 1, 2]);
    /// # }).unwrap();
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Stop receiving: remove the handler and wake waiters with
    /// [`ChannelError::Closed`] once queued messages are taken.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.close();
    /// assert_eq!(rx.recv().unwrap_err(), mitogen::ChannelError::Closed);
    /// # }).unwrap();
    /// ```
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.router.del_handler(self.handle);
            self.latch.close();
        }
    }

    /// `true` when nothing is queued (Mitogen's `empty()`).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// assert!(rx.is_empty());
    /// rx.to_sender().send(&()).unwrap();
    /// assert!(!rx.is_empty());
    /// # }).unwrap();
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.latch.is_empty()
    }

    /// Number of queued messages.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().send(&1u8).unwrap();
    /// rx.to_sender().send(&2u8).unwrap();
    /// assert_eq!(rx.len(), 2);
    /// # }).unwrap();
    /// ```
    pub fn len(&self) -> usize {
        self.latch.len()
    }

    /// Call `f` (on the broker thread; it must not block) each time a message
    /// is queued or the receiver closes (Mitogen's `notify`).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let rx = mitogen::Receiver::new(&router);
    /// let queued = Arc::new(AtomicUsize::new(0));
    /// let seen = queued.clone();
    /// rx.set_notify(Some(Arc::new(move || {
    ///     seen.fetch_add(1, Ordering::SeqCst); // quick: runs on the broker thread
    /// })));
    /// rx.to_sender().send(&1u8).unwrap();
    /// assert_eq!(queued.load(Ordering::SeqCst), 1);
    /// # }).unwrap();
    /// ```
    pub fn set_notify(&self, f: Option<Arc<dyn Fn() + Send + Sync>>) {
        self.latch.set_notify(f);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
        // Messages nobody will read still owe their senders credit.
        while let Ok(msg) = self.latch.try_get() {
            self.router.consumed(&msg, Some(&self.owed));
        }
        // Owed entries exist only for handles that consumed flow messages.
        if self.owed.get().is_some() {
            self.router.flush_credit(self.handle);
        }
    }
}

impl Member for Receiver {
    fn key(&self) -> u32 {
        self.handle
    }
    fn set_notify(&self, f: Option<Arc<dyn Fn() + Send + Sync>>) -> usize {
        let (n, closed) = self.latch.set_notify(f);
        n + usize::from(closed)
    }
    fn try_recv(&self) -> Result<Message, TryRecvError> {
        Receiver::try_recv(self)
    }
}
