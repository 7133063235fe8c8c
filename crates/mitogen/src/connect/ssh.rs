//! `ssh`: a context on another machine through the OpenSSH client.
//!
//! Program: `ssh` (`ssh_path`). Argv: `ssh [-l user] [-p port] [-i key]
//! [-o IdentitiesOnly=yes] [-C] [-v…] -o ConnectTimeout=<s>
//! -o StrictHostKeyChecking=<mode> [-o BatchMode=yes] <ssh_args…> -- <host>
//! "sh -c '<first stage>'"`. `--` ends ssh's options, and a host or user
//! name starting with `-` is refused, so neither can be read as an option
//! (`-oProxyCommand=…`).
//!
//! Host keys: `enforce` → `StrictHostKeyChecking=yes`; `accept` →
//! `accept-new` (unknown keys are recorded, changed keys refused; no
//! terminal needed); `ignore` → no checking, no known_hosts.
//!
//! Prompts: with a `password`, ssh runs with a pseudo-terminal as its
//! controlling terminal and the password is typed at its prompt once;
//! without one it runs with `BatchMode=yes` and no terminal.
//!
//! Errors: `StreamError::InvalidOptions` (empty host name, host or user
//! name starting with `-`), `PasswordError` (needed but not given; refused), `HostKeyError`
//! (unknown under `enforce`; changed), `TimeoutError` (`connect_timeout`),
//! `StreamError::Bootstrap` with the last lines ssh printed otherwise, its
//! [`kind`](crate::StreamError::kind) read from ssh's words (`Refused`,
//! `UnknownHost`, `PermissionDenied` for a public key denied) or from its
//! exit (`Exited`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::prompt::{is_password_prompt, scrub, Password, Prompts};
use super::spawn::{FirstStageArg, Launch};
use super::stdio::StdioMode;
use crate::context::Context;
use crate::error::{ConnectFailure, Error, HostKeyError, PasswordError, Result, StreamError};
use crate::router::Router;

/// Host key checking (Mitogen's `check_host_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CheckHostKeys {
    /// No checking: connections never fail for an unknown or changed key.
    Ignore,
    /// Known keys must match; unknown keys are accepted and recorded.
    Accept,
    /// Known keys must match; unknown hosts fail with `HostKeyError`.
    #[default]
    Enforce,
}

