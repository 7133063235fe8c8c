//! Typed call handles and pending replies.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::blob::with_frame;
use mitogen_wire::handle;

use crate::error::{
    CallError, CallErrorKind, ChannelError, CodecError, Error, RecvTimeoutError, Result,
    TimeoutError, TryRecvError, POLICY_REFUSAL,
};
use crate::message::Message;
use crate::router::Router;
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
    if let Some(e) = msg.dead_error() {
        return Err(call_failure(e, function, context, msg.router.as_ref()));
    }
    // Decode from the frame itself: a `Blob` result borrows it.
    let frame = std::sync::Arc::new(std::mem::take(&mut msg.data));
    crate::Router::decoding_with(msg.router.as_ref(), || {
        with_frame(&frame, |data| decode_reply_body(data, function, context))
    })
}

/// The error of a call whose reply channel died: a refusal by the callee
/// becomes a [`CallErrorKind::Refused`] error in words, anything else
/// (a lost context) stays a channel error.
fn call_failure(e: ChannelError, function: &str, context: &str, router: Option<&Router>) -> Error {
    let ChannelError::Dead(loss) = &e else {
        return e.into();
    };
    let caller = match router {
        Some(r) => format!(
            "context '{}' (id {})",
            r.name_of(r.context_id()),
            r.context_id()
        ),
        None => "this context".to_string(),
    };
    let why = if loss.text == POLICY_REFUSAL {
        format!(
            "only a context's parents may call it, so children may not call their parents \
             nor siblings each other (refused by policy has_parent_authority; caller: {caller})"
        )
    } else if loss
        .text
        .starts_with(&format!("no handler for handle {} ", handle::CALL_FUNCTION))
    {
        format!(
            "context '{}' serves no calls (only children run a dispatcher), so children may \
             not call their parents (caller: {caller})",
            loss.context
        )
    } else {
        return e.into();
    };
    let mut refused = CallError::new(CallErrorKind::Refused, function, "", why);
    refused.context = context.to_string();
    refused.into()
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

/// Decodes the reply of one call into its typed result, apart from the
/// call: keep it to decode a reply taken out of a [`Select`](crate::Select)
/// after the [`AsyncCall`] itself joined it.
///
/// # Examples
/// ```no_run
/// # #[mitogen::remote] fn double(x: u32) -> u32 { 2 * x }
/// # fn main() {}
/// # fn f(a: mitogen::Context, b: mitogen::Context) -> mitogen::Result<()> {
/// use std::collections::HashMap;
/// let mut select = mitogen::Select::new();
/// let mut decoders = HashMap::new();
/// for (ctx, x) in [(&a, 1), (&b, 2)] {
///     let call = ctx.call_async(double::remote, (x,))?;
///     decoders.insert(call.handle(), call.decoder());
///     select.add(call);
/// }
/// while !select.is_empty() {
///     let msg = select.recv()?;
///     let decoder = &decoders[&msg.receiver_handle()];
///     println!("{} from {}: {:?}", decoder.function(), decoder.context_name(), decoder.decode(msg));
/// }
/// # Ok(()) }
/// ```
pub struct CallDecoder<R> {
    handle: u32,
    function: &'static str,
    context: Arc<str>,
    context_id: u32,
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for CallDecoder<R> {
    fn clone(&self) -> Self {
        CallDecoder {
            handle: self.handle,
            function: self.function,
            context: self.context.clone(),
            context_id: self.context_id,
            _result: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for CallDecoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallDecoder({} in {})", self.function, self.context)
    }
}

impl<R> CallDecoder<R> {
    /// The handle the reply arrives on: [`Message::receiver_handle`] of it.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let call = ctx.call_async(f::remote, ())?;
    /// assert_eq!(call.decoder().handle(), call.handle());
    /// # Ok(()) }
    /// ```
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The function called.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// assert!(ctx.call_async(f::remote, ())?.decoder().function().ends_with("::f"));
    /// # Ok(()) }
    /// ```
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// Name of the context the call runs in.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// assert_eq!(ctx.call_async(f::remote, ())?.decoder().context_name(), ctx.name());
    /// # Ok(()) }
    /// ```
    pub fn context_name(&self) -> &str {
        &self.context
    }

    /// What a wait for this call's result is waiting for, for timeouts.
    pub(crate) fn waiting_for(&self) -> String {
        format!(
            "the result of {} from context '{}' (id {})",
            self.function, self.context, self.context_id
        )
    }
}

impl<R: DeserializeOwned> CallDecoder<R> {
    /// The call's result from its reply `msg`: the value, the remote
    /// failure, or why the reply is dead.
    ///
    /// # Errors
    /// As [`AsyncCall::get`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let call = ctx.call_async(f::remote, ())?;
    /// let decoder = call.decoder();
    /// let mut select = mitogen::Select::new();
    /// select.add(call);
    /// assert_eq!(decoder.decode(select.recv()?)?, 1);
    /// # Ok(()) }
    /// ```
    pub fn decode(&self, msg: Message) -> Result<R> {
        self.stamp(decode_reply(msg, self.function, &self.context))
    }

    /// Name the callee's id in a call error.
    fn stamp(&self, result: Result<R>) -> Result<R> {
        result.map_err(|e| match e {
            Error::Call(mut c) => {
                if c.context == *self.context && c.context_id.is_none() {
                    c.context_id = Some(self.context_id);
                }
                Error::Call(c)
            }
            other => other,
        })
    }
}

/// A call in flight: wait for its typed result with [`AsyncCall::get`], or
/// add it to a [`Select`](crate::Select) (Mitogen's `call_async` receiver);
/// keep its [`AsyncCall::decoder`] to decode what the select returns.
pub struct AsyncCall<R> {
    receiver: Receiver,
    decoder: CallDecoder<R>,
}

impl<R> std::fmt::Debug for AsyncCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AsyncCall({} in {})",
            self.decoder.function, self.decoder.context
        )
    }
}

