//! `podman`: a context in a running podman container.
//!
//! Program: `podman` (`podman_path`). Argv: `podman exec --interactive
//! [--user=<u>] -- <container> /bin/sh -c '<first stage>'`. stdio is a
//! socketpair (no `--tty`). The container follows `--`, so a name cannot
//! be read as an option.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` naming the context
//! (`podman.<container>`) with podman's words and a kind
//! ([`EngineErrors`](super::engine::EngineErrors)): `ContainerNotFound` ("no container with name or
//! ID"), `ContainerNotRunning` ("can only create exec sessions on running
//! containers"),
//! `EngineUnavailable` ("Cannot connect to Podman"), `UnknownUser`
//! ("unable to find user"), `NoShell`; `ProgramNotFound` without podman;
//! `InvalidOptions` for an empty name or one starting with `-`.

use serde::{Deserialize, Serialize};

use super::engine::check_name;
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::Launch;
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::podman`] (Mitogen's `podman()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::PodmanOptions::container("web").username("app");
/// assert_eq!(opts.container, "web");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodmanOptions {
    /// The running container (name or id).
    pub container: String,
    /// The user inside the container (`--user`); the image's default when
    /// `None`.
    pub username: Option<String>,
    /// The podman program (default `podman`).
    pub podman_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for PodmanOptions {
    fn default() -> Self {
        PodmanOptions {
            container: String::new(),
            username: None,
            podman_path: "podman".into(),
            common: CommonOptions::default(),
        }
    }
}

impl PodmanOptions {
    /// Options for the running container `name`.
    pub fn container(name: impl Into<String>) -> PodmanOptions {
        PodmanOptions {
            container: name.into(),
            ..Default::default()
        }
    }

    /// The user inside the container (`--user`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The podman program to run (default `podman`).
    pub fn podman_path(mut self, path: impl Into<String>) -> Self {
        self.podman_path = path.into();
        self
    }

    common_builders!();

    /// The argv before the first stage.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![
            self.podman_path.clone(),
            "exec".into(),
            "--interactive".into(),
        ];
        a.extend(super::docker::exec_flags(
            self.username.as_deref(),
            None,
            &[],
        ));
        a.extend(["--".into(), self.container.clone()]);
        a.extend(["/bin/sh".into(), "-c".into()]);
        a
    }
}

impl Method for PodmanOptions {
    const NAME: &'static str = "podman";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        check_name("podman", "container", &self.container)?;
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(super::docker::engine_launch(self.argv()))
    }
}

impl Router {
    /// Start a context in a running podman container with `podman exec`
    /// (Mitogen's `Router.podman`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with podman's words and a
    /// [`kind`](crate::StreamError::kind): `ContainerNotFound`,
    /// `EngineUnavailable`, `UnknownUser`, `NoShell`; `InvalidOptions`
    /// before anything runs.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router.podman(mitogen::PodmanOptions::container("web")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn podman(&self, opts: PodmanOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_names() {
        let o = PodmanOptions::container("web").username("app");
        assert_eq!(
            o.argv().join(" "),
            "podman exec --interactive --user=app -- web /bin/sh -c"
        );
        let mut bad = PodmanOptions::container("-it");
        assert!(bad
            .prepare()
            .unwrap_err()
            .to_string()
            .contains("starts with '-'"));
        let mut empty = PodmanOptions::default();
        assert!(empty.prepare().unwrap_err().to_string().contains("empty"));
    }
}
