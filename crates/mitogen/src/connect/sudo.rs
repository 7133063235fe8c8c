//! `sudo`: a context as another user on the same machine.
//!
//! Program: `sudo` (`sudo_path`). Argv: `sudo -u <user> [-H] [-E] [-r role]
//! [-t type] -p <prompt> -- /bin/sh -c '<first stage>'`. stdio is a
//! socketpair; a pseudo-terminal is the controlling terminal, so sudo can
//! prompt there and `requiretty` is satisfied.
//!
//! Prompts: our own `-p` prompt (`password_prompt`), plus any line that looks like a password
//! prompt (custom `passprompt`, translations); `pwfeedback` asterisks are
//! ignored. The password is typed once.
//!
//! Errors: `PasswordError` (needed but none given; incorrect),
//! `StreamError::Bootstrap` carrying sudo's words when it refuses ("not in
//! the sudoers file", "not allowed to execute"; kind `PermissionDenied`), `StreamError::InvalidOptions`
//! for `sudo_args` we do not support, `TimeoutError`.

use serde::{Deserialize, Serialize};

use super::method::{common_field, Method};
use super::options::{become_builders, common_builders, BecomeOptions, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use super::stdio::StdioMode;
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::router::Router;

/// The prompt we ask sudo to print, unless `password_prompt` says otherwise.
const PROMPT: &str = "mitogen-sudo-password: ";

/// Options of [`Router::sudo`] (Mitogen's `sudo()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::SudoOptions::new()
///     .username("deploy")
///     .set_home(true)
///     .password("s3cret"); // a mitogen::Password: never shown by `{:?}`
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SudoOptions {
    /// The sudo program (default `sudo`).
    pub sudo_path: String,
    /// `-H`: set `HOME` to the target user's.
    pub set_home: bool,
    /// `-E`: keep the environment.
    pub preserve_env: bool,
    /// `-t`: SELinux type.
    pub selinux_type: Option<String>,
    /// `-r`: SELinux role.
    pub selinux_role: Option<String>,
    /// `-n`: fail instead of prompting.
    pub non_interactive: bool,
    /// sudo options as on a command line; parsed into the fields above.
    /// Supported: `-u/--user`, `-H/--set-home`, `-E/--preserve-env`,
    /// `-r/--role`, `-t/--type`, `-n/--non-interactive`.
    pub sudo_args: Vec<String>,
    /// Who to become (default `root`) and the password to type if sudo
    /// asks; `password_prompt` is the prompt sudo is told to print.
    pub become_: BecomeOptions,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for SudoOptions {
    fn default() -> Self {
        SudoOptions {
            sudo_path: "sudo".into(),
            set_home: false,
            preserve_env: false,
            selinux_type: None,
            selinux_role: None,
            non_interactive: false,
            sudo_args: Vec::new(),
            become_: BecomeOptions::with_prompts(
                PROMPT,
                &["sorry, try again", "incorrect password attempt"],
            ),
            common: CommonOptions::default(),
        }
    }
}

impl SudoOptions {
    /// Every default: become `root`.
    pub fn new() -> SudoOptions {
        SudoOptions::default()
    }

    /// The sudo program to run (default `sudo`).
    pub fn sudo_path(mut self, path: impl Into<String>) -> Self {
        self.sudo_path = path.into();
        self
    }

    /// `-H`: set `HOME` to the target user's.
    pub fn set_home(mut self, on: bool) -> Self {
        self.set_home = on;
        self
    }

    /// `-E`: keep the environment.
    pub fn preserve_env(mut self, on: bool) -> Self {
        self.preserve_env = on;
        self
    }

    /// `-t`: the SELinux type.
    pub fn selinux_type(mut self, t: impl Into<String>) -> Self {
        self.selinux_type = Some(t.into());
        self
    }

    /// `-r`: the SELinux role.
    pub fn selinux_role(mut self, r: impl Into<String>) -> Self {
        self.selinux_role = Some(r.into());
        self
    }

    /// sudo options as on a command line, parsed like the `sudo_args` field.
    pub fn sudo_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.sudo_args = args.into_iter().map(Into::into).collect();
        self
    }

    become_builders!();
    common_builders!();

    /// Fold `sudo_args` into the fields (`-n` into `non_interactive`).
    fn parse_args(&mut self) -> Result<(), StreamError> {
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
                "-u" | "--user" => self.become_.username = value("-u")?,
                "-r" | "--role" => self.selinux_role = Some(value("-r")?),
                "-t" | "--type" => self.selinux_type = Some(value("-t")?),
                "-H" | "--set-home" if inline.is_none() => self.set_home = true,
                "-E" | "--preserve-env" if inline.is_none() => self.preserve_env = true,
                "-n" | "--non-interactive" if inline.is_none() => self.non_interactive = true,
                _ => unsupported.push(arg.clone()),
            }
        }
        if !unsupported.is_empty() {
            return Err(StreamError::InvalidOptions(format!(
                "sudo_args: unsupported option(s) {}",
                unsupported.join(" ")
            )));
        }
        Ok(())
    }

    pub(crate) fn argv(&self) -> Vec<String> {
        let mut a = vec![
            self.sudo_path.clone(),
            "-u".into(),
            self.become_.username.clone(),
        ];
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
        if self.non_interactive {
            a.push("-n".into());
        }
        a.extend([
            "-p".into(),
            self.become_.password_prompt.clone(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
        ]);
        a
    }
}

impl Method for SudoOptions {
    const NAME: &'static str = "sudo";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.become_.username.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        if self.become_.password_prompt.contains(['\n', '\r']) {
            return Err(StreamError::InvalidOptions(
                "sudo: password_prompt must be one line".into(),
            )
            .into());
        }
        Ok(self.parse_args()?)
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        let b = &self.become_;
        Ok(Launch::shell(self.argv(), FirstStageArg::Script)
            .stdio(StdioMode::Hybrid)
            .prompts(b.dialogue(
                "sudo",
                &[
                    "is not in the sudoers file",
                    "is not allowed to execute",
                    "may not run sudo",
                    "a password is required",
                ],
            )))
    }
}

impl Router {
    /// Start a context as another user through sudo (Mitogen's `Router.sudo`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what sudo printed.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let web1 = router.ssh(mitogen::SshOptions::new("web1")).unwrap();
    /// let root = router.sudo(mitogen::SudoOptions::new().via(&web1)).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn sudo(&self, opts: SudoOptions) -> Result<Context> {
        super::method::connect(self, opts)
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
        o.parse_args().unwrap();
        assert!(!o.non_interactive);
        assert_eq!(o.become_.username, "bob");
        assert!(o.set_home);
        assert_eq!(o.selinux_role.as_deref(), Some("r1"));
        assert_eq!(o.selinux_type.as_deref(), Some("T"));
        let a = o.argv().join(" ");
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
