//! `sudo`: a context as another user on the same machine.
//!
//! Program: `sudo` (`sudo_path`). Argv: `sudo -u <user> [-H] [-E] [-r role]
//! [-t type] -p <prompt> -- /bin/sh -c '<first stage>'`. stdio is a
//! socketpair; a pseudo-terminal is the controlling terminal, so sudo can
//! prompt there and `requiretty` is satisfied.
//!
//! Prompts: our own `-p` prompt, plus any line that looks like a password
//! prompt (custom `passprompt`, translations); `pwfeedback` asterisks are
//! ignored. The password is typed once.
//!
//! Errors: `PasswordError` (needed but none given; incorrect),
//! `StreamError::Bootstrap` carrying sudo's words when it refuses ("not in
//! the sudoers file", "not allowed to execute"; kind `PermissionDenied`), `StreamError::InvalidOptions`
//! for `sudo_args` we do not support, `TimeoutError`.

use serde::{Deserialize, Serialize};

use super::prompt::{Password, PasswordDialogue};
use super::spawn::{self, FirstStageArg, Launch, StdioMode};
use super::{connect_via, LocalOptions, Method};
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::router::Router;

/// The prompt we ask sudo to print.
const PROMPT: &str = "mitogen-sudo-password: ";

/// Options of [`Router::sudo`] (Mitogen's `sudo()` arguments).
///
/// # Examples
/// ```
/// let mut opts = mitogen::SudoOptions {
///     username: "deploy".into(),
///     ..Default::default()
/// };
/// opts.password = Some("s3cret".into()); // a mitogen::Password: never shown by `{:?}`
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SudoOptions {
    /// Target user (default `root`).
    pub username: String,
    /// The sudo program (default `sudo`).
    pub sudo_path: String,
    /// Password to type if sudo asks (the invoking user's, or the target's
    /// under `targetpw`).
    pub password: Option<Password>,
    /// `-H`: set `HOME` to the target user's.
    pub set_home: bool,
    /// `-E`: keep the environment.
    pub preserve_env: bool,
    /// `-t`: SELinux type.
    pub selinux_type: Option<String>,
    /// `-r`: SELinux role.
    pub selinux_role: Option<String>,
    /// sudo options as on a command line; parsed into the fields above.
    /// Supported: `-u/--user`, `-H/--set-home`, `-E/--preserve-env`,
    /// `-r/--role`, `-t/--type`, `-n/--non-interactive`.
    pub sudo_args: Vec<String>,
    /// Options shared with `local`.
    pub common: LocalOptions,
}

impl Default for SudoOptions {
    fn default() -> Self {
        SudoOptions {
            username: "root".into(),
            sudo_path: "sudo".into(),
            password: None,
            set_home: false,
            preserve_env: false,
            selinux_type: None,
            selinux_role: None,
            sudo_args: Vec::new(),
            common: LocalOptions::default(),
        }
    }
}

impl SudoOptions {
    /// Fold `sudo_args` into the fields; returns `-n` when given.
    fn parse_args(&mut self) -> Result<bool, StreamError> {
        let mut non_interactive = false;
        let mut unsupported = Vec::new();
        let mut args = std::mem::take(&mut self.sudo_args).into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") => {
                    (arg[..2].to_string(), Some(arg[2..].to_string()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline.clone().or_else(|| args.next()).ok_or_else(|| {
                    StreamError::InvalidOptions(format!("sudo_args: {name} needs a value"))
                })
            };
            match flag.as_str() {
                "-u" | "--user" => self.username = value("-u")?,
                "-r" | "--role" => self.selinux_role = Some(value("-r")?),
                "-t" | "--type" => self.selinux_type = Some(value("-t")?),
                "-H" | "--set-home" if inline.is_none() => self.set_home = true,
                "-E" | "--preserve-env" if inline.is_none() => self.preserve_env = true,
                "-n" | "--non-interactive" if inline.is_none() => non_interactive = true,
                _ => unsupported.push(arg.clone()),
            }
        }
        if !unsupported.is_empty() {
            return Err(StreamError::InvalidOptions(format!(
                "sudo_args: unsupported option(s) {}",
                unsupported.join(" ")
            )));
        }
        Ok(non_interactive)
    }

    fn argv(&self, non_interactive: bool) -> Vec<String> {
        let mut a = vec![self.sudo_path.clone(), "-u".into(), self.username.clone()];
        if self.set_home {
            a.push("-H".into());
        }
        if self.preserve_env {
            a.push("-E".into());
        }
        if let Some(r) = &self.selinux_role {
            a.extend(["-r".into(), r.clone()]);
        }
        if let Some(t) = &self.selinux_type {
            a.extend(["-t".into(), t.clone()]);
        }
        if non_interactive {
            a.push("-n".into());
        }
        a.extend([
            "-p".into(),
            PROMPT.into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
        ]);
        a
    }
}

impl Router {
    /// Start a context as another user through sudo (Mitogen's `Router.sudo`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what sudo printed.
    pub fn sudo(&self, mut opts: SudoOptions) -> Result<Context> {
        if let Some(via) = opts.common.via.take() {
            return connect_via(self, &via, Method::Sudo(opts));
        }
        let non_interactive = opts.parse_args()?;
        let launch = Launch {
            argv: opts
                .argv(non_interactive)
                .into_iter()
                .map(Into::into)
                .collect(),
            first_stage: FirstStageArg::Script,
            cache_dir: opts.common.cache_dir.clone(),
            stdio: StdioMode::Hybrid,
            prompts: Some(Box::new(PasswordDialogue::new(
                "sudo",
                &opts.username,
                opts.password.clone(),
                &[PROMPT.trim()],
                &["sorry, try again", "incorrect password attempt"],
                &[
                    "is not in the sudoers file",
                    "is not allowed to execute",
                    "may not run sudo",
                    "a password is required",
                ],
            ))),
        };
        spawn::connect(
            self,
            spawn::Common::new("sudo", &opts.common, Some(&opts.username)),
            launch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_args_are_parsed() {
        let mut o = SudoOptions {
            sudo_args: vec![
                "-u".into(),
                "bob".into(),
                "-H".into(),
                "--role=r1".into(),
                "-tT".into(),
            ],
            ..Default::default()
        };
        assert!(!o.parse_args().unwrap());
        assert_eq!(o.username, "bob");
        assert!(o.set_home);
        assert_eq!(o.selinux_role.as_deref(), Some("r1"));
        assert_eq!(o.selinux_type.as_deref(), Some("T"));
        let a = o.argv(false).join(" ");
        assert!(a.starts_with("sudo -u bob -H -r r1 -t T -p"), "{a}");
        assert!(a.ends_with("-- /bin/sh -c"));
    }

    #[test]
    fn unsupported_sudo_args_are_named() {
        let mut o = SudoOptions {
            sudo_args: vec!["-s".into(), "-E".into(), "--login".into()],
            ..Default::default()
        };
        let e = o.parse_args().unwrap_err().to_string();
        assert!(e.contains("-s --login"), "{e}");
    }
}
