//! [`Sender`]: the sending end of a channel to a handle in some context.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::context::Context;
use crate::error::Result;
use crate::message::Message;
use crate::router::Router;

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
/// assert!(rx.recv().is_err(), "closed sender reads as dead");
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Sender {
    context: Context,
    dst_handle: u32,
}

impl Sender {
    /// A sender to `dst_handle` in `context`.
    pub fn new(context: Context, dst_handle: u32) -> Sender {
        Sender {
            context,
            dst_handle,
        }
    }

    /// The destination context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The destination handle.
    pub fn dst_handle(&self) -> u32 {
        self.dst_handle
    }

    /// Send `value` (Mitogen's `put`).
    ///
    /// # Errors
    /// Encoding failures, or a message larger than the maximum message size.
    #[doc(alias = "put")]
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.context.send(Message::pickled(value, self.dst_handle)?)
    }

    /// Tell the receiver nothing more will come: it sees a dead message.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn close(&self) -> Result<()> {
        self.context
            .send(Message::dead("sender closed", self.dst_handle))
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
        let router = Router::process()
            .ok_or_else(|| de::Error::custom("no router in this process to send through"))?;
        Ok(Sender::new(Context::new(&router, id, None), handle))
    }
}
