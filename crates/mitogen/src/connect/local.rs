//! `local`: a child process of this program on this machine.
//!
//! Runs this program's own executable, either directly (argv[0] set to
//! `mitogen:<name>`) or, with [`Bootstrap::Shell`], through `/bin/sh -c
//! '<first stage>'` exactly as every remote method does: the binary is
//! copied into the content-addressed cache and run from there. No prompts
//! are answered. Errors: `StreamError::Spawn` when the program cannot
//! start, `StreamError::Bootstrap` with its output when it dies early (kind
//! `Exited` or `Killed`), `TimeoutError` after `connect_timeout`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spawn::{self, FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// How a local child is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Bootstrap {
    /// Exec this program's executable directly (fast path).
    #[default]
    Exec,
    /// Go through `sh -c '<first stage>'` and the binary cache, like a remote method.
    Shell,
}

/// Options of [`Router::local`] (Mitogen's `local()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::LocalOptions {
///     remote_name: Some("worker".into()),
///     ..Default::default()
/// };
/// assert_eq!(opts.connect_timeout, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalOptions {
    /// Name of the context; the process shows as `mitogen:<name>`.
    /// Defaults to `local.<pid>`. Must not contain `/`.
    pub remote_name: Option<String>,
    /// How long the child may take to start (default 30 s).
    pub connect_timeout: Duration,
    /// Write debug logs in the child (see [`Router::enable_debug`]);
    /// inherited from the router when it has debug enabled.
    pub debug: bool,
    /// Direct exec or the shell first stage.
    pub bootstrap: Bootstrap,
    /// Cache directory tried first by the shell first stage.
    pub cache_dir: Option<PathBuf>,
    /// Create the child through this context instead of here (Mitogen's
    /// `via=`): it becomes the new context's parent.
    #[serde(skip)]
    pub via: Option<Context>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            remote_name: None,
            connect_timeout: Duration::from_secs(30),
            debug: false,
            bootstrap: Bootstrap::Exec,
            cache_dir: None,
            via: None,
        }
    }
}

impl Router {
    /// Start a child context on this machine running this same program
    /// (Mitogen's `Router.local`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) when it cannot start,
    /// [`Error::Timeout`](crate::Error::Timeout) after `connect_timeout`.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// child.shutdown(true).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn local(&self, mut opts: LocalOptions) -> Result<Context> {
        if let Some(via) = opts.via.take() {
            return super::connect_via(self, &via, super::Method::Local(opts));
        }
        if let Some(name) = &opts.remote_name {
            if name.contains('/') {
                return Err(crate::error::StreamError::InvalidOptions(format!(
                    "remote_name {name:?} must not contain '/'"
                ))
                .into());
            }
        }
        let launch = match opts.bootstrap {
            Bootstrap::Exec => Launch::exec_self(),
            Bootstrap::Shell => Ok(Launch::shell(
                vec!["/bin/sh".into(), "-c".into()],
                FirstStageArg::Script,
                opts.cache_dir.clone(),
            )),
        };
        spawn::connect(self, spawn::Common::new("local", &opts, None), launch?)
    }
}
