//! Contexts and calls: [`Context`] (a handle on another process),
//! [`Remote`] (a typed handle on a registered function), [`AsyncCall`],
//! [`CallChain`], and the child's call dispatcher.

mod blob;
mod call;
mod chain;
pub(crate) mod dispatcher;
mod handle;
pub(crate) mod registry;

pub use blob::Blob;
pub(crate) use call::decode_reply;
pub use call::{AsyncCall, CallDecoder, Remote};
pub use chain::CallChain;
pub use dispatcher::ExternalContext;
pub use handle::Context;
