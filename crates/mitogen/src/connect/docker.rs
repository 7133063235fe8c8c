//! `docker`: a context in a Docker container, running or made for it.
//!
//! Program: `docker` (`docker_path`). Argv, in an existing container:
//! `docker exec --interactive [--user=<u>] [--workdir=<dir>]
//! [--env=<K=V>]… -- <container> /bin/sh -c '<first stage>'`; from an
//! image: `docker run --interactive --rm [same options] -- <image> /bin/sh
//! -c '<first stage>'`, so the container lives exactly as long as the
//! context (its first process is the context) and the engine removes it
//! afterwards. stdio is a socketpair (no `--tty`: a terminal would mangle
//! the binary stream). Every option is passed as `--flag=value` and the
//! container follows `--`, so no value can be read as another option.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` naming the context
//! (`docker.<container>`) with docker's words and a kind
//! ([`EngineErrors`]): `ContainerNotFound` ("No such container"),
//! `ContainerNotRunning` ("is not running"), `EngineUnavailable` ("Cannot
//! connect to the Docker daemon", and "permission denied while trying to
//! connect to the Docker daemon socket"), `UnknownUser` ("unable to find
//! user"), `NoShell` (no `/bin/sh` in the image); `ProgramNotFound`
//! without docker; `InvalidOptions` for neither or both of `container` and
//! `image`, a name starting with `-`, or an environment name that is empty
//! or holds `=`. docker prints the last two on stdout, where the first
//! stage's markers arrive ([`Launch::program_output_on_stdout`]).

use serde::{Deserialize, Serialize};

use super::engine::{check_name, EngineErrors};
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::router::Router;

/// Options of [`Router::docker`] (Mitogen's `docker()` arguments, plus
/// `workdir` and `env`).
///
/// # Examples
/// ```
/// let opts = mitogen::DockerOptions::container("web")
///     .username("app")
///     .workdir("/srv")
///     .env("LANG", "C.UTF-8");
/// assert_eq!(opts.container.as_deref(), Some("web"));
///
/// let throwaway = mitogen::DockerOptions::image("debian:12");
/// assert_eq!(throwaway.image.as_deref(), Some("debian:12"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerOptions {
    /// A running container (name or id) to `docker exec` into.
    pub container: Option<String>,
    /// An image to `docker run --rm`: a new container for this context,
    /// removed when the context ends. Exactly one of `container` and
    /// `image` is set.
    pub image: Option<String>,
    /// The user inside the container (`--user`: a name, `uid` or
    /// `uid:gid`); the image's default when `None`.
    pub username: Option<String>,
    /// The working directory inside the container (`--workdir`).
    pub workdir: Option<String>,
    /// Environment variables set inside the container (`--env`), in order.
    pub env: Vec<(String, String)>,
    /// The docker program (default `docker`).
    pub docker_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            container: None,
            image: None,
            username: None,
            workdir: None,
            env: Vec::new(),
            docker_path: "docker".into(),
            common: CommonOptions::default(),
        }
    }
}

impl DockerOptions {
    /// Options for the running container `name` (or id), every other
    /// option at its default.
    pub fn container(name: impl Into<String>) -> DockerOptions {
        DockerOptions {
            container: Some(name.into()),
            ..Default::default()
        }
    }

    /// Options for a new container of `image`, removed with the context.
    pub fn image(image: impl Into<String>) -> DockerOptions {
        DockerOptions {
            image: Some(image.into()),
            ..Default::default()
        }
    }

    /// The user inside the container (`--user`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// The working directory inside the container (`--workdir`).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Set an environment variable inside the container (`--env`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The docker program to run (default `docker`).
    pub fn docker_path(mut self, path: impl Into<String>) -> Self {
        self.docker_path = path.into();
        self
    }

    common_builders!();

    /// The argv before the first stage.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![self.docker_path.clone()];
        match (&self.container, &self.image) {
            (Some(_), _) => a.extend(["exec".into(), "--interactive".into()]),
            (None, _) => a.extend(["run".into(), "--interactive".into(), "--rm".into()]),
        }
        a.extend(exec_flags(
            self.username.as_deref(),
            self.workdir.as_deref(),
            &self.env,
        ));
        a.push("--".into());
        a.extend(self.container.iter().chain(&self.image).take(1).cloned());
        a.extend(["/bin/sh".into(), "-c".into()]);
        a
    }
}

