//! [`Message`]: the unit the router moves between contexts.

use serde::{de::DeserializeOwned, Serialize};

use mitogen_wire::{Header, FLAG_DEAD, FLAG_FLOW};

use crate::error::{ChannelError, Error, Loss, LossKind, Result};
use crate::router::Router;

/// A message: addressing fields and an encoded body.
///
/// Bodies are serde values encoded with [`Message::pickled`] and decoded with
/// [`Message::unpickle`] (the names Mitogen users know).
///
/// # Examples
/// ```
/// use mitogen::Message;
/// let msg = Message::pickled(&vec![1u32, 2, 3], 1000).unwrap();
/// assert_eq!(msg.unpickle::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
/// assert!(Message::dead("gone", 1000).unpickle::<u32>().is_err());
/// ```
#[derive(Clone, Default)]
pub struct Message {
    /// Destination context id.
    pub dst_id: u32,
    /// Source context id.
    pub src_id: u32,
    /// Context whose authority the message carries (stamped by the first hop).
    pub auth_id: u32,
    /// Destination handle.
    pub handle: u32,
    /// Handle replies go to; 0 for none.
    pub reply_to: u32,
    /// The body. For a dead message, a UTF-8 reason.
    pub data: Vec<u8>,
    pub(crate) dead: bool,
    pub(crate) router: Option<Router>,
    pub(crate) receiver: u32,
    /// Context id of the stream the message arrived on; 0 when local.
    pub(crate) from_stream: u32,
    /// Counts against the receiver's flow-control window (`FLAG_FLOW`).
    pub(crate) flow: bool,
    /// For a dead message made here for a lost context: the loss, with its
    /// kind (dead messages from other contexts carry only their text).
    pub(crate) loss: Option<Box<Loss>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Message(dst={}, src={}, auth={}, handle={}, reply_to={}, {} bytes{})",
            self.dst_id,
            self.src_id,
            self.auth_id,
            self.handle,
            self.reply_to,
            self.data.len(),
            if self.dead { ", dead" } else { "" }
        )
    }
}

impl Message {
    /// A message with raw `data` for `handle`; addressing is filled in when sent.
    pub fn new(handle: u32, data: Vec<u8>) -> Message {
        Message {
            handle,
            data,
            ..Message::default()
        }
    }

    /// A message whose body is `value` encoded.
    ///
    /// # Errors
    /// [`Error::Codec`] if serde cannot encode the value.
    pub fn pickled<T: Serialize + ?Sized>(value: &T, handle: u32) -> Result<Message> {
        Ok(Message::new(handle, mitogen_wire::encode(value)?))
    }

    /// A dead message carrying `reason` (Mitogen's `Message.dead`).
    pub fn dead(reason: &str, handle: u32) -> Message {
        Message {
            dead: true,
            ..Message::new(handle, reason.as_bytes().to_vec())
        }
    }

    /// A dead message for `handle` carrying `loss` (its text is the body).
    pub(crate) fn dead_with(loss: Loss, handle: u32) -> Message {
        Message {
            loss: Some(Box::new(loss.clone())),
            ..Message::dead(&loss.text, handle)
        }
    }

    /// Why a dead message is dead, with a kind: the loss it was made for,
    /// or, from another context, a refusal by the context that sent it.
    pub(crate) fn dead_loss(&self) -> Option<Loss> {
        let text = self.dead_reason()?;
        Some(match &self.loss {
            Some(loss) => (**loss).clone(),
            None => {
                let context = match &self.router {
                    Some(r) => r.name_of(self.src_id),
                    None => format!("context {}", self.src_id),
                };
                Loss::new(LossKind::Refused, context, text)
            }
        })
    }

    /// The error a dead message reads as: the normal end of a stream
    /// ([`ChannelError::SenderClosed`]) or a loss or refusal
    /// ([`ChannelError::Dead`]); `None` for a live message.
    pub(crate) fn dead_error(&self) -> Option<ChannelError> {
        let loss = self.dead_loss()?;
        if self.loss.is_none() && loss.text == crate::error::SENDER_CLOSED {
            return Some(ChannelError::SenderClosed {
                context: loss.context,
            });
        }
        Some(ChannelError::Dead(loss))
    }

    /// `true` for a dead message: the sender is gone or refused the message.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The reason carried by a dead message.
    pub fn dead_reason(&self) -> Option<String> {
        self.dead
            .then(|| String::from_utf8_lossy(&self.data).into_owned())
    }

    /// The handle of the receiver that delivered this message (0 if none);
    /// tells which member of a [`Select`](crate::Select) it came from.
    pub fn receiver_handle(&self) -> u32 {
        self.receiver
    }

    /// Decode the body.
    ///
    /// # Errors
    /// [`Error::Channel`] for a dead message, [`Error::Codec`] when the body
    /// is not a `T`.
    pub fn unpickle<T: DeserializeOwned>(&self) -> Result<T> {
        if let Some(e) = self.dead_error() {
            return Err(e.into());
        }
        Router::decoding_with(self.router.as_ref(), || {
            Ok(mitogen_wire::decode(&self.data)?)
        })
    }

    /// Send `value` to this message's `reply_to` handle at its source.
    ///
    /// # Errors
    /// [`Error::Stream`] when the reply cannot be routed (e.g. too large).
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.reply_message(Message::pickled(value, 0)?)
    }

    /// Send a prepared message to this message's reply address.
    pub(crate) fn reply_message(&self, mut msg: Message) -> Result<()> {
        let router = self
            .router
            .as_ref()
            .ok_or(Error::Channel(ChannelError::Closed))?;
        msg.dst_id = self.src_id;
        msg.handle = self.reply_to;
        router.route(msg)
    }

    pub(crate) fn header(&self) -> Header {
        // Bodies are checked against the maximum message size, itself at
        // most `u32::MAX` (`Router::set_max_message_size`), before framing.
        debug_assert!(u32::try_from(self.data.len()).is_ok());
        Header {
            flags: if self.dead { FLAG_DEAD } else { 0 } | if self.flow { FLAG_FLOW } else { 0 },
            dst_id: self.dst_id,
            src_id: self.src_id,
            auth_id: self.auth_id,
            handle: self.handle,
            reply_to: self.reply_to,
            length: self.data.len() as u32,
        }
    }

    pub(crate) fn from_frame(frame: mitogen_wire::Frame) -> Message {
        let h = frame.header;
        Message {
            dst_id: h.dst_id,
            src_id: h.src_id,
            auth_id: h.auth_id,
            handle: h.handle,
            reply_to: h.reply_to,
            dead: h.is_dead(),
            data: frame.body,
            router: None,
            receiver: 0,
            from_stream: 0,
            flow: h.is_flow() && !h.is_dead(),
            loss: None,
        }
    }
}
