//! `local`: a child process of this program on this machine.
//!
//! Runs this program's own executable, either directly (argv[0] set to
//! `mitogen:<name>`) or, with [`Bootstrap::Shell`], through `/bin/sh -c
//! '<first stage>'` exactly as every remote method does: the binary is
//! copied into the content-addressed cache and run from there. No prompts
//! are answered. Errors: `StreamError::Spawn` when the program cannot
//! start, `StreamError::Bootstrap` with its output when it dies early (kind
//! `Exited` or `Killed`), `TimeoutError` after `connect_timeout`.

use serde::{Deserialize, Serialize};

use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
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
/// use mitogen::{Bootstrap, LocalOptions};
/// let opts = LocalOptions::new().remote_name("worker").bootstrap(Bootstrap::Shell);
/// assert_eq!(opts.common.connect_timeout, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocalOptions {
    /// Direct exec or the shell first stage.
    pub bootstrap: Bootstrap,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl LocalOptions {
    /// Every default: direct exec, named `local.<pid>` (Mitogen's default).
    pub fn new() -> LocalOptions {
        LocalOptions::default()
    }

    /// Direct exec (default) or the shell first stage.
    pub fn bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    common_builders!();
}

impl Method for LocalOptions {
    const NAME: &'static str = "local";

    common_field!();

    fn launch(&self, _: &Router) -> Result<Launch> {
        match self.bootstrap {
            Bootstrap::Exec => Launch::exec_self(),
            Bootstrap::Shell => Ok(Launch::shell(["/bin/sh", "-c"], FirstStageArg::Script)),
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
    /// let child = router.local(mitogen::LocalOptions::new().remote_name("worker")).unwrap();
    /// child.shutdown(true).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn local(&self, opts: LocalOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
