//! `jail`: a context in a FreeBSD jail through `jexec`.
//!
//! Program: `jexec` (`jexec_path`, default `/usr/sbin/jexec`). Argv:
//! `jexec [-U <user>] <jail> /bin/sh -c '<first stage>'`. stdio is a
//! socketpair. A jail or user name starting with `-` is refused.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` with jexec's words and
//! a kind (`ContainerNotFound` for `jail "x" not found`, `UnknownUser`).
//! Tested against a double that records its argv and runs the command
//! (these machines run Linux).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::jail`] (Mitogen's `jail()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::JailOptions::new("www").username("deploy");
/// assert_eq!(opts.jexec_path, "/usr/sbin/jexec");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailOptions {
    /// The jail's name or id.
    pub container: String,
    /// Run as this user of the jail (`-U`); root when `None`.
    pub username: Option<String>,
    /// The jexec program (default `/usr/sbin/jexec`).
    pub jexec_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl JailOptions {
    /// Options for `container` with every default.
    pub fn new(container: impl Into<String>) -> JailOptions {
        JailOptions {
            container: container.into(),
            username: None,
            jexec_path: "/usr/sbin/jexec".into(),
            common: CommonOptions::default(),
        }
    }

    /// Run as this user of the jail (`-U`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The jexec program to run.
    pub fn jexec_path(mut self, path: impl Into<String>) -> Self {
        self.jexec_path = path.into();
        self
    }

    common_builders!();

    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![self.jexec_path.clone()];
        if let Some(u) = &self.username {
            a.extend(["-U".into(), u.clone()]);
        }
        a.extend([self.container.clone(), "/bin/sh".into(), "-c".into()]);
        a
    }
}

impl Method for JailOptions {
    const NAME: &'static str = "jail";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        check_name(Self::NAME, "jail", &self.container)?;
        if let Some(u) = &self.username {
            check_name(Self::NAME, "user", u)?;
        }
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(Launch::shell(self.argv(), FirstStageArg::Script).prompts(EngineErrors))
    }
}

impl Router {
    /// Start a context in a FreeBSD jail through `jexec` (Mitogen's
    /// `Router.jail`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with jexec's words and a
    /// [`kind`](crate::StreamError::kind).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let www = router.jail(mitogen::JailOptions::new("www")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn jail(&self, opts: JailOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
