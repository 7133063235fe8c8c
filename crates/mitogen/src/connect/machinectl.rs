//! `machinectl`: a context in a systemd-nspawn (or other
//! systemd-registered) machine.
//!
//! Program: `systemd-run` (`systemd_run_path`). Argv: `systemd-run
//! --machine=<machine> --pipe --wait --quiet --collect
//! --service-type=exec [--uid=<user>] -- /bin/sh -c '<first stage>'`.
//! Not `machinectl shell`: it always puts a terminal between, which would
//! mangle the binary stream; `systemd-run --pipe` hands over plain pipes.
//! stdio is a socketpair.
//!
//! Prompts: none (polkit may refuse a non-root caller: `PermissionDenied`).
//! Errors: `StreamError::Bootstrap` with systemd-run's words and a kind
//! (`ContainerNotFound` for "No machine", `EngineUnavailable` for "Failed
//! to connect to bus", `UnknownUser`). Tested against a double that
//! records its argv and runs the command (these machines do not run
//! systemd as init).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::machinectl`].
///
/// # Examples
/// ```
/// let opts = mitogen::MachinectlOptions::new("build-vm").username("deploy");
/// assert_eq!(opts.systemd_run_path, "systemd-run");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachinectlOptions {
    /// The machine's name (as `machinectl list` shows it).
    pub machine: String,
    /// Run as this user of the machine (`--uid`); root when `None`.
    pub username: Option<String>,
    /// The systemd-run program (default `systemd-run`).
    pub systemd_run_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl MachinectlOptions {
    /// Options for `machine` with every default.
    pub fn new(machine: impl Into<String>) -> MachinectlOptions {
        MachinectlOptions {
            machine: machine.into(),
            username: None,
            systemd_run_path: "systemd-run".into(),
            common: CommonOptions::default(),
        }
    }

    /// Run as this user of the machine (`--uid`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The systemd-run program to run.
    pub fn systemd_run_path(mut self, path: impl Into<String>) -> Self {
        self.systemd_run_path = path.into();
        self
    }

    common_builders!();

    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![
            self.systemd_run_path.clone(),
            format!("--machine={}", self.machine),
            "--pipe".into(),
            "--wait".into(),
            "--quiet".into(),
            "--collect".into(),
            "--service-type=exec".into(),
        ];
        if let Some(u) = &self.username {
            a.push(format!("--uid={u}"));
        }
        a.extend(["--".into(), "/bin/sh".into(), "-c".into()]);
        a
    }
}

impl Method for MachinectlOptions {
    const NAME: &'static str = "machinectl";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.machine.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        check_name(Self::NAME, "machine", &self.machine)?;
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
    /// Start a context in a systemd machine (a systemd-nspawn container,
    /// a VM registered with machined) through `systemd-run --machine`.
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with systemd-run's words and
    /// a [`kind`](crate::StreamError::kind).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let vm = router.machinectl(mitogen::MachinectlOptions::new("build-vm")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn machinectl(&self, opts: MachinectlOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
