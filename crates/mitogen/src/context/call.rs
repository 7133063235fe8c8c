//! Typed call handles and pending replies.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::blob::with_frame;
use crate::error::{CallError, ChannelError, CodecError, Result, TryRecvError};
use crate::message::Message;
use crate::sync::{Member, Receiver};

/// A typed handle on a function registered with [`#[remote]`](crate::remote):
/// `A` is the tuple of its arguments, `R` its result. The attribute makes one
/// for each function, named `<function>::remote`.
///
/// # Examples
/// ```
/// #[mitogen::remote]
/// fn add(a: i32, b: i32) -> i32 { a + b }
///
/// fn main() {
///     let f: mitogen::Remote<(i32, i32), i32> = add::remote;
///     assert!(f.name().ends_with("::add"));
/// }
/// ```
pub struct Remote<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for Remote<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, R> Copy for Remote<A, R> {}

impl<A, R> std::fmt::Debug for Remote<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.name)
    }
}

impl<A, R> Remote<A, R> {
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Remote<A, R> {
        Remote {
            name,
            _types: PhantomData,
        }
    }

    /// A handle on the function registered as `name`, unchecked: the types
    /// are the caller's promise. A wrong name fails remotely with
    /// `CallErrorKind::UnknownFunction`, wrong types with `BadArguments`.
    ///
    /// # Examples
    /// ```
    /// let f = mitogen::Remote::<(), u32>::named("my_crate::pid");
    /// assert_eq!(f.name(), "my_crate::pid");
    /// ```
    pub const fn named(name: &'static str) -> Remote<A, R> {
        Remote::__new(name)
    }

    /// The registered name: `<module path>::<function>`.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Reply tag: the rest of the body is the encoded result.
pub(crate) const REPLY_OK: u8 = 0;
/// Reply tag: the rest of the body is an encoded [`CallError`].
pub(crate) const REPLY_ERR: u8 = 1;

/// Decode a call reply: a result, a remote failure, or a dead message.
pub(crate) fn decode_reply<R: DeserializeOwned>(
    mut msg: Message,
    function: &str,
    context: &str,
) -> Result<R> {
    if let Some(loss) = msg.dead_loss() {
        return Err(ChannelError::Dead(loss).into());
    }
    // Decode from the frame itself: a `Blob` result borrows it.
    let frame = std::sync::Arc::new(std::mem::take(&mut msg.data));
    crate::Router::decoding_with(msg.router.as_ref(), || {
        with_frame(&frame, |data| decode_reply_body(data, function, context))
    })
}

fn decode_reply_body<R: DeserializeOwned>(data: &[u8], function: &str, context: &str) -> Result<R> {
    match data.split_first() {
        Some((&REPLY_OK, rest)) => Ok(mitogen_wire::decode(rest)?),
        Some((&REPLY_ERR, rest)) => {
            let mut e: CallError = mitogen_wire::decode(rest)?;
            if e.context.is_empty() {
                e.context = context.to_string();
            }
            if e.function.is_empty() {
                e.function = function.to_string();
            }
            Err(e.into())
        }
        _ => {
            Err(CodecError::new("decoding", format!("reply to {function} has no valid tag")).into())
        }
    }
}

/// A call in flight: wait for its typed result with [`AsyncCall::get`], or
/// add it to a [`Select`](crate::Select) (Mitogen's `call_async` receiver).
pub struct AsyncCall<R> {
    receiver: Receiver,
    function: &'static str,
    context: Arc<str>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for AsyncCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsyncCall({} in {})", self.function, self.context)
    }
}

impl<R: DeserializeOwned> AsyncCall<R> {
    pub(crate) fn new(
        receiver: Receiver,
        function: &'static str,
        context: Arc<str>,
    ) -> AsyncCall<R> {
        AsyncCall {
            receiver,
            function,
            context,
            _result: PhantomData,
        }
    }

    /// Wait for the result.
    ///
    /// # Errors
    /// [`Error::Call`](crate::Error::Call) when the function failed, [`Error::Channel`](crate::Error::Channel) when the
    /// context was lost.
    pub fn get(self) -> Result<R> {
        let msg = self.receiver.recv()?;
        decode_reply(msg, self.function, &self.context)
    }

    /// Wait at most `timeout` for the result.
    ///
    /// # Errors
    /// As [`AsyncCall::get`], plus [`Error::Timeout`](crate::Error::Timeout).
    pub fn get_timeout(self, timeout: Duration) -> Result<R> {
        self.get_deadline(Instant::now() + timeout)
    }

    /// Wait until `deadline` for the result.
    ///
    /// # Errors
    /// As [`AsyncCall::get_timeout`].
    pub fn get_deadline(self, deadline: Instant) -> Result<R> {
        match self.receiver.recv_deadline(deadline) {
            Ok(msg) => decode_reply(msg, self.function, &self.context),
            Err(crate::error::RecvTimeoutError::Timeout(mut t)) => {
                t.what = format!("waiting for {} in {}", self.function, self.context);
                Err(t.into())
            }
            Err(crate::error::RecvTimeoutError::Channel(e)) => Err(e.into()),
        }
    }

    /// Decode a reply taken out of a [`Select`](crate::Select) for this call.
    ///
    /// # Errors
    /// As [`AsyncCall::get`].
    pub fn decode(&self, msg: &Message) -> Result<R> {
        decode_reply(msg.clone(), self.function, &self.context)
    }
}

impl<R> AsyncCall<R> {
    /// The handle the reply arrives on; equals [`Message::receiver_handle`] of it.
    pub fn handle(&self) -> u32 {
        self.receiver.handle()
    }

    /// The function called.
    pub fn function(&self) -> &str {
        self.function
    }

    /// The context it runs in.
    pub fn context_name(&self) -> &str {
        &self.context
    }
}

impl<R: Send> Member for AsyncCall<R> {
    fn key(&self) -> u32 {
        self.receiver.handle()
    }
    fn set_notify(&self, f: Option<Arc<dyn Fn() + Send + Sync>>) -> usize {
        Member::set_notify(&self.receiver, f)
    }
    fn try_recv(&self) -> Result<Message, TryRecvError> {
        // Dead replies are handed out as messages so `decode` can report them.
        match self.receiver.try_recv() {
            Err(TryRecvError::Channel(ChannelError::Dead(loss))) => {
                let mut m = Message::dead_with(loss, self.receiver.handle());
                m.receiver = self.receiver.handle();
                Ok(m)
            }
            other => other,
        }
    }
}
