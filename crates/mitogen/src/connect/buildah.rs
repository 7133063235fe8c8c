//! `buildah`: a context in a buildah working container (one made by
//! `buildah from`, the usual step of an image build).
//!
//! Program: `buildah` (`buildah_path`). Argv: `buildah run [--user=<u>]
//! -- <container> /bin/sh -c '<first stage>'`. stdio is a socketpair
//! (buildah gives the command no terminal unless asked). The container
//! follows `--`, so a name cannot be read as an option.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` naming the context
//! (`buildah.<container>`) with buildah's words and a kind
//! ([`EngineErrors`](super::engine::EngineErrors)): `ContainerNotFound` ("container not known"),
//! `UnknownUser` ("unknown user"), `NoShell`; `ProgramNotFound` without
//! buildah; `InvalidOptions` for an empty name or one starting with `-`.

use serde::{Deserialize, Serialize};

use super::engine::check_name;
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::Launch;
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::buildah`] (Mitogen's `buildah()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::BuildahOptions::container("debian-working-container").username("app");
/// assert_eq!(opts.container, "debian-working-container");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildahOptions {
    /// The working container (name or id).
    pub container: String,
    /// The user inside the container (`--user`); the image's default when
    /// `None`.
    pub username: Option<String>,
    /// The buildah program (default `buildah`).
    pub buildah_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for BuildahOptions {
    fn default() -> Self {
        BuildahOptions {
            container: String::new(),
            username: None,
            buildah_path: "buildah".into(),
            common: CommonOptions::default(),
        }
    }
}

impl BuildahOptions {
    /// Options for the working container `name`.
    pub fn container(name: impl Into<String>) -> BuildahOptions {
        BuildahOptions {
            container: name.into(),
            ..Default::default()
        }
    }

    /// The user inside the container (`--user`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The buildah program to run (default `buildah`).
    pub fn buildah_path(mut self, path: impl Into<String>) -> Self {
        self.buildah_path = path.into();
        self
    }

    common_builders!();

    /// The argv before the first stage.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![self.buildah_path.clone(), "run".into()];
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

impl Method for BuildahOptions {
    const NAME: &'static str = "buildah";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        check_name("buildah", "container", &self.container)?;
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(super::docker::engine_launch(self.argv()))
    }
}

impl Router {
    /// Start a context in a buildah working container with `buildah run`
    /// (Mitogen's `Router.buildah`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with buildah's words and a
    /// [`kind`](crate::StreamError::kind): `ContainerNotFound`,
    /// `UnknownUser`, `NoShell`; `InvalidOptions` before anything runs.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let build = router
    ///     .buildah(mitogen::BuildahOptions::container("debian-working-container"))
    ///     .unwrap();
    /// # }).unwrap();
    /// ```
    pub fn buildah(&self, opts: BuildahOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_names() {
        let o = BuildahOptions::container("w").username("app");
        assert_eq!(o.argv().join(" "), "buildah run --user=app -- w /bin/sh -c");
        let mut bad = BuildahOptions::container("--volume=/:/x");
        assert!(bad
            .prepare()
            .unwrap_err()
            .to_string()
            .contains("starts with '-'"));
    }
}
