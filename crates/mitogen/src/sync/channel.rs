//! [`Channel`]: a [`Sender`] and a [`Receiver`] in one.

use serde::Serialize;

use super::{Receiver, Sender};
use crate::context::Context;
use std::time::{Duration, Instant};

use crate::error::{
    ChannelError, RecvTimeoutError, Result, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::message::Message;
use crate::router::Router;

/// Bidirectional channel to a handle in another context (Mitogen's `Channel`).
///
/// Each end must learn the other's handle: make a `Channel` on each side and
/// exchange [`Channel::handle`]s (e.g. as call arguments or results).
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// let me = mitogen::Context::local(&router);
/// let a = mitogen::Channel::new(&router, me.clone(), 0);
/// let b = mitogen::Channel::new(&router, me, a.handle());
/// b.send(&"ping").unwrap();
/// assert_eq!(a.recv().unwrap().unpickle::<String>().unwrap(), "ping");
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct Channel {
    sender: Sender,
    receiver: Receiver,
}

impl Channel {
    /// A channel sending to `dst_handle` in `context` and receiving on a new handle.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send(&"ping").unwrap();
    /// assert_eq!(a.recv().unwrap().unpickle::<String>().unwrap(), "ping");
    /// # }).unwrap();
    /// ```
    pub fn new(router: &Router, context: Context, dst_handle: u32) -> Channel {
        Channel {
            sender: Sender::new(context, dst_handle),
            receiver: Receiver::new(router),
        }
    }

    /// The local handle the far end must send to.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me, 0);
    /// assert_eq!(a.handle(), a.receiver().handle());
    /// # }).unwrap();
    /// ```
    pub fn handle(&self) -> u32 {
        self.receiver.handle()
    }

    /// Point the sending side at another handle (once the far end's is known).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let mut a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// a.set_dst_handle(b.handle()); // now both ends know each other
    /// a.send(&"pong").unwrap();
    /// assert_eq!(b.recv().unwrap().unpickle::<String>().unwrap(), "pong");
    /// # }).unwrap();
    /// ```
    pub fn set_dst_handle(&mut self, dst_handle: u32) {
        self.sender = Sender::new(self.sender.context().clone(), dst_handle);
    }

    /// Send a value to the far end.
    ///
    /// # Errors
    /// As [`Sender::send`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send(&(1u8, "two")).unwrap();
    /// let (one, two): (u8, String) = a.recv().unwrap().unpickle().unwrap();
    /// assert_eq!((one, two.as_str()), (1, "two"));
    /// # }).unwrap();
    /// ```
    #[doc(alias = "put")]
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.sender.send(value)
    }

    /// Send a value only if there is room now (see [`Sender::try_send`]).
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.try_send(3u8).unwrap();
    /// assert_eq!(a.recv().unwrap().unpickle::<u8>().unwrap(), 3);
    /// # }).unwrap();
    /// ```
    pub fn try_send<T: Serialize>(&self, value: T) -> Result<(), TrySendError<T>> {
        self.sender.try_send(value)
    }

    /// Send a value, waiting at most `timeout` for room (see
    /// [`Sender::send_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::send_timeout`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send_timeout(4u8, Duration::from_secs(5)).unwrap();
    /// assert_eq!(a.recv().unwrap().unpickle::<u8>().unwrap(), 4);
    /// # }).unwrap();
    /// ```
    pub fn send_timeout<T: Serialize>(
        &self,
        value: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        self.sender.send_timeout(value, timeout)
    }

    /// Receive the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`]: a timeout is the same
    /// [`TimeoutError`](crate::TimeoutError) as every other bounded wait's.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me, 0);
    /// match a.recv_timeout(Duration::from_millis(10)) {
    ///     Err(mitogen::RecvTimeoutError::Timeout(t)) => assert!(t.waited >= Duration::from_millis(10)),
    ///     other => panic!("{other:?}"),
    /// }
    /// # }).unwrap();
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout)
    }

    /// Receive the next message, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`Receiver::recv_deadline`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::{Duration, Instant};
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send(&7u8).unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// assert_eq!(a.recv_deadline(deadline).unwrap().unpickle::<u8>().unwrap(), 7);
    /// # }).unwrap();
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message, RecvTimeoutError> {
        self.receiver.recv_deadline(deadline)
    }

    /// Take a message from the far end without blocking.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me, 0);
    /// assert_eq!(a.try_recv().unwrap_err(), mitogen::TryRecvError::Empty);
    /// # }).unwrap();
    /// ```
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.receiver.try_recv()
    }

    /// Receive the next message from the far end.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send(&9u8).unwrap();
    /// assert_eq!(a.recv().unwrap().unpickle::<u8>().unwrap(), 9);
    /// # }).unwrap();
    /// ```
    #[doc(alias = "get")]
    pub fn recv(&self) -> Result<Message, ChannelError> {
        self.receiver.recv()
    }

    /// The sending half.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// assert_eq!(b.sender().dst_handle(), a.handle());
    /// # }).unwrap();
    /// ```
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The receiving half.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.send(&1u8).unwrap();
    /// assert_eq!(a.receiver().len(), 1);
    /// # }).unwrap();
    /// ```
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// Close both halves: the far end sees a dead message.
    ///
    /// # Errors
    /// As [`Sender::close`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let me = mitogen::Context::local(&router);
    /// let a = mitogen::Channel::new(&router, me.clone(), 0);
    /// let b = mitogen::Channel::new(&router, me, a.handle());
    /// b.close().unwrap(); // a sees the end of the stream
    /// assert!(matches!(a.recv(), Err(mitogen::ChannelError::SenderClosed { .. })));
    /// # }).unwrap();
    /// ```
    pub fn close(&self) -> Result<()> {
        self.receiver.close();
        self.sender.close()
    }
}
