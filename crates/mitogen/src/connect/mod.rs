//! Connection methods. Each method is one file of the same shape: its
//! options (with builders), an `impl Method` giving the program, argv,
//! stdio mode and prompts, and a `//!` block saying all of that and the
//! errors. [`method`] holds the trait, the serialisable [`MethodOptions`]
//! and [`Router::connect`](crate::Router::connect); [`spawn`] starts the
//! program, answers its prompts, runs the bootstrap and registers the new
//! context; [`via`] makes a connection from another context.
//!
//! | method | program | stdio | prompts |
//! |---|---|---|---|
//! | `local` | this executable, or `/bin/sh -c` | socketpair | — |
//! | `ssh` | OpenSSH `ssh` | socketpair (+ terminal with a password) | password, host key |
//! | `sudo` | `sudo` | socketpair + controlling terminal | password |
//! | `su` | `su` | terminal | password |
//! | `doas` | `doas` | terminal | password |
//! | `kubectl` | `kubectl exec -i` | socketpair | — |
//! | `lxc` | `lxc-attach` | socketpair | — |
//! | `lxd` | `lxc exec` | socketpair | — |
//! | `incus` | `incus exec` | socketpair | — |
//! | `jail` | `jexec` | socketpair | — |
//! | `machinectl` | `systemd-run --machine --pipe` | socketpair | — |
//! | `fork` | none: a fork of this program's zygote | socketpair | — |
//! | `docker` | `docker exec -i` / `docker run -i --rm` | socketpair | — |
//! | `podman` | `podman exec -i` | socketpair | — |
//! | `buildah` | `buildah run` | socketpair | — |
//! | `setns` | none: this executable (or the container's `/bin/sh`), after entering its namespaces (root) | socketpair | — |

mod docker_api;
pub(crate) mod engine;
pub(crate) mod method;
mod options;
pub(crate) mod prompt;
pub(crate) mod spawn;
pub(crate) mod stdio;
mod via;

pub use local::Bootstrap;
pub use method::ConnectionSpec;
pub use options::{BecomeOptions, CommonOptions};
pub use setns::ContainerKind;
pub use ssh::CheckHostKeys;
// The fork method's hooks type, and what the child entry calls.
pub use fork::ForkHooks;
pub(crate) use fork::{enter_if_zygote, run_hook, HookPoint};

use crate::error::{ConnectFailure, Error};

// Every connection method: `module: Arm(Options)`. Adding a method is a
// file `connect/<module>.rs` and one line here.
method::methods! {
    local: Local(LocalOptions),
    ssh: Ssh(SshOptions),
    sudo: Sudo(SudoOptions),
    su: Su(SuOptions),
    doas: Doas(DoasOptions),
    kubectl: Kubectl(KubectlOptions),
    lxc: Lxc(LxcOptions),
    lxd: Lxd(LxdOptions),
    incus: Incus(IncusOptions),
    jail: Jail(JailOptions),
    machinectl: Machinectl(MachinectlOptions),
    fork: Fork(ForkOptions),
    docker: Docker(DockerOptions),
    podman: Podman(PodmanOptions),
    buildah: Buildah(BuildahOptions),
    setns: Setns(SetnsOptions),
}

impl Error {
    /// Why a connection failed, whatever the error's type: the
    /// [`StreamError::kind`](crate::StreamError::kind) of a stream error, [`ConnectFailure::TimedOut`]
    /// for a timeout, [`ConnectFailure::PermissionDenied`] for a password
    /// error, [`ConnectFailure::HostKey`] for a host key error; `None` for
    /// errors a connection does not return.
    ///
    /// # Examples
    /// ```
    /// use mitogen::{ConnectFailure, SshOptions};
    /// mitogen::Router::with(|router| {
    ///     let mut opts = SshOptions::new("web1");
    ///     opts.ssh_path = "/nonexistent/ssh".into();
    ///     let e = router.ssh(opts).unwrap_err();
    ///     assert_eq!(e.connect_failure(), Some(ConnectFailure::ProgramNotFound));
    /// })
    /// .unwrap();
    /// ```
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        match self {
            Error::Stream(e) => e.kind(),
            Error::Timeout(_) => Some(ConnectFailure::TimedOut),
            Error::Password(_) => Some(ConnectFailure::PermissionDenied),
            Error::HostKey(_) => Some(ConnectFailure::HostKey),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamError;

    fn kind_of(reason: &str) -> Option<ConnectFailure> {
        StreamError::Bootstrap {
            name: "n".into(),
            reason: reason.into(),
            output: "connection refused".into(),
        }
        .kind()
    }

    #[test]
    fn a_kind_written_at_the_start_of_a_reason_reads_back() {
        // Every kind a reason can lead with (the list `of_reason` reads),
        // and the two that carry a number.
        let kinds = ConnectFailure::WORDED.into_iter().chain([
            ConnectFailure::Exited { status: 255 },
            ConnectFailure::Killed { signal: 9 },
        ]);
        for k in kinds {
            assert_eq!(kind_of(&k.to_string()), Some(k), "{k}");
            assert_eq!(kind_of(&format!("{k} (the program exited)")), Some(k));
            assert_eq!(kind_of(&format!("{k}: via a relay")), Some(k));
        }
        // Only at the start, as a whole phrase; never from the output.
        for other in [
            "no candidate directory",
            "the connection closed before the child started",
            "connection refusedx",
            "exited with status x",
            "the target said: connection refused",
        ] {
            assert_eq!(
                kind_of(other),
                Some(ConnectFailure::BootstrapFailed),
                "{other}"
            );
        }
        assert_eq!(StreamError::NoRoute(3).kind(), None);
    }
}
