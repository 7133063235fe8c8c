//! Connection methods: each builds a command and hands it to [`spawn`],
//! which starts it, runs the bootstrap over its stdio and registers the new
//! context with the router.

mod local;
pub(crate) mod prompt;
pub(crate) mod spawn;

pub use local::{Bootstrap, LocalOptions};
