//! Entry points for the fuzz targets in `fuzz/` (`mitogen::__fuzz`): each
//! hands bytes to one of the library's own decoders, unchanged, on the path
//! a received message takes. Hidden and unstable: not part of the API.
//!
//! The wire decoders (header, deframer, codec) are public in `mitogen-wire`
//! and fuzzed there directly; these are the ones inside this crate.

use mitogen_wire::Frame;
use serde::de::DeserializeOwned;

pub use crate::bootstrap::marker::{find as marker, hello, need, Hello, Need};
use crate::context::dispatcher::{run_one, ExternalContext};
use crate::{Message, Result, Router};

/// Decode `frame` as the reply to a call of `function` made in `context`,
/// as [`Context::call`](crate::Context::call) does: a dead frame gives its
/// reason, a tagged body the result `R` or the remote [`CallError`](crate::CallError).
///
/// # Errors
/// As `Context::call`'s: `Channel` (dead), `Call` (remote failure), `Codec`.
pub fn reply<R: DeserializeOwned>(frame: Frame, function: &str, context: &str) -> Result<R> {
    crate::context::decode_reply(Message::from_frame(frame), function, context)
}

/// Serve `frame` as a `CALL_FUNCTION` message, as a child's dispatcher does
/// once the router has accepted it: decode the request, find the function,
/// decode its arguments, run it, encode its reply. Returns the reply body,
/// or `None` when the frame asks for none (`reply_to` 0).
pub fn call(router: &Router, frame: Frame) -> Option<Vec<u8>> {
    let ec = ExternalContext::new(router.clone());
    run_one(&ec, Message::from_frame(frame)).map(|reply| reply.data)
}
