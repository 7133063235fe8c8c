//! What container engines and jail tools print when they cannot start a
//! command in a container, read into [`ConnectFailure`] kinds. Shared by
//! every method that runs `<engine> exec <container> /bin/sh -c …`.

use super::prompt::{Password, Prompts};
use crate::error::{ConnectFailure, Error, StreamError};

/// The `PATH` given to commands run with a cleared environment.
pub(crate) const STANDARD_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Reads an engine's last words; no prompts are answered.
pub(crate) struct EngineErrors;

/// Phrases (lowercase) and what they mean, most specific first: a
/// message saying the user is unknown may also say "not found".
const WORDS: &[(&str, ConnectFailure)] = &[
    // docker/podman: "unable to find user app: no matching entries in passwd file";
    // kubectl/lxc: "no such user"; systemd-run: "Failed to resolve user".
    ("unable to find user", ConnectFailure::UnknownUser),
    ("no such user", ConnectFailure::UnknownUser),
    ("failed to resolve user", ConnectFailure::UnknownUser),
    ("user not found", ConnectFailure::UnknownUser),
    ("unknown user", ConnectFailure::UnknownUser),
    // docker: `exec: "/bin/sh": stat /bin/sh: no such file or directory`;
    // kubectl: `exec: "/bin/sh": ... executable file not found`.
    ("\"/bin/sh\": stat /bin/sh", ConnectFailure::NoShell),
    ("/bin/sh: no such file", ConnectFailure::NoShell),
    ("executable file not found", ConnectFailure::NoShell),
    // docker: "permission denied while trying to connect to the Docker
    // daemon socket": the engine runs, this user may not use it.
    (
        "permission denied while trying to connect",
        ConnectFailure::PermissionDenied,
    ),
    // docker: "Cannot connect to the Docker daemon at unix:///…. Is the
    // docker daemon running?"; kubectl: "The connection to the server
    // … was refused", "Unable to connect to the server".
    (
        "cannot connect to the docker daemon",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "is the docker daemon running",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "while trying to connect to the docker daemon",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "cannot connect to podman",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "unable to connect to podman",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "the connection to the server",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "unable to connect to the server",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "failed to connect to local lxd",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "failed to connect to local incus",
        ConnectFailure::EngineUnavailable,
    ),
    (
        "failed to connect to bus",
        ConnectFailure::EngineUnavailable,
    ),
    // docker: "container <id> is not running"; lxd/incus: "Instance is
    // not running"; kubectl: "cannot exec into a container in a completed pod".
    ("is not running", ConnectFailure::ContainerNotRunning),
    ("is paused", ConnectFailure::ContainerNotRunning),
    (
        "cannot exec into a container in a completed pod",
        ConnectFailure::ContainerNotRunning,
    ),
    (
        "failed to get init pid",
        ConnectFailure::ContainerNotRunning,
    ),
    // podman: "can only create exec sessions on running containers".
    (
        "exec sessions on running containers",
        ConnectFailure::ContainerNotRunning,
    ),
    // docker: "No such container: x"; podman: "no container with name or
    // ID"; kubectl: `pods "x" not found`; lxd/incus: "Instance not found";
    // jexec: `jail "x" not found`; systemd: "No machine 'x' known".
    ("no such container", ConnectFailure::ContainerNotFound),
    (
        "no container with name or id",
        ConnectFailure::ContainerNotFound,
    ),
    ("instance not found", ConnectFailure::ContainerNotFound),
    ("\" not found", ConnectFailure::ContainerNotFound),
    ("no machine", ConnectFailure::ContainerNotFound),
    // buildah: `reading build container "x": container not known`.
    ("container not known", ConnectFailure::ContainerNotFound),
    ("does not exist", ConnectFailure::ContainerNotFound),
    // docker inspect: "No such object: x"; lxc-info: "x doesn't exist".
    ("no such object", ConnectFailure::ContainerNotFound),
    ("doesn't exist", ConnectFailure::ContainerNotFound),
    ("permission denied", ConnectFailure::PermissionDenied),
    // Any other client that cannot reach its daemon.
    ("unable to connect", ConnectFailure::EngineUnavailable),
    ("connection refused", ConnectFailure::EngineUnavailable),
];

impl Prompts for EngineErrors {
    fn on_output(&mut self, _: &str) -> Result<Option<Password>, Error> {
        Ok(None)
    }

    fn on_exit(&self, _: &str) -> Option<Error> {
        None
    }

    fn failure(&self, output: &str) -> Option<ConnectFailure> {
        let lower = output.to_lowercase();
        WORDS
            .iter()
            .find(|(w, _)| lower.contains(w))
            .map(|(_, kind)| *kind)
    }
}

/// Refuse an empty container (pod, jail, machine) name, or one starting
/// with `-` that the engine could read as an option.
pub(crate) fn check_name(method: &str, what: &str, name: &str) -> Result<(), StreamError> {
    if name.is_empty() {
        return Err(StreamError::InvalidOptions(format!(
            "{method}: empty {what} name"
        )));
    }
    if name.starts_with('-') {
        return Err(StreamError::InvalidOptions(format!(
            "{method}: {what} name {name:?} starts with '-' and would be read as an option"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_words_become_kinds() {
        let cases = [
            ("Error response from daemon: No such container: web", ConnectFailure::ContainerNotFound),
            ("Error response from daemon: container 4f2a is not running", ConnectFailure::ContainerNotRunning),
            ("Cannot connect to the Docker daemon at unix:///nope.sock. Is the docker daemon running?", ConnectFailure::EngineUnavailable),
            ("permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock", ConnectFailure::PermissionDenied),
            ("Error: can only create exec sessions on running containers: container state improper", ConnectFailure::ContainerNotRunning),
            ("Error: reading build container \"w\": container not known", ConnectFailure::ContainerNotFound),
            ("Error: determining run uid: user: unknown user error looking up user \"ghost\"", ConnectFailure::UnknownUser),
            ("unable to find user app: no matching entries in passwd file", ConnectFailure::UnknownUser),
            ("OCI runtime exec failed: exec failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown", ConnectFailure::NoShell),
            ("Error from server (NotFound): pods \"web-0\" not found", ConnectFailure::ContainerNotFound),
            ("Error: Instance not found", ConnectFailure::ContainerNotFound),
            ("Error: Instance is not running", ConnectFailure::ContainerNotRunning),
            ("jexec: jail \"www\" not found", ConnectFailure::ContainerNotFound),
            ("The connection to the server localhost:8080 was refused - did you specify the right host or port?", ConnectFailure::EngineUnavailable),
        ];
        for (said, kind) in cases {
            assert_eq!(EngineErrors.failure(said), Some(kind), "{said}");
        }
        assert_eq!(EngineErrors.failure("some other trouble"), None);
    }
}