impl<R: DeserializeOwned> AsyncCall<R> {
    pub(crate) fn new(
        receiver: Receiver,
        function: &'static str,
        context: Arc<str>,
        context_id: u32,
    ) -> AsyncCall<R> {
        AsyncCall {
            decoder: CallDecoder {
                handle: receiver.handle(),
                function,
                context,
                context_id,
                _result: PhantomData,
            },
            receiver,
        }
    }

    /// Wait for the result.
    ///
    /// # Errors
    /// [`Error::Call`](crate::Error::Call) when the function failed or the
    /// callee refused the call, [`Error::Channel`](crate::Error::Channel)
    /// when the context was lost.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let pending = ctx.call_async(f::remote, ())?;
    /// // … other work …
    /// assert_eq!(pending.get()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn get(self) -> Result<R> {
        self.get_until(None)
    }

    /// Wait at most `timeout` for the result. The call itself is not
    /// cancelled: it keeps the callee's dispatcher busy until it ends (see
    /// [`Context::call_timeout`](crate::Context::call_timeout)).
    ///
    /// # Errors
    /// As [`AsyncCall::get`], plus [`Error::Timeout`](crate::Error::Timeout):
    /// "timed out after 1.0 s waiting for the result of f from context 'web1' (id 3)".
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let pending = ctx.call_async(f::remote, ())?;
    /// let one = pending.get_timeout(std::time::Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    pub fn get_timeout(self, timeout: Duration) -> Result<R> {
        self.get_until(crate::sync::deadline_after(timeout))
    }

    /// Wait until `deadline` for the result.
    ///
    /// # Errors
    /// As [`AsyncCall::get_timeout`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    /// let pending = ctx.call_async(f::remote, ())?;
    /// let one = pending.get_deadline(deadline)?;
    /// # Ok(()) }
    /// ```
    pub fn get_deadline(self, deadline: Instant) -> Result<R> {
        self.get_until(Some(deadline))
    }

    fn get_until(self, deadline: Option<Instant>) -> Result<R> {
        let got = match deadline {
            None => self.receiver.recv(),
            Some(d) => match self.receiver.recv_deadline(d) {
                Ok(msg) => Ok(msg),
                Err(RecvTimeoutError::Timeout(t)) => {
                    return Err(TimeoutError {
                        what: format!("waiting for {}", self.decoder.waiting_for()),
                        ..t
                    }
                    .into())
                }
                Err(RecvTimeoutError::Channel(e)) => Err(e),
            },
        };
        match got {
            Ok(msg) => self.decoder.decode(msg),
            Err(e) => self.decoder.stamp(Err(call_failure(
                e,
                self.decoder.function,
                &self.decoder.context,
                Some(self.receiver.router()),
            ))),
        }
    }

    /// Decode a reply taken for this call with [`Member::try_recv`] (once
    /// the call joined a [`Select`](crate::Select), use its
    /// [`AsyncCall::decoder`]).
    ///
    /// # Errors
    /// As [`AsyncCall::get`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let call = ctx.call_async(f::remote, ())?;
    /// // Poll without blocking, e.g. from an event loop of one's own:
    /// if let Ok(msg) = mitogen::Member::try_recv(&call) {
    ///     assert_eq!(call.decode(&msg)?, 1);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn decode(&self, msg: &Message) -> Result<R> {
        self.decoder.decode(msg.clone())
    }
}

impl<R> AsyncCall<R> {
    /// The handle the reply arrives on; equals [`Message::receiver_handle`] of it.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let call = ctx.call_async(f::remote, ())?;
    /// assert_ne!(call.handle(), 0);
    /// # Ok(()) }
    /// ```
    pub fn handle(&self) -> u32 {
        self.receiver.handle()
    }

    /// The function called.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// assert!(ctx.call_async(f::remote, ())?.function().ends_with("::f"));
    /// # Ok(()) }
    /// ```
    pub fn function(&self) -> &str {
        self.decoder.function
    }

    /// The context it runs in.
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() {}
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// assert_eq!(ctx.call_async(f::remote, ())?.context_name(), ctx.name());
    /// # Ok(()) }
    /// ```
    pub fn context_name(&self) -> &str {
        &self.decoder.context
    }

    /// A decoder for this call's reply, to keep once the call joins a
    /// [`Select`](crate::Select).
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn f() -> u8 { 1 }
    /// # fn main() {}
    /// # fn g(ctx: mitogen::Context) -> mitogen::Result<()> {
    /// let call = ctx.call_async(f::remote, ())?;
    /// let decoder = call.decoder();
    /// let select = mitogen::Select::from_members([call]);
    /// let one: u8 = decoder.decode(select.recv()?)?;
    /// # Ok(()) }
    /// ```
    pub fn decoder(&self) -> CallDecoder<R> {
        self.decoder.clone()
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
                m.router = Some(self.receiver.router().clone());
                Ok(m)
            }
            other => other,
        }
    }
}
