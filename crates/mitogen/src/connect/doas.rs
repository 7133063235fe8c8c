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

use super::method::{common_field, Method};
use super::options::{become_builders, common_builders, BecomeOptions, CommonOptions};
use super::spawn::{FirstStageArg, Launch};
use super::stdio::StdioMode;
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// Options of [`Router::doas`] (Mitogen's `doas()` arguments).
///
/// # Examples
/// ```
/// let opts = mitogen::DoasOptions::new().username("deploy").password("s3cret");
/// assert!(!format!("{opts:?}").contains("s3cret")); // a Password is never shown
/// assert_eq!(opts.become_.username, "deploy");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoasOptions {
    /// The doas program (default `doas`).
    pub doas_path: String,
    /// Who to become and how to answer the password prompt (default
    /// `root`; prompt `password:`; wrong password: `doas: authentication failed`).
    pub become_: BecomeOptions,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl Default for DoasOptions {
    fn default() -> Self {
        DoasOptions {
            doas_path: "doas".into(),
            become_: BecomeOptions::with_prompts("password:", &["doas: authentication failed"]),
            common: CommonOptions::default(),
        }
    }
}

impl DoasOptions {
    /// Every default: become `root`.
    pub fn new() -> DoasOptions {
        DoasOptions::default()
    }

    /// The doas program to run (default `doas`).
    pub fn doas_path(mut self, path: impl Into<String>) -> Self {
        self.doas_path = path.into();
        self
    }

    become_builders!();
    common_builders!();
}

impl Method for DoasOptions {
    const NAME: &'static str = "doas";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.become_.username.clone())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        let b = &self.become_;
        let argv = vec![
            self.doas_path.as_str(),
            "-u",
            &b.username,
            "--",
            "/bin/sh",
            "-c",
        ];
        Ok(Launch::shell(argv, FirstStageArg::Script)
            .stdio(StdioMode::Tty)
            .prompts(b.dialogue("doas", &["operation not permitted"])))
    }
}

impl Router {
    /// Start a context as another user through doas (Mitogen's `Router.doas`).
    ///
    /// # Errors
    /// [`Error::Password`](crate::Error::Password), or
    /// [`Error::Stream`](crate::Error::Stream) with what doas printed.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let ctx = router.doas(mitogen::DoasOptions::new().username("deploy")).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn doas(&self, opts: DoasOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}
