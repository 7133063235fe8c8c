//! [`Sender`]: the sending end of a channel to a handle in some context.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::broker::Wait;
use crate::context::Context;
use crate::error::{Result, SendTimeoutError, TrySendError};
use crate::message::Message;
use crate::router::{Refused, Router, Window};

/// Sends values to a [`Receiver`](crate::Receiver) that may live in another
/// context (Mitogen's `Sender`). Senders can be passed as call arguments.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// let rx = mitogen::Receiver::new(&router);
/// let tx = rx.to_sender();
/// tx.send(&1u8).unwrap();
/// tx.close().unwrap();
/// assert_eq!(rx.recv().unwrap().unpickle::<u8>().unwrap(), 1);
/// assert!(matches!(
///     rx.recv(),
///     Err(mitogen::ChannelError::SenderClosed { .. })
/// ));
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Sender {
    context: Context,
    dst_handle: u32,
    /// The receiver's flow-control window, once first sent to.
    window: OnceLock<Arc<Window>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("context", &self.context)
            .field("dst_handle", &self.dst_handle)
            .finish()
    }
}

impl Sender {
    /// A sender to `dst_handle` in `context`.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Context, Receiver, Sender};
    /// let rx = Receiver::new(&router);
    /// let tx = Sender::new(Context::local(&router), rx.handle());
    /// tx.send(&"hi").unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<String>().unwrap(), "hi");
    /// # }).unwrap();
    /// ```
    pub fn new(context: Context, dst_handle: u32) -> Sender {
        Sender {
            context,
            dst_handle,
            window: OnceLock::new(),
        }
    }

    /// The destination context.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// assert_eq!(tx.context().context_id(), router.context_id());
    /// # }).unwrap();
    /// ```
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The destination handle.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// assert_eq!(rx.to_sender().dst_handle(), rx.handle());
    /// # }).unwrap();
    /// ```
    pub fn dst_handle(&self) -> u32 {
        self.dst_handle
    }

    /// Send `value` (Mitogen's `put`), waiting while the receiver's
    /// flow-control window is full (see [`Router::flow_window`]): a fast
    /// sender cannot outrun a slow reader by more than the window.
    ///
    /// On the broker thread (inside a handler) it never waits.
    ///
    /// # Errors
    /// Encoding failures, a message larger than the maximum message size,
    /// or [`ChannelError::Dead`](crate::ChannelError::Dead) when the
    /// receiver's context is lost while waiting.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Progress {
    ///     done: u32,
    ///     of: u32,
    /// }
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().send(&Progress { done: 1, of: 3 }).unwrap();
    /// let got: Progress = rx.recv().unwrap().unpickle().unwrap();
    /// assert_eq!(got, Progress { done: 1, of: 3 });
    /// # }).unwrap();
    /// ```
    #[doc(alias = "put")]
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let msg = self.message(value)?;
        self.context
            .router()
            .route_wait(msg, Wait::Forever, Some(&self.window))
            .map_err(Refused::into_error)
    }

    /// Send `value` only if the receiver's window (and the stream) has room
    /// now; otherwise hand it back in [`TrySendError::Full`].
    ///
    /// # Errors
    /// [`TrySendError::Full`] with the value, or [`TrySendError::Failed`]
    /// as for [`Sender::send`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().try_send(5u8).unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<u8>().unwrap(), 5);
    /// # }).unwrap();
    /// ```
    pub fn try_send<T: Serialize>(&self, value: T) -> Result<(), TrySendError<T>> {
        let msg = self.message(&value).map_err(TrySendError::Failed)?;
        match self
            .context
            .router()
            .route_wait(msg, Wait::Never, Some(&self.window))
        {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(TrySendError::Full(value)),
            Err(Refused::Error(e)) => Err(TrySendError::Failed(e)),
        }
    }

    /// Send `value`, waiting at most `timeout` for room; when time runs
    /// out the value comes back in [`SendTimeoutError::Timeout`].
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] with the value, or
    /// [`SendTimeoutError::Failed`] as for [`Sender::send`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// let rx = mitogen::Receiver::new(&router);
    /// let tx = rx.to_sender();
    /// tx.send_timeout(7u8, Duration::from_secs(5)).unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<u8>().unwrap(), 7);
    /// # }).unwrap();
    /// ```
    pub fn send_timeout<T: Serialize>(
        &self,
        value: T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        let started = Instant::now();
        let msg = self.message(&value).map_err(SendTimeoutError::Failed)?;
        let wait = Wait::deadline(super::deadline_after(timeout));
        match self
            .context
            .router()
            .route_wait(msg, wait, Some(&self.window))
        {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(SendTimeoutError::Timeout {
                value,
                waited: started.elapsed(),
            }),
            Err(Refused::Error(e)) => Err(SendTimeoutError::Failed(e)),
        }
    }

    /// The flow-controlled message carrying `value`.
    fn message<T: Serialize + ?Sized>(&self, value: &T) -> Result<Message> {
        let mut msg = Message::pickled(value, self.dst_handle)?;
        msg.dst_id = self.context.context_id();
        msg.flow = true;
        Ok(msg)
    }

    /// Tell the receiver nothing more will come: it sees the normal end of
    /// the stream, [`ChannelError::SenderClosed`](crate::ChannelError::SenderClosed)
    /// (not [`Dead`](crate::ChannelError::Dead), which means a loss).
    ///
    /// # Errors
    /// As [`Sender::send`].
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let rx = mitogen::Receiver::new(&router);
    /// rx.to_sender().close().unwrap();
    /// assert!(matches!(rx.recv(), Err(mitogen::ChannelError::SenderClosed { .. })));
    /// # }).unwrap();
    /// ```
    pub fn close(&self) -> Result<()> {
        self.context
            .send(Message::dead(crate::error::SENDER_CLOSED, self.dst_handle))
    }
}

impl Serialize for Sender {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.context.context_id(), self.dst_handle).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Sender, D::Error> {
        let (id, handle) = <(u32, u32)>::deserialize(d)?;
        let router = Router::decoding()
            .ok_or_else(|| de::Error::custom("no router in this process to send through"))?;
        Ok(Sender::new(Context::new(&router, id, None), handle))
    }
}
