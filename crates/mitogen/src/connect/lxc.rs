//! `lxc`: a context in an LXC container through `lxc-attach`.
//!
//! Program: `lxc-attach` (`lxc_attach_path`). Argv: `lxc-attach
//! --clear-env --set-var PATH=… --name <container> -- /bin/sh -c '<first
//! stage>'`. The environment is cleared (the container's own processes
//! see none of ours) and given a standard `PATH`. stdio is a socketpair:
//! with a terminal on any of its stdio, lxc-attach would put a proxy
//! terminal between, which mangles the binary stream.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` with lxc-attach's
//! words and a kind (`ContainerNotFound`, `ContainerNotRunning` for
//! "Failed to get init pid"); many LXC versions say little, so the text
//! also points at the host's logs. Tested against a double that records
//! its argv and runs the command (these machines cannot run LXC).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors, STANDARD_PATH};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::lxc`] (Mitogen's `lxc()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::LxcOptions::new("web");
/// assert_eq!(opts.lxc_attach_path, "lxc-attach");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LxcOptions {
    /// The container's name.
    pub container: String,
    /// The lxc-attach program (default `lxc-attach`).
    pub lxc_attach_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl LxcOptions {
    /// Options for `container` with every default.
    pub fn new(container: impl Into<String>) -> LxcOptions {
        LxcOptions {
            container: container.into(),
            lxc_attach_path: "lxc-attach".into(),
            common: CommonOptions::default(),
        }
    }

    /// The lxc-attach program to run (default `lxc-attach`).
    pub fn lxc_attach_path(mut self, path: impl Into<String>) -> Self {
        self.lxc_attach_path = path.into();
        self
    }

    common_builders!();

    pub(crate) fn argv(&self) -> Vec<String> {
        [
            self.lxc_attach_path.as_str(),
            "--clear-env",
            "--set-var",
            &format!("PATH={STANDARD_PATH}"),
            "--name",
            &self.container,
            "--",
            "/bin/sh",
            "-c",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Method for LxcOptions {
    const NAME: &'static str = "lxc";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        Ok(check_name(Self::NAME, "container", &self.container)?)
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(Launch::shell(self.argv(), FirstStageArg::Script).prompts(EngineErrors))
    }
}

impl Router {
    /// Start a context in an LXC container through `lxc-attach`
    /// (Mitogen's `Router.lxc`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with lxc-attach's words and
    /// a [`kind`](crate::StreamError::kind).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router.lxc(mitogen::LxcOptions::new("web")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn lxc(&self, opts: LxcOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