/// Options of [`Router::ssh`] (Mitogen's `ssh()` arguments).
///
/// # Examples
/// ```
/// use mitogen::{CheckHostKeys, SshOptions};
/// let opts = SshOptions::new("web1.example.com")
///     .username("deploy")
///     .port(2222)
///     .check_host_keys(CheckHostKeys::Accept)
///     .password("s3cret"); // never shown by `{:?}`
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshOptions {
    /// Host to connect to.
    pub hostname: String,
    /// Login name; ssh's default when `None`.
    pub username: Option<String>,
    /// Port; ssh's default when `None`.
    pub port: Option<u16>,
    /// The ssh program (default `ssh`, searched in `PATH`).
    pub ssh_path: String,
    /// Extra arguments placed before the host name.
    pub ssh_args: Vec<String>,
    /// Host key checking (default `Enforce`).
    pub check_host_keys: CheckHostKeys,
    /// Password to type if ssh asks for one.
    pub password: Option<Password>,
    /// Private key to authenticate with.
    pub identity_file: Option<PathBuf>,
    /// With a password or identity file, use only those (default `true`).
    pub identities_only: bool,
    /// Ask ssh to compress (default `true`).
    pub compression: bool,
    /// ssh `-v` count, 0–3.
    pub ssh_debug_level: u8,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl SshOptions {
    /// Options for `hostname` with every default.
    pub fn new(hostname: impl Into<String>) -> SshOptions {
        SshOptions {
            hostname: hostname.into(),
            username: None,
            port: None,
            ssh_path: "ssh".into(),
            ssh_args: Vec::new(),
            check_host_keys: CheckHostKeys::Enforce,
            password: None,
            identity_file: None,
            identities_only: true,
            compression: true,
            ssh_debug_level: 0,
            common: CommonOptions::default(),
        }
    }

    /// Log in as `user` (`-l`).
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.username = Some(user.into());
        self
    }

    /// Connect to `port` (`-p`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The ssh program to run (default `ssh`).
    pub fn ssh_path(mut self, path: impl Into<String>) -> Self {
        self.ssh_path = path.into();
        self
    }

    /// Extra arguments placed before the host name.
    pub fn ssh_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.ssh_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Host key checking (default `Enforce`).
    pub fn check_host_keys(mut self, mode: CheckHostKeys) -> Self {
        self.check_host_keys = mode;
        self
    }

    /// The password to type if ssh asks for one.
    pub fn password(mut self, password: impl Into<Password>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The private key to authenticate with (`-i`).
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// With a password or identity file, use only those (default `true`).
    pub fn identities_only(mut self, on: bool) -> Self {
        self.identities_only = on;
        self
    }

    /// Ask ssh to compress (default `true`).
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// ssh's `-v` count, 0–3.
    pub fn ssh_debug_level(mut self, level: u8) -> Self {
        self.ssh_debug_level = level;
        self
    }

    common_builders!();

    /// Refuse host and user names ssh could read as options.
    fn validate(&self) -> Result<(), StreamError> {
        if self.hostname.is_empty() {
            return Err(StreamError::InvalidOptions("ssh: empty host name".into()));
        }
        let names = [
            ("host", Some(&self.hostname)),
            ("user", self.username.as_ref()),
        ];
        for (what, name) in names {
            if let Some(name) = name.filter(|n| n.starts_with('-')) {
                return Err(StreamError::InvalidOptions(format!(
                    "ssh: {what} name {name:?} starts with '-' and would be read as an option"
                )));
            }
        }
        Ok(())
    }

    /// The argv before the first stage.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![self.ssh_path.clone()];
        if let Some(u) = &self.username {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(k) = &self.identity_file {
            a.extend(["-i".into(), k.to_string_lossy().into_owned()]);
        }
        if self.identities_only && (self.password.is_some() || self.identity_file.is_some()) {
            a.extend(["-o".into(), "IdentitiesOnly=yes".into()]);
        }
        if self.compression {
            a.push("-C".into());
        }
        if self.ssh_debug_level > 0 {
            a.push(format!(
                "-{}",
                "v".repeat(self.ssh_debug_level.min(3) as usize)
            ));
        }
        let secs = self.common.connect_timeout.as_secs().max(1);
        a.extend(["-o".into(), format!("ConnectTimeout={secs}")]);
        a.extend(["-o".into(), "ServerAliveInterval=30".into()]);
        match self.check_host_keys {
            CheckHostKeys::Enforce => a.extend(["-o".into(), "StrictHostKeyChecking=yes".into()]),
            CheckHostKeys::Accept => {
                a.extend(["-o".into(), "StrictHostKeyChecking=accept-new".into()])
            }
            CheckHostKeys::Ignore => a.extend([
                "-o".into(),
                "StrictHostKeyChecking=no".into(),
                "-o".into(),
                "UserKnownHostsFile=/dev/null".into(),
                "-o".into(),
                "GlobalKnownHostsFile=/dev/null".into(),
                "-o".into(),
                "LogLevel=ERROR".into(),
            ]),
        }
        if self.password.is_some() {
            a.extend(["-o".into(), "NumberOfPasswordPrompts=1".into()]);
        } else {
            a.extend(["-o".into(), "BatchMode=yes".into()]);
        }
        a.extend(self.ssh_args.iter().cloned());
        a.extend(["--".into(), self.hostname.clone()]);
        a
    }
}

impl Router {
    /// Start a context on another machine over OpenSSH (Mitogen's `Router.ssh`).
    ///
    /// # Errors
    /// [`Error::Password`], [`Error::HostKey`], [`Error::Timeout`], or
    /// [`Error::Stream`] carrying what ssh printed;
    /// [`StreamError::InvalidOptions`] before anything runs for an empty
    /// host name or a host or user name starting with `-`.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web = router.ssh(mitogen::SshOptions::new("web1")).unwrap();
    /// let root_on_web = router.sudo(mitogen::SudoOptions::new().via(&web)).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn ssh(&self, opts: SshOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

impl Method for SshOptions {
    const NAME: &'static str = "ssh";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.hostname.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        Ok(self.validate()?)
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        let stdio = if self.password.is_some() {
            StdioMode::Hybrid
        } else {
            StdioMode::Socket
        };
        Ok(Launch::shell(self.argv(), FirstStageArg::CommandLine)
            .stdio(stdio)
            .prompts(SshPrompts {
                host: self.hostname.clone(),
                password: self.password.clone(),
                typed: false,
                connect_timeout: self.common.connect_timeout,
            }))
    }
}

struct SshPrompts {
    host: String,
    password: Option<Password>,
    typed: bool,
    connect_timeout: std::time::Duration,
}

impl SshPrompts {
    fn password_error(&self, reason: &str, output: &str) -> Error {
        PasswordError {
            method: "ssh".into(),
            reason: reason.to_string(),
            output: scrub(self.password.as_ref(), output),
        }
        .into()
    }

    fn host_key_error(&self, output: &str) -> Option<Error> {
        let lower = output.to_lowercase();
        let reason = if lower.contains("remote host identification has changed")
            || lower.contains("host key for") && lower.contains("has changed")
        {
            "has changed"
        } else if lower.contains("host key verification failed")
            || lower.contains("host key is known")
            || lower.contains("are you sure you want to continue connecting")
        {
            "is not known (check_host_keys=enforce)"
        } else {
            return None;
        };
        Some(
            HostKeyError {
                host: self.host.clone(),
                reason: reason.into(),
                output: scrub(self.password.as_ref(), output),
            }
            .into(),
        )
    }
}

impl Prompts for SshPrompts {
    fn on_output(&mut self, text: &str) -> Result<Option<Password>, Error> {
        if let Some(e) = self.host_key_error(text) {
            return Err(e);
        }
        if !is_password_prompt(text) {
            return Ok(None);
        }
        match (&self.password, self.typed) {
            (_, true) => Err(self.password_error("the password was refused", text)),
            (None, _) => {
                Err(self.password_error("a password is required but none was given", text))
            }
            (Some(p), false) => {
                self.typed = true;
                Ok(Some(Password::from(format!("{}\n", p.expose()))))
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        scrub(self.password.as_ref(), text)
    }

    /// ssh's last words, in its own terms (`ssh(1)`, OpenSSH's
    /// `ssh_connect`/`ssh_exchange_identification` messages):
    /// "ssh: connect to host h port 22: Connection refused", "ssh: Could
    /// not resolve hostname h: Name or service not known", "… Connection
    /// timed out", "u@h: Permission denied (publickey).". The first of
    /// them wins: later lines may be the remote shell's.
    fn failure(&self, output: &str) -> Option<ConnectFailure> {
        const WORDS: [(&str, ConnectFailure); 6] = [
            ("connection refused", ConnectFailure::Refused),
            ("could not resolve hostname", ConnectFailure::UnknownHost),
            ("name or service not known", ConnectFailure::UnknownHost),
            (
                "no address associated with hostname",
                ConnectFailure::UnknownHost,
            ),
            ("connection timed out", ConnectFailure::TimedOut),
            ("permission denied", ConnectFailure::PermissionDenied),
        ];
        output.lines().find_map(|line| {
            let lower = line.to_lowercase();
            WORDS
                .iter()
                .find(|(w, _)| lower.contains(w))
                .map(|(_, kind)| *kind)
        })
    }

    fn on_exit(&self, output: &str) -> Option<Error> {
        if let Some(e) = self.host_key_error(output) {
            return Some(e);
        }
        let lower = output.to_lowercase();
        // ssh's own ConnectTimeout: "Connection timed out during banner exchange".
        if lower.contains("timed out") {
            return Some(
                crate::error::TimeoutError {
                    waited: self.connect_timeout,
                    what: format!(
                        "connecting to {} over ssh; it printed: {}",
                        self.host,
                        scrub(self.password.as_ref(), output)
                    ),
                }
                .into(),
            );
        }
        if let Some(pos) = lower.find("permission denied") {
            if self.typed {
                return Some(self.password_error("the password was refused", output));
            }
            // "Permission denied (publickey,password)." lists what the server allows.
            let methods = &lower[pos..];
            let methods = methods.split(['\n', '.']).next().unwrap_or("");
            if self.password.is_none()
                && (methods.contains("password") || methods.contains("keyboard-interactive"))
            {
                return Some(
                    self.password_error("a password is required but none was given", output),
                );
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_for_batch_mode_and_password() {
        let mut o = SshOptions::new("h");
        o.port = Some(2222);
        o.username = Some("u".into());
        let a = o.argv().join(" ");
        assert!(
            a.starts_with("ssh -l u -p 2222 -C -o ConnectTimeout=30"),
            "{a}"
        );
        assert!(a.contains("StrictHostKeyChecking=yes") && a.contains("BatchMode=yes"));
        assert!(a.ends_with(" -- h"), "{a}");
        o.password = Some("x".into());
        o.check_host_keys = CheckHostKeys::Ignore;
        let a = o.argv().join(" ");
        assert!(
            !a.contains("BatchMode") && a.contains("NumberOfPasswordPrompts=1"),
            "{a}"
        );
        assert!(a.contains("UserKnownHostsFile=/dev/null") && a.contains("IdentitiesOnly=yes"));
    }

    #[test]
    fn l5_host_is_never_an_option() {
        let mut o = SshOptions::new("-oProxyCommand=touch /tmp/pwned");
        o.ssh_args = vec!["-o".into(), "Foo=bar".into()];
        let e = o.validate().unwrap_err().to_string();
        assert!(
            e.contains("invalid options") && e.contains("-oProxyCommand"),
            "{e}"
        );
        o.hostname = "web1".into();
        o.validate().unwrap();
        let a = o.argv();
        assert_eq!(&a[a.len() - 2..], ["--", "web1"], "{a:?}");
        o.username = Some("-oProxyCommand=x".into());
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("user name \"-oProxyCommand=x\""), "{e}");
        o.username = Some("deploy".into());
        o.hostname = String::new();
        assert!(o.validate().is_err());
    }

    #[test]
    fn classifies_ssh_failures() {
        let p = SshPrompts {
            host: "h".into(),
            password: None,
            typed: false,
            connect_timeout: std::time::Duration::from_secs(1),
        };
        let e = p
            .on_exit("u@h: Permission denied (publickey,password).")
            .unwrap();
        assert!(matches!(e, Error::Password(_)), "{e}");
        assert!(p.on_exit("u@h: Permission denied (publickey).").is_none());
        let e = p.on_exit("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.").unwrap();
        assert!(e.to_string().contains("is not known"), "{e}");
        let e = p
            .on_exit("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.")
            .unwrap();
        assert!(e.to_string().contains("has changed"), "{e}");
    }

    #[test]
    fn ssh_words_become_kinds() {
        let p = SshPrompts {
            host: "h".into(),
            password: None,
            typed: false,
            connect_timeout: std::time::Duration::from_secs(1),
        };
        let cases = [
            (
                "ssh: connect to host h port 22: Connection refused",
                Some(ConnectFailure::Refused),
            ),
            (
                "ssh: Could not resolve hostname h: Name or service not known",
                Some(ConnectFailure::UnknownHost),
            ),
            (
                "u@h: Permission denied (publickey).",
                Some(ConnectFailure::PermissionDenied),
            ),
            ("kex_exchange_identification: read: Connection reset", None),
        ];
        for (said, kind) in cases {
            assert_eq!(p.failure(said), kind, "{said}");
        }
        // The first line that names a cause wins over later noise.
        let said = "ssh: connect to host h port 22: Connection refused\nPermission denied";
        assert_eq!(p.failure(said), Some(ConnectFailure::Refused));
    }
}
