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
use crate::error::{
    ConnectFailure, Error, HostKeyError, PasswordError, Result, StreamError, TimeoutError,
};
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
/// Password, host key and timeout failures keep their type across the hop.
/// The name `via` reports is only a claim: the one the router learned with
/// the route wins, and the claim is never recorded (no renaming of other
/// contexts through a forged answer).
pub(crate) fn connect_via(router: &Router, via: &Context, method: Method) -> Result<Context> {
    match via.call(connect_here::remote, (method,))? {
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
        Connected::Failed(Some(ConnectFailure::VersionSkew), detail) => {
            Err(StreamError::VersionSkew {
                name: via.name().to_string(),
                detail,
            }
            .into())
        }
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

impl Error {
    /// Why a connection failed, whatever the error's type: the
    /// [`StreamError::kind`] of a stream error, [`ConnectFailure::TimedOut`]
    /// for a timeout, [`ConnectFailure::PermissionDenied`] for a password
    /// error, [`ConnectFailure::HostKey`] for a host key error; `None` for
    /// errors a connection does not return.
    ///
    /// # Examples
    /// ```
    /// use mitogen::{ConnectFailure, SshOptions};
    /// mitogen::Router::with(|router| {
    ///     let mut opts = SshOptions::new("web1");
    ///     opts.ssh_path = "/nonexistent/ssh".into();
    ///     let e = router.ssh(opts).unwrap_err();
    ///     assert_eq!(e.connect_failure(), Some(ConnectFailure::ProgramNotFound));
    /// })
    /// .unwrap();
    /// ```
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        match self {
            Error::Stream(e) => e.kind(),
            Error::Timeout(_) => Some(ConnectFailure::TimedOut),
            Error::Password(_) => Some(ConnectFailure::PermissionDenied),
            Error::HostKey(_) => Some(ConnectFailure::HostKey),
            _ => None,
        }
    }
}

/// Outcome of a connection made in a `via` context, with the error kinds
/// callers match on kept apart.
#[derive(Debug, Serialize, Deserialize)]
enum Connected {
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
    /// Anything else: its kind and text.
    Failed(Option<ConnectFailure>, String),
}

/// Runs in the `via` context: make the connection from there.
#[crate::remote]
fn connect_here(router: &Router, method: Method) -> Connected {
    let made = match method {
        Method::Local(o) => router.local(o),
        Method::Ssh(o) => router.ssh(o),
        Method::Sudo(o) => router.sudo(o),
        Method::Su(o) => router.su(o),
        Method::Doas(o) => router.doas(o),
    };
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
        Err(Error::Stream(e)) => Connected::Failed(e.kind(), e.to_string()),
        Err(e) => Connected::Failed(None, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(reason: &str) -> Option<ConnectFailure> {
        StreamError::Bootstrap {
            name: "n".into(),
            reason: reason.into(),
            output: "connection refused".into(),
        }
        .kind()
    }

    #[test]
    fn a_kind_written_at_the_start_of_a_reason_reads_back() {
        let kinds = [
            ConnectFailure::Refused,
            ConnectFailure::UnknownHost,
            ConnectFailure::TimedOut,
            ConnectFailure::PermissionDenied,
            ConnectFailure::ProgramNotFound,
            ConnectFailure::Exited { status: 255 },
            ConnectFailure::Killed { signal: 9 },
        ];
        for k in kinds {
            assert_eq!(kind_of(&k.to_string()), Some(k), "{k}");
            assert_eq!(kind_of(&format!("{k} (the program exited)")), Some(k));
            assert_eq!(kind_of(&format!("{k}: via a relay")), Some(k));
        }
        // Only at the start, as a whole phrase; never from the output.
        for other in [
            "no candidate directory",
            "the connection closed before the child started",
            "connection refusedx",
            "exited with status x",
            "the target said: connection refused",
        ] {
            assert_eq!(
                kind_of(other),
                Some(ConnectFailure::BootstrapFailed),
                "{other}"
            );
        }
        assert_eq!(StreamError::NoRoute(3).kind(), None);
    }
}
