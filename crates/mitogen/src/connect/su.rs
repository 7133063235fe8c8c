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

use super::method::{common_field, Method};
use super::options::{become_builders, common_builders, BecomeOptions, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use super::stdio::StdioMode;
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::su`] (Mitogen's `su()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::SuOptions::new().username("deploy").password("s3cret");
/// assert!(!format!("{opts:?}").contains("s3cret")); // a Password is never shown
/// assert_eq!(opts.become_.username, "deploy");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuOptions {
    /// The su program (default `su`).
    pub su_path: String,
    /// Who to become and how to answer the password prompt (default
    /// `root`; prompt `password:`; wrong password: `su: sorry`, `su: authentication failure`).
    pub become_: BecomeOptions,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for SuOptions {
    fn default() -> Self {
        SuOptions {
            su_path: "su".into(),
            become_: BecomeOptions::with_prompts(
                "password:",
                &["su: sorry", "su: authentication failure"],
            ),
            common: CommonOptions::default(),
        }
    }
}

impl SuOptions {
    /// Every default: become `root`.
    pub fn new() -> SuOptions {
        SuOptions::default()
    }

    /// The su program to run (default `su`).
    pub fn su_path(mut self, path: impl Into<String>) -> Self {
        self.su_path = path.into();
        self
    }

    become_builders!();
    common_builders!();
}

impl Method for SuOptions {
    const NAME: &'static str = "su";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.become_.username.clone())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        let b = &self.become_;
        let argv = vec![self.su_path.as_str(), &b.username, "-c"];
        Ok(Launch::shell(argv, FirstStageArg::CommandLine)
            .stdio(StdioMode::Tty)
            .prompts(b.dialogue("su", &[])))
    }
}

impl Router {
    /// Start a context as another user through su (Mitogen's `Router.su`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what su printed.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let ctx = router.su(mitogen::SuOptions::new().username("deploy")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn su(&self, opts: SuOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
