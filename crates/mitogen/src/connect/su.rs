//! `su`: a context as another user through `su`.
//!
//! Program: `su` (`su_path`). Argv: `su <user> -c "sh -c '<first stage>'"`
//! (the command runs through the target's login shell). stdio is a
//! pseudo-terminal in raw mode: su prompts on it.
//!
//! Prompts: `password_prompt` (default `password:`) or any password-like
//! prompt; typed once. Errors: `PasswordError` when no password is given
//! or one of `incorrect_prompts` appears (default `su: sorry`,
//! `su: authentication failure`), `StreamError` with su's output otherwise
//! (as soon as su exits: its kind is `Exited` with su's status).

use serde::{Deserialize, Serialize};

use super::prompt::{Password, PasswordDialogue};
use super::spawn::{self, FirstStageArg, Launch, StdioMode};
use super::{connect_via, LocalOptions, Method};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::su`] (Mitogen's `su()` arguments).
///
/// # Examples
/// ```
/// let mut opts = mitogen::SuOptions {
///     username: "deploy".into(),
///     ..Default::default()
/// };
/// opts.password = Some("s3cret".into()); // a mitogen::Password: never shown by `{:?}`
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuOptions {
    /// Target user (default `root`).
    pub username: String,
    /// The target user's password.
    pub password: Option<Password>,
    /// The su program (default `su`).
    pub su_path: String,
    /// Text that means su asks for the password (default `password:`,
    /// compared case-insensitively at the end of the output).
    pub password_prompt: String,
    /// Texts that mean the password was wrong.
    pub incorrect_prompts: Vec<String>,
    /// Options shared with `local`.
    pub common: LocalOptions,
}

impl Default for SuOptions {
    fn default() -> Self {
        SuOptions {
            username: "root".into(),
            password: None,
            su_path: "su".into(),
            password_prompt: "password:".into(),
            incorrect_prompts: vec!["su: sorry".into(), "su: authentication failure".into()],
            common: LocalOptions::default(),
        }
    }
}

impl Router {
    /// Start a context as another user through su (Mitogen's `Router.su`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what su printed.
    pub fn su(&self, mut opts: SuOptions) -> Result<Context> {
        if let Some(via) = opts.common.via.take() {
            return connect_via(self, &via, Method::Su(opts));
        }
        let launch = Launch {
            argv: vec![
                opts.su_path.clone().into(),
                opts.username.clone().into(),
                "-c".into(),
            ],
            first_stage: FirstStageArg::CommandLine,
            cache_dir: opts.common.cache_dir.clone(),
            stdio: StdioMode::Tty,
            prompts: Some(Box::new(PasswordDialogue::new(
                "su",
                &opts.username,
                opts.password.clone(),
                &[&opts.password_prompt],
                &opts.incorrect_prompts,
                &[],
            ))),
        };
        spawn::connect(
            self,
            spawn::Common::new("su", &opts.common, Some(&opts.username)),
            launch,
        )
    }
}
