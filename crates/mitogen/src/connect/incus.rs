//! `incus`: a context in an Incus instance through `incus exec`.
//!
//! Program: `incus` (`incus_path`). Argv: `incus [--project=<p>] exec
//! [<remote>:]<container> --mode=non-interactive [--user=<uid>]
//! [--cwd=<dir>] -- /bin/sh -c '<first stage>'`. stdio is a socketpair:
//! with a terminal on any of its stdio, incus would put a proxy terminal
//! between, which mangles the binary stream.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` with incus's words
//! and a kind: `ContainerNotFound` ("Instance not found"),
//! `ContainerNotRunning` ("Instance is not running"), `EngineUnavailable`
//! (the daemon cannot be reached). Tested against a double that records
//! its argv and runs the command (these machines cannot run Incus).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::incus`] (Mitogen's `incus()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::IncusOptions::new("web").remote("cluster").project("shop");
/// assert_eq!(opts.incus_path, "incus");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncusOptions {
    /// The instance's name.
    pub container: String,
    /// The remote the instance is on (`<remote>:<container>`); the
    /// default remote when `None`.
    pub remote: Option<String>,
    /// The project (`--project`).
    pub project: Option<String>,
    /// Run as this numeric user id in the instance (`--user`).
    pub uid: Option<u32>,
    /// Working directory in the instance (`--cwd`).
    pub workdir: Option<String>,
    /// The incus program (default `incus`).
    pub incus_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl IncusOptions {
    /// Options for `container` with every default.
    pub fn new(container: impl Into<String>) -> IncusOptions {
        IncusOptions {
            container: container.into(),
            remote: None,
            project: None,
            uid: None,
            workdir: None,
            incus_path: "incus".into(),
            common: CommonOptions::default(),
        }
    }

    /// The remote the instance is on.
    pub fn remote(mut self, remote: impl Into<String>) -> Self {
        self.remote = Some(remote.into());
        self
    }

    /// The project (`--project`).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Run as this numeric user id (`--user`).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Working directory in the instance (`--cwd`).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The incus program to run (default `incus`).
    pub fn incus_path(mut self, path: impl Into<String>) -> Self {
        self.incus_path = path.into();
        self
    }

    common_builders!();

    pub(crate) fn argv(&self) -> Vec<String> {
        super::lxd::exec_argv(
            &self.incus_path,
            self.project.as_deref(),
            self.remote.as_deref(),
            &self.container,
            self.uid,
            self.workdir.as_deref(),
        )
    }
}

impl Method for IncusOptions {
    const NAME: &'static str = "incus";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        check_name(Self::NAME, "container", &self.container)?;
        Ok(check_name(
            Self::NAME,
            "remote",
            self.remote.as_deref().unwrap_or("local"),
        )?)
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(Launch::shell(self.argv(), FirstStageArg::Script).prompts(EngineErrors))
    }
}

impl Router {
    /// Start a context in an Incus instance through `incus exec`
    /// (Mitogen's `Router.incus`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with incus's words and a
    /// [`kind`](crate::StreamError::kind).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router.incus(mitogen::IncusOptions::new("web")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn incus(&self, opts: IncusOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
