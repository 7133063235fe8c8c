//! `via`: have another context make a connection, and check what it
//! answers.

use serde::{Deserialize, Serialize};

use super::MethodOptions;
use crate::context::Context;
use crate::error::{
    ConnectFailure, Error, HostKeyError, PasswordError, Result, StreamError, TimeoutError,
};
use crate::router::Router;

/// Have `via` run the connection; the new context's id is routed back to
/// us before the call returns (ADD_ROUTE travels ahead of the reply).
/// Password, host key and timeout failures keep their type across the hop.
/// The name `via` reports is only a claim: the one the router learned with
/// the route wins, and the claim is never recorded (no renaming of other
/// contexts through a forged answer).
pub(crate) fn connect_via(
    router: &Router,
    via: &Context,
    method: MethodOptions,
) -> Result<Context> {
    match via.call(super::method::connect_here::remote, (method,))? {
        Connected::Ok(id, name) => {
            let here = router.stream_to(via.context_id());
            let there = router.stream_to(id);
            let inside = matches!((&here, &there), (Some(a), Some(b)) if std::sync::Arc::ptr_eq(a, b))
                && id != via.context_id()
                && id != router.context_id()
                && !router.is_parent(id);
            if !inside {
                tracing::error!(
                    "refused the answer of {}: context {id} is not routed through it",
                    via.name()
                );
                return Err(StreamError::Bootstrap {
                    name: via.name().to_string(),
                    reason: format!("answered with context {id}, which is not routed through it"),
                    output: String::new(),
                }
                .into());
            }
            Ok(Context::claimed(router, id, &name))
        }
        Connected::Password(e) => Err(e.into()),
        Connected::HostKey(e) => Err(e.into()),
        Connected::Timeout(e) => Err(e.into()),
        Connected::Bootstrap {
            name,
            reason,
            output,
        } => Err(StreamError::Bootstrap {
            name: format!("{name} (via {})", via.name()),
            reason,
            output,
        }
        .into()),
        Connected::VersionSkew { name, detail } => Err(StreamError::VersionSkew {
            name: format!("{name} (via {})", via.name()),
            detail,
        }
        .into()),
        Connected::Failed(kind, text) => Err(StreamError::Bootstrap {
            name: via.name().to_string(),
            // The kind leads the reason, where `StreamError::kind` reads it.
            reason: match kind {
                Some(k)
                    if !matches!(
                        k,
                        ConnectFailure::BootstrapFailed | ConnectFailure::InvalidOptions
                    ) =>
                {
                    format!("{k}: {text}")
                }
                _ => text,
            },
            output: String::new(),
        }
        .into()),
    }
}

/// Outcome of a connection made in a `via` context, with the error kinds
/// callers match on kept apart.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Connected {
    Ok(u32, String),
    Password(PasswordError),
    HostKey(HostKeyError),
    Timeout(TimeoutError),
    /// A bootstrap failure, in parts so that its kind survives the hop.
    Bootstrap {
        name: String,
        reason: String,
        output: String,
    },
    /// Another build answered: in parts, so both builds stay named once.
    VersionSkew {
        name: String,
        detail: String,
    },
    /// Anything else: its kind and text.
    Failed(Option<ConnectFailure>, String),
}

impl Connected {
    /// What a `via` context answers for the connection it made.
    pub(crate) fn from_result(made: Result<Context>) -> Connected {
        match made {
            Ok(child) => Connected::Ok(child.context_id(), child.name().to_string()),
            Err(Error::Password(e)) => Connected::Password(e),
            Err(Error::HostKey(e)) => Connected::HostKey(e),
            Err(Error::Timeout(e)) => Connected::Timeout(e),
            Err(Error::Stream(StreamError::Bootstrap {
                name,
                reason,
                output,
            })) => Connected::Bootstrap {
                name,
                reason,
                output,
            },
            Err(Error::Stream(StreamError::VersionSkew { name, detail })) => {
                Connected::VersionSkew { name, detail }
            }
            Err(Error::Stream(e)) => Connected::Failed(e.kind(), e.to_string()),
            Err(e) => Connected::Failed(None, e.to_string()),
        }
    }
}
