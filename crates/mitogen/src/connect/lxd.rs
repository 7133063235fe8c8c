//! `lxd`: a context in an LXD instance through `lxc exec`.
//!
//! Program: `lxc` (`lxc_path`). Argv: `lxc [--project=<p>] exec
//! [<remote>:]<container> --mode=non-interactive [--user=<uid>]
//! [--cwd=<dir>] -- /bin/sh -c '<first stage>'`. stdio is a socketpair:
//! with a terminal on any of its stdio, lxc would put a proxy terminal
//! between, which mangles the binary stream.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` with lxc's words
//! and a kind: `ContainerNotFound` ("Instance not found"),
//! `ContainerNotRunning` ("Instance is not running"), `EngineUnavailable`
//! (the daemon cannot be reached). Tested against a double that records
//! its argv and runs the command (these machines cannot run LXD).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::lxd`] (Mitogen's `lxd()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::LxdOptions::new("web").remote("cluster").project("shop");
/// assert_eq!(opts.lxc_path, "lxc");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LxdOptions {
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
    /// The lxc program (default `lxc`).
    pub lxc_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl LxdOptions {
    /// Options for `container` with every default.
    pub fn new(container: impl Into<String>) -> LxdOptions {
        LxdOptions {
            container: container.into(),
            remote: None,
            project: None,
            uid: None,
            workdir: None,
            lxc_path: "lxc".into(),
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

    /// The lxc program to run (default `lxc`).
    pub fn lxc_path(mut self, path: impl Into<String>) -> Self {
        self.lxc_path = path.into();
        self
    }

    common_builders!();

    pub(crate) fn argv(&self) -> Vec<String> {
        exec_argv(
            &self.lxc_path,
            self.project.as_deref(),
            self.remote.as_deref(),
            &self.container,
            self.uid,
            self.workdir.as_deref(),
        )
    }
}

impl Method for LxdOptions {
    const NAME: &'static str = "lxd";

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
    /// Start a context in an LXD instance through `lxc exec`
    /// (Mitogen's `Router.lxd`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with lxc's words and a
    /// [`kind`](crate::StreamError::kind).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router.lxd(mitogen::LxdOptions::new("web")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn lxd(&self, opts: LxdOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

/// The argv of `lxc exec` and `incus exec` (the same command line).
pub(crate) fn exec_argv(
    program: &str,
    project: Option<&str>,
    remote: Option<&str>,
    container: &str,
    uid: Option<u32>,
    workdir: Option<&str>,
) -> Vec<String> {
    let mut a = vec![program.to_string()];
    if let Some(p) = project {
        a.push(format!("--project={p}"));
    }
    a.push("exec".into());
    a.push(match remote {
        Some(r) => format!("{r}:{container}"),
        None => container.to_string(),
    });
    a.push("--mode=non-interactive".into());
    if let Some(u) = uid {
        a.push(format!("--user={u}"));
    }
    if let Some(d) = workdir {
        a.push(format!("--cwd={d}"));
    }
    a.extend(["--".into(), "/bin/sh".into(), "-c".into()]);
    a
}
