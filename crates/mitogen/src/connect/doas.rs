//! `doas`: a context as another user through OpenBSD's `doas`.
//!
//! Program: `doas` (`doas_path`). Argv: `doas -u <user> -- /bin/sh -c
//! '<first stage>'`. stdio is a pseudo-terminal in raw mode: doas prompts
//! on its terminal.
//!
//! Prompts: `password_prompt` (default `password:`) or any password-like
//! prompt; typed once. Errors: `PasswordError` when no password is given
//! or one of `incorrect_prompts` appears (default `doas: authentication
//! failed`), `StreamError` with doas's output otherwise, as soon as doas
//! exits ("Operation not permitted" when no rule allows it: kind
//! `PermissionDenied`; else `Exited` with its status).

use serde::{Deserialize, Serialize};

use super::prompt::{Password, PasswordDialogue};
use super::spawn::{self, FirstStageArg, Launch, StdioMode};
use super::{connect_via, LocalOptions, Method};
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::doas`] (Mitogen's `doas()` arguments).
///
/// # Examples
/// ```
/// let mut opts = mitogen::DoasOptions {
///     username: "deploy".into(),
///     ..Default::default()
/// };
/// opts.password = Some("s3cret".into()); // a mitogen::Password: never shown by `{:?}`
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoasOptions {
    /// Target user (default `root`).
    pub username: String,
    /// Password to type if doas asks.
    pub password: Option<Password>,
    /// The doas program (default `doas`).
    pub doas_path: String,
    /// Text that means doas asks for the password (default `password:`).
    pub password_prompt: String,
    /// Texts that mean the password was wrong.
    pub incorrect_prompts: Vec<String>,
    /// Options shared with `local`.
    pub common: LocalOptions,
}

impl Default for DoasOptions {
    fn default() -> Self {
        DoasOptions {
            username: "root".into(),
            password: None,
            doas_path: "doas".into(),
            password_prompt: "password:".into(),
            incorrect_prompts: vec!["doas: authentication failed".into()],
            common: LocalOptions::default(),
        }
    }
}

impl Router {
    /// Start a context as another user through doas (Mitogen's `Router.doas`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what doas printed.
    pub fn doas(&self, mut opts: DoasOptions) -> Result<Context> {
        if let Some(via) = opts.common.via.take() {
            return connect_via(self, &via, Method::Doas(opts));
        }
        let launch = Launch {
            argv: vec![
                opts.doas_path.clone().into(),
                "-u".into(),
                opts.username.clone().into(),
                "--".into(),
                "/bin/sh".into(),
                "-c".into(),
            ],
            first_stage: FirstStageArg::Script,
            cache_dir: opts.common.cache_dir.clone(),
            stdio: StdioMode::Tty,
            prompts: Some(Box::new(PasswordDialogue::new(
                "doas",
                &opts.username,
                opts.password.clone(),
                &[&opts.password_prompt],
                &opts.incorrect_prompts,
                &["operation not permitted"],
            ))),
        };
        spawn::connect(
            self,
            spawn::Common::new("doas", &opts.common, Some(&opts.username)),
            launch,
        )
    }
}
