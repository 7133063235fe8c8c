//! Connection methods: each builds a command and hands it to [`spawn`],
//! which starts it, answers its prompts, runs the bootstrap over its stdio
//! and registers the new context with the router. With `via`, the method
//! runs inside another context instead ([`connect_via`]).

mod doas;
mod local;
pub(crate) mod prompt;
pub(crate) mod spawn;
mod ssh;
mod su;
mod sudo;

use serde::{Deserialize, Serialize};

pub use doas::DoasOptions;
pub use local::{Bootstrap, LocalOptions};
pub use ssh::{CheckHostKeys, SshOptions};
pub use su::SuOptions;
pub use sudo::SudoOptions;

use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// A connection request that can travel to a `via` context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Method {
    Local(LocalOptions),
    Ssh(SshOptions),
    Sudo(SudoOptions),
    Su(SuOptions),
    Doas(DoasOptions),
}

/// Have `via` run the connection; the new context's id is routed back to
/// us before the call returns (ADD_ROUTE travels ahead of the reply).
pub(crate) fn connect_via(router: &Router, via: &Context, method: Method) -> Result<Context> {
    let (id, name) = via.call(connect_here::remote, (method,))?;
    Ok(Context::new(router, id, Some(&name)))
}

/// Runs in the `via` context: make the connection from there.
#[crate::remote]
fn connect_here(
    router: &Router,
    method: Method,
) -> std::result::Result<(u32, String), crate::Error> {
    let child = match method {
        Method::Local(o) => router.local(o),
        Method::Ssh(o) => router.ssh(o),
        Method::Sudo(o) => router.sudo(o),
        Method::Su(o) => router.su(o),
        Method::Doas(o) => router.doas(o),
    }?;
    Ok((child.context_id(), child.name().to_string()))
}