/// `--user=`, `--workdir=` and `--env=` flags, as docker and podman spell
/// them.
pub(super) fn exec_flags(
    user: Option<&str>,
    workdir: Option<&str>,
    env: &[(String, String)],
) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(u) = user {
        a.push(format!("--user={u}"));
    }
    if let Some(w) = workdir {
        a.push(format!("--workdir={w}"));
    }
    a.extend(env.iter().map(|(k, v)| format!("--env={k}={v}")));
    a
}

/// The launch of every container engine method: `argv` then the first
/// stage as one argument, stdio on a socketpair, the engine's words read
/// into kinds, on stderr and on stdout before the first stage starts.
pub(super) fn engine_launch(argv: Vec<String>) -> Launch {
    Launch::shell(argv, FirstStageArg::Script)
        .prompts(EngineErrors)
        .program_output_on_stdout()
}

/// Refuse environment names docker would misread (empty, or with `=`).
pub(super) fn check_env(method: &str, env: &[(String, String)]) -> Result<(), StreamError> {
    match env.iter().find(|(k, _)| k.is_empty() || k.contains('=')) {
        Some((k, _)) => Err(StreamError::InvalidOptions(format!(
            "{method}: environment variable name {k:?} is empty or holds '='"
        ))),
        None => Ok(()),
    }
}

impl Method for DockerOptions {
    const NAME: &'static str = "docker";

    common_field!();

    fn target(&self) -> Option<String> {
        self.container.clone().or_else(|| self.image.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        match (&self.container, &self.image) {
            (Some(c), None) => check_name("docker", "container", c)?,
            (None, Some(i)) => check_name("docker", "image", i)?,
            (Some(_), Some(_)) => {
                return Err(StreamError::InvalidOptions(
                    "docker: both container and image are set; give one".into(),
                )
                .into())
            }
            (None, None) => {
                return Err(StreamError::InvalidOptions(
                    "docker: neither container nor image is set".into(),
                )
                .into())
            }
        }
        check_env("docker", &self.env)?;
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(engine_launch(self.argv()))
    }
}

impl Router {
    /// Start a context in a Docker container with `docker exec`, or in a
    /// new container of an image with `docker run --rm` (Mitogen's
    /// `Router.docker`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with docker's words and a
    /// [`kind`](crate::StreamError::kind): `ContainerNotFound`,
    /// `ContainerNotRunning`, `EngineUnavailable`, `UnknownUser`,
    /// `NoShell`; `InvalidOptions` before anything runs.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router
    ///     .docker(mitogen::DockerOptions::container("web").username("app"))
    ///     .unwrap();
    /// # }).unwrap();
    /// ```
    pub fn docker(&self, opts: DockerOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_for_a_container_and_an_image() {
        let o = DockerOptions::container("web")
            .username("app")
            .workdir("/srv")
            .env("A", "b c=d");
        assert_eq!(
            o.argv().join(" "),
            "docker exec --interactive --user=app --workdir=/srv --env=A=b c=d -- web /bin/sh -c"
        );
        let o = DockerOptions::image("debian:12").docker_path("/opt/docker");
        assert_eq!(
            o.argv().join(" "),
            "/opt/docker run --interactive --rm -- debian:12 /bin/sh -c"
        );
    }

    #[test]
    fn prepare_refuses_what_docker_would_misread() {
        let bad = |mut o: DockerOptions| o.prepare().unwrap_err().to_string();
        assert!(bad(DockerOptions::default()).contains("neither"));
        let mut both = DockerOptions::container("a");
        both.image = Some("b".into());
        assert!(bad(both).contains("both"));
        assert!(bad(DockerOptions::container("--privileged")).contains("starts with '-'"));
        assert!(bad(DockerOptions::image("-v/:/host")).contains("starts with '-'"));
        assert!(bad(DockerOptions::container("a").env("X=Y", "z")).contains("\"X=Y\""));
        assert!(bad(DockerOptions::container("a").env("", "z")).contains("empty"));
        assert!(DockerOptions::container("a").prepare().is_ok());
    }

    #[test]
    fn options_travel_as_data() {
        let o = DockerOptions::container("web").env("K", "V");
        let back: DockerOptions =
            postcard::from_bytes(&postcard::to_allocvec(&o).unwrap()).unwrap();
        assert_eq!(back.argv(), o.argv());
    }
}
