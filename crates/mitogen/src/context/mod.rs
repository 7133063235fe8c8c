//! Contexts and calls: [`Context`] (a handle on another process),
//! [`Remote`] (a typed handle on a registered function), [`AsyncCall`],
//! [`CallChain`], and the child's call dispatcher.

mod call;
mod chain;
mod context;
pub(crate) mod dispatcher;
pub(crate) mod registry;

pub use call::{AsyncCall, Remote};
pub(crate) use call::decode_reply;
pub use chain::CallChain;
pub use context::Context;
pub use dispatcher::ExternalContext;
