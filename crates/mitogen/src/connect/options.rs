//! Options every method shares ([`CommonOptions`]), the options of the
//! methods that become another user ([`BecomeOptions`]), and the builder
//! methods each method's options get for both.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::prompt::{Password, PasswordDialogue};
use crate::context::Context;
use crate::error::StreamError;

/// Options every connection method has (Mitogen's common `connect()`
/// arguments). Each method's options hold one as `common` and offer a
/// builder method per field.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let opts = mitogen::SudoOptions::new()
///     .username("deploy")
///     .remote_name("deploy-on-web1")
///     .connect_timeout(Duration::from_secs(5));
/// assert_eq!(opts.common.remote_name.as_deref(), Some("deploy-on-web1"));
/// assert_eq!(opts.common.connect_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommonOptions {
    /// Name of the new context; its process shows as `mitogen:<name>`.
    /// Defaults to `<method>.<target>` (`ssh.web1`, `sudo.root`), or
    /// `<method>.<pid>` for methods without a target (`local.4242`, as in
    /// Mitogen: the pid of the process started, so its title reads
    /// `mitogen:local`). Must be non-empty, without `/` or control
    /// characters.
    pub remote_name: Option<String>,
    /// How long the connection may take, prompts and bootstrap included
    /// (default 30 s).
    pub connect_timeout: Duration,
    /// Write debug logs in the new context (see [`Router::enable_debug`]);
    /// on anyway when the router has debug enabled.
    ///
    /// [`Router::enable_debug`]: crate::Router::enable_debug
    pub debug: bool,
    /// Forward the new context's `tracing` events to the master when they
    /// are this level or more severe (default: the router's
    /// [`forward_level`](crate::Router::forward_level), INFO).
    #[serde(with = "crate::log::level_serde", default)]
    pub forward_level: Option<tracing::Level>,
    /// Profile the new context and its subtree (see
    /// [`Router::set_profiling`]); on anyway when this process profiles.
    ///
    /// [`Router::set_profiling`]: crate::Router::set_profiling
    pub profiling: bool,
    /// Cache directory the first stage tries first for the binary.
    pub cache_dir: Option<PathBuf>,
    /// Largest message the new context accepts and sends (default: this
    /// router's [`max_message_size`](crate::Router::max_message_size)).
    pub max_message_size: Option<usize>,
    /// Forbid the new context from routing between its children and the
    /// rest of the tree (default: this router's setting).
    pub unidirectional: Option<bool>,
    /// Make the connection from this context instead of here (Mitogen's
    /// `via=`): it becomes the new context's parent.
    #[serde(skip)]
    pub via: Option<Context>,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions {
            remote_name: None,
            connect_timeout: Duration::from_secs(30),
            debug: false,
            forward_level: None,
            profiling: false,
            cache_dir: None,
            max_message_size: None,
            unidirectional: None,
            via: None,
        }
    }
}

