//! `kubectl`: a context in a container of a Kubernetes pod.
//!
//! Program: `kubectl` (`kubectl_path`). Argv: `kubectl [--kubeconfig f]
//! [--context c] [-n namespace] <kubectl_args…> exec -i <pod> [-c
//! container] -- /bin/sh -c '<first stage>'`. stdio is a socketpair (no
//! `-t`: a terminal would mangle the binary stream). A pod name starting
//! with `-` is refused, so it cannot be read as an option.
//!
//! Prompts: none. Errors: `StreamError::Bootstrap` with kubectl's words
//! and a kind: `ContainerNotFound` (`pods "x" not found`),
//! `ContainerNotRunning` (a completed pod), `EngineUnavailable` (the API
//! server cannot be reached), `NoShell`; `ProgramNotFound` without
//! kubectl. Tested against a double that records its argv and runs the
//! command (these machines have no cluster).

use serde::{Deserialize, Serialize};

use super::engine::EngineErrors;
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::kubectl`] (Mitogen's `kubectl()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::KubectlOptions::new("web-0")
///     .namespace("shop")
///     .container("app");
/// assert_eq!(opts.pod, "web-0");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubectlOptions {
    /// The pod.
    pub pod: String,
    /// The container in the pod (kubectl's default when `None`).
    pub container: Option<String>,
    /// The namespace (`-n`).
    pub namespace: Option<String>,
    /// The kubeconfig context (`--context`).
    pub context: Option<String>,
    /// The kubeconfig file (`--kubeconfig`).
    pub kubeconfig: Option<String>,
    /// More arguments for kubectl, placed before `exec`.
    pub kubectl_args: Vec<String>,
    /// The kubectl program (default `kubectl`).
    pub kubectl_path: String,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl KubectlOptions {
    /// Options for `pod` with every default.
    pub fn new(pod: impl Into<String>) -> KubectlOptions {
        KubectlOptions {
            pod: pod.into(),
            container: None,
            namespace: None,
            context: None,
            kubeconfig: None,
            kubectl_args: Vec::new(),
            kubectl_path: "kubectl".into(),
            common: CommonOptions::default(),
        }
    }

    /// The container in the pod (`-c`).
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// The namespace (`-n`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The kubeconfig context (`--context`).
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The kubeconfig file (`--kubeconfig`).
    pub fn kubeconfig(mut self, path: impl Into<String>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// More arguments for kubectl, placed before `exec`.
    pub fn kubectl_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.kubectl_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The kubectl program to run (default `kubectl`).
    pub fn kubectl_path(mut self, path: impl Into<String>) -> Self {
        self.kubectl_path = path.into();
        self
    }

    common_builders!();

    /// The argv before the first stage.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![self.kubectl_path.clone()];
        if let Some(k) = &self.kubeconfig {
            a.push(format!("--kubeconfig={k}"));
        }
        if let Some(c) = &self.context {
            a.push(format!("--context={c}"));
        }
        if let Some(n) = &self.namespace {
            a.push(format!("--namespace={n}"));
        }
        a.extend(self.kubectl_args.iter().cloned());
        a.extend(["exec".into(), "-i".into(), self.pod.clone()]);
        if let Some(c) = &self.container {
            a.push(format!("--container={c}"));
        }
        a.extend(["--".into(), "/bin/sh".into(), "-c".into()]);
        a
    }
}

impl Method for KubectlOptions {
    const NAME: &'static str = "kubectl";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.pod.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        Ok(super::engine::check_name(Self::NAME, "pod", &self.pod)?)
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        Ok(Launch::shell(self.argv(), FirstStageArg::Script).prompts(EngineErrors))
    }
}

impl Router {
    /// Start a context in a Kubernetes pod through `kubectl exec`
    /// (Mitogen's `Router.kubectl`).
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with kubectl's words and a
    /// [`kind`](crate::StreamError::kind): `ContainerNotFound`,
    /// `ContainerNotRunning`, `EngineUnavailable`, `NoShell`.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let pod = router
    ///     .kubectl(mitogen::KubectlOptions::new("web-0").namespace("shop"))
    ///     .unwrap();
    /// # }).unwrap();
    /// ```
    pub fn kubectl(&self, opts: KubectlOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_puts_the_pod_after_exec_and_refuses_option_names() {
        let o = KubectlOptions::new("web-0")
            .namespace("shop")
            .container("app")
            .kubectl_args(["--request-timeout=5s"]);
        let a = o.argv().join(" ");
        assert_eq!(
            a,
            "kubectl --namespace=shop --request-timeout=5s exec -i web-0 --container=app -- /bin/sh -c"
        );
        let mut bad = KubectlOptions::new("--kubeconfig=/tmp/evil");
        let e = bad.prepare().unwrap_err().to_string();
        assert!(e.contains("starts with '-'"), "{e}");
    }
}