impl CommonOptions {
    /// Refuse a name that would break process titles, logs or routing.
    pub(crate) fn validate(&self) -> Result<(), StreamError> {
        if let Some(name) = &self.remote_name {
            if let Err(why) = crate::router::check_user_name(name) {
                return Err(StreamError::InvalidOptions(format!(
                    "remote_name refused: {why}"
                )));
            }
        }
        if let Some(dir) = &self.cache_dir {
            if dir.to_string_lossy().contains('\n') {
                return Err(StreamError::InvalidOptions(format!(
                    "cache_dir {dir:?} must not contain a newline"
                )));
            }
        }
        if self.max_message_size == Some(0) {
            return Err(StreamError::InvalidOptions(
                "max_message_size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Options of the methods that run a context as another user on the same
/// machine (`sudo`, `su`, `doas`): who to become and how to answer the
/// program's password prompt. Each method's options hold one as `become_`
/// and offer a builder method per field.
///
/// # Examples
/// ```
/// let opts = mitogen::SuOptions::new().username("deploy").password("s3cret");
/// assert_eq!(opts.become_.username, "deploy");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BecomeOptions {
    /// Target user (default `root`).
    pub username: String,
    /// Password to type if the program asks (sudo: the invoking user's,
    /// or the target's under `targetpw`; su: the target's).
    pub password: Option<Password>,
    /// Text that means the program asks for the password, compared
    /// case-insensitively at the end of its output; any password-like
    /// prompt is recognised too. sudo is told to print its own.
    pub password_prompt: String,
    /// Texts that mean the password was wrong (case-insensitive).
    pub incorrect_prompts: Vec<String>,
}

impl BecomeOptions {
    /// Becoming `root`, with this method's prompts.
    pub(crate) fn with_prompts(password_prompt: &str, incorrect: &[&str]) -> BecomeOptions {
        BecomeOptions {
            username: "root".into(),
            password: None,
            password_prompt: password_prompt.into(),
            incorrect_prompts: incorrect.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl BecomeOptions {
    /// The password dialogue of `method` for these options; `refused`
    /// holds the method's words for an outright refusal.
    pub(crate) fn dialogue(&self, method: &'static str, refused: &[&str]) -> PasswordDialogue {
        PasswordDialogue::new(
            method,
            &self.username,
            self.password.clone(),
            &[self.password_prompt.trim()],
            &self.incorrect_prompts,
            refused,
        )
    }
}

/// Builder methods for the [`CommonOptions`] of an options type with a
/// `common` field.
macro_rules! common_builders {
    () => {
        /// Name the new context (see [`CommonOptions::remote_name`](crate::CommonOptions::remote_name)).
        pub fn remote_name(mut self, name: impl Into<String>) -> Self {
            self.common.remote_name = Some(name.into());
            self
        }

        /// How long the connection may take (default 30 s).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.connect_timeout = timeout;
            self
        }

        /// Write debug logs in the new context.
        pub fn debug(mut self, on: bool) -> Self {
            self.common.debug = on;
            self
        }

        /// Forward the new context's events at `level` or more severe (see
        /// [`CommonOptions::forward_level`](crate::CommonOptions::forward_level)).
        pub fn forward_level(mut self, level: tracing::Level) -> Self {
            self.common.forward_level = Some(level);
            self
        }

        /// Profile the new context and its subtree.
        pub fn profiling(mut self, on: bool) -> Self {
            self.common.profiling = on;
            self
        }

        /// The cache directory the first stage tries first.
        pub fn cache_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.common.cache_dir = Some(dir.into());
            self
        }

        /// Largest message the new context accepts and sends.
        pub fn max_message_size(mut self, bytes: usize) -> Self {
            self.common.max_message_size = Some(bytes);
            self
        }

        /// Forbid the new context from routing between its children and
        /// the rest of the tree.
        pub fn unidirectional(mut self, on: bool) -> Self {
            self.common.unidirectional = Some(on);
            self
        }

        /// Make the connection from `context` (Mitogen's `via=`).
        pub fn via(mut self, context: &$crate::Context) -> Self {
            self.common.via = Some(context.clone());
            self
        }
    };
}

/// Builder methods for the [`BecomeOptions`] of an options type with a
/// `become_` field.
macro_rules! become_builders {
    () => {
        /// The user to become (default `root`).
        pub fn username(mut self, user: impl Into<String>) -> Self {
            self.become_.username = user.into();
            self
        }

        /// The password to type at the program's prompt.
        pub fn password(mut self, password: impl Into<$crate::Password>) -> Self {
            self.become_.password = Some(password.into());
            self
        }

        /// Text that means the program asks for the password.
        pub fn password_prompt(mut self, prompt: impl Into<String>) -> Self {
            self.become_.password_prompt = prompt.into();
            self
        }

        /// Texts that mean the password was wrong (replacing the defaults).
        pub fn incorrect_prompts<S: Into<String>>(
            mut self,
            prompts: impl IntoIterator<Item = S>,
        ) -> Self {
            self.become_.incorrect_prompts = prompts.into_iter().map(Into::into).collect();
            self
        }
    };
}

pub(crate) use {become_builders, common_builders};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_break_titles_or_routing_are_refused() {
        for (name, why) in [
            ("", "is empty"),
            ("a/b", "'/'"),
            ("evil\nline", "control"),
            ("tab\there", "control"),
        ] {
            let o = CommonOptions {
                remote_name: Some(name.into()),
                ..Default::default()
            };
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        let o = CommonOptions {
            remote_name: Some("web1.sudo-root_2".into()),
            ..Default::default()
        };
        o.validate().unwrap();
    }
}
