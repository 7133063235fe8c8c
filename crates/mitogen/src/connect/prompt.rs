//! Reading what a connection program prints before the bootstrap: typing
//! passwords at prompts, and turning failures into precise errors. Holds
//! the [`Password`] type, which never shows its text.

use serde::{Deserialize, Serialize};

use crate::error::{ConnectFailure, Error, PasswordError};

/// A password for a connection method, typed at the program's prompt and
/// never shown: its `Debug` prints `Password(<redacted>)`, it has no
/// `Display`, and error texts built from a program's output have it
/// replaced by `<redacted>`. It serializes as a plain string (it travels
/// to `via` contexts inside the connection request), and its bytes are
/// overwritten when it is dropped (best effort: copies made before, such
/// as the text it was built from, are not).
///
/// # Examples
/// ```
/// let opts = mitogen::SudoOptions::new().password("s3cret");
/// assert!(!format!("{opts:?}").contains("s3cret"));
/// assert_eq!(opts.become_.password.unwrap().expose(), "s3cret");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// The password's text, to type it or hand it on.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the password replaced by `<redacted>`.
    pub(crate) fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "<redacted>")
        }
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Password {
        Password(s.to_string())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Password {
        Password(s)
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        // Keep the writes: the buffer is "used" after them.
        std::hint::black_box(&bytes);
    }
}

/// `output`, trimmed, with `password` (if any) redacted: for error texts.
pub(crate) fn scrub(password: Option<&Password>, output: &str) -> String {
    let output = output.trim();
    password.map_or_else(|| output.to_string(), |p| p.redact(output))
}

/// `e` with the program output it quotes passed through `p.scrub`, so a
/// password the far side echoed never reaches an error text.
pub(crate) fn scrub_error(e: Error, p: &dyn Prompts) -> Error {
    use crate::error::{StreamError, TimeoutError};
    match e {
        Error::Stream(StreamError::Bootstrap {
            name,
            reason,
            output,
        }) => StreamError::Bootstrap {
            name,
            reason: p.scrub(&reason),
            output: p.scrub(&output),
        }
        .into(),
        Error::Stream(StreamError::VersionSkew { name, detail }) => StreamError::VersionSkew {
            name,
            detail: p.scrub(&detail),
        }
        .into(),
        Error::Timeout(TimeoutError { waited, what }) => TimeoutError {
            waited,
            what: p.scrub(&what),
        }
        .into(),
        other => other,
    }
}

/// What a method does with the program's output.
pub(crate) trait Prompts: Send {
    /// `text` is what the program printed on the terminal it prompts on and
    /// on stderr since the last answer (the last few KiB); never the
    /// target's stdout, except in Tty mode before the first first-stage
    /// marker, where stdout is that terminal. Return what to type, if anything.
    ///
    /// # Errors
    /// A precise error (wrong password, refused) that ends the attempt.
    fn on_output(&mut self, text: &str) -> Result<Option<Password>, Error>;

    /// The program ended before the child said hello: the most precise
    /// error its `output` allows, or `None` for the generic one.
    fn on_exit(&self, output: &str) -> Option<Error>;

    /// The program ended before the child said hello and `on_exit` found
    /// nothing precise: the cause its `output` names, in its own words
    /// (ssh's "Connection refused"), if any.
    fn failure(&self, output: &str) -> Option<ConnectFailure> {
        let _ = output;
        None
    }

    /// `text` (program output quoted in an error) with any secret this
    /// dialogue knows redacted.
    fn scrub(&self, text: &str) -> String {
        text.to_string()
    }
}

/// Words for "password" in the prompts of common translations.
const PASSWORD_WORDS: &[&str] = &[
    "password",
    "passwort",
    "contraseña",
    "mot de passe",
    "senha",
    "parola",
    "wachtwoord",
    "lösenord",
    "hasło",
    "heslo",
    "jelszó",
    "пароль",
    "密码",
    "密碼",
    "パスワード",
    "암호",
    "비밀번호",
    "passphrase",
    "passcode",
];

/// `true` when the last line of `text` looks like a password prompt: it
/// names a password (in any of several languages) and ends with a colon.
pub(crate) fn is_password_prompt(text: &str) -> bool {
    let last = text
        .trim_end()
        .rsplit(['\n', '\r'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    (last.ends_with(':') || last.ends_with('：')) && PASSWORD_WORDS.iter().any(|w| last.contains(w))
}

/// The usual dialogue of sudo, su and doas: one password prompt, and
/// messages that mean the password was wrong.
pub(crate) struct PasswordDialogue {
    pub method: &'static str,
    pub username: String,
    pub password: Option<Password>,
    /// Extra prompt strings (lowercase) besides the generic detection.
    pub prompts: Vec<String>,
    /// Strings (lowercase) that mean the password was refused.
    pub incorrect: Vec<String>,
    /// Strings (lowercase) that mean the method refuses outright.
    pub refused: Vec<String>,
    pub typed: bool,
}

impl PasswordDialogue {
    /// A dialogue for becoming `username`; texts are compared lowercase.
    pub(crate) fn new(
        method: &'static str,
        username: &str,
        password: Option<Password>,
        prompts: &[impl AsRef<str>],
        incorrect: &[impl AsRef<str>],
        refused: &[&str],
    ) -> PasswordDialogue {
        PasswordDialogue {
            method,
            username: username.to_string(),
            password,
            prompts: prompts.iter().map(|p| p.as_ref().to_lowercase()).collect(),
            incorrect: incorrect
                .iter()
                .map(|p| p.as_ref().to_lowercase())
                .collect(),
            refused: refused.iter().map(|p| p.to_lowercase()).collect(),
            typed: false,
        }
    }

    fn error(&self, reason: String, output: &str) -> Error {
        PasswordError {
            method: self.method.into(),
            reason,
            output: scrub(self.password.as_ref(), output),
        }
        .into()
    }

    fn incorrect_in(&self, lower: &str) -> bool {
        self.incorrect.iter().any(|p| lower.contains(p.as_str()))
    }
}

impl Prompts for PasswordDialogue {
    fn on_output(&mut self, text: &str) -> Result<Option<Password>, Error> {
        let lower = text.to_lowercase();
        if self.typed && self.incorrect_in(&lower) {
            return Err(self.error(
                format!("incorrect password for user {}", self.username),
                text,
            ));
        }
        if let Some(r) = self.refused.iter().find(|r| lower.contains(r.as_str())) {
            return Err(crate::error::StreamError::Bootstrap {
                name: self.username.clone(),
                reason: format!(
                    "{}: {} refused ({r})",
                    ConnectFailure::PermissionDenied,
                    self.method
                ),
                output: scrub(self.password.as_ref(), text),
            }
            .into());
        }
        let prompted = is_password_prompt(text)
            || self
                .prompts
                .iter()
                .any(|p| lower.trim_end().ends_with(p.trim_end()));
        if !prompted {
            return Ok(None);
        }
        if self.typed {
            return Err(self.error(
                format!("incorrect password for user {}", self.username),
                text,
            ));
        }
        match &self.password {
            None => Err(self.error(
                format!(
                    "a password is required for user {} but none was given",
                    self.username
                ),
                text,
            )),
            Some(p) => {
                self.typed = true;
                Ok(Some(Password(format!("{}\n", p.expose()))))
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        scrub(self.password.as_ref(), text)
    }

    fn on_exit(&self, output: &str) -> Option<Error> {
        let lower = output.to_lowercase();
        if self.incorrect_in(&lower) {
            return Some(self.error(
                format!("incorrect password for user {}", self.username),
                output,
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_in_several_languages() {
        assert!(is_password_prompt("[sudo] password for bob: "));
        assert!(is_password_prompt("noise\nPasswort: "));
        assert!(is_password_prompt("bob@host's password:"));
        assert!(is_password_prompt("doas (bob@h) password:"));
        assert!(is_password_prompt("Пароль:"));
        assert!(!is_password_prompt("your password will expire soon\n"));
        assert!(!is_password_prompt("Password changed.\n$ "));
    }

    #[test]
    fn dialogue_types_once_then_reports_wrong_password() {
        let mut d = PasswordDialogue {
            method: "su",
            username: "bob".into(),
            password: Some("pw".into()),
            prompts: vec![],
            incorrect: vec!["su: authentication failure".into()],
            refused: vec![],
            typed: false,
        };
        assert_eq!(d.on_output("Password: ").unwrap(), Some("pw\n".into()));
        let e = d.on_output("\nsu: Authentication failure\n").unwrap_err();
        assert!(
            e.to_string().contains("incorrect password for user bob"),
            "{e}"
        );
    }

    #[test]
    fn l8_echoed_password_is_scrubbed_from_bootstrap_errors() {
        let d = PasswordDialogue::new(
            "su",
            "bob",
            Some("hunter2".into()),
            &["password:"],
            &[] as &[&str],
            &[],
        );
        let e = crate::error::StreamError::Bootstrap {
            name: "su.bob".into(),
            reason: "the connection closed before the child started".into(),
            output: "Password: hunter2\nsh: hunter2: not found".into(),
        };
        let text = format!("{:?}", scrub_error(e.into(), &d));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>: not found"), "{text}");
    }

    #[test]
    fn password_is_redacted_everywhere_but_the_answer() {
        let p = Password::from("hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(
            mitogen_wire::encode(&p).unwrap(),
            mitogen_wire::encode("hunter2").unwrap(),
            "serialized as a plain string"
        );
        let back: Password = mitogen_wire::decode(&mitogen_wire::encode(&p).unwrap()).unwrap();
        assert_eq!(back.expose(), "hunter2");
        let mut d =
            PasswordDialogue::new("su", "bob", Some(p), &["password:"], &["su: sorry"], &[]);
        assert_eq!(d.on_output("Password:").unwrap(), Some("hunter2\n".into()));
        // The terminal echoed it back before the refusal.
        let e = d.on_output("hunter2\r\nsu: Sorry\n").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        assert!(e.to_string().contains("<redacted>"), "{e}");
    }

    #[test]
    fn dialogue_without_password() {
        let mut d = PasswordDialogue {
            method: "sudo",
            username: "root".into(),
            password: None,
            prompts: vec![],
            incorrect: vec![],
            refused: vec![],
            typed: false,
        };
        let e = d.on_output("[sudo] password for bob: ").unwrap_err();
        assert!(matches!(e, Error::Password(_)));
        assert!(e.to_string().contains("none was given"));
    }

    #[test]
    fn pwfeedback_asterisks_and_custom_prompts() {
        let mut d = PasswordDialogue::new(
            "sudo",
            "root",
            Some("pw".into()),
            &["mitogen-sudo-password:"],
            &["sorry, try again"],
            &[],
        );
        // A site's own passprompt, translated: detected by the generic rule.
        assert_eq!(
            d.on_output("Kennwort für bob eingeben, Passwort:").unwrap(),
            Some("pw\n".into())
        );
        // pwfeedback echoes asterisks, then the command runs: no second answer.
        assert_eq!(d.on_output("**\n").unwrap(), None);
        let mut d = PasswordDialogue::new(
            "sudo",
            "root",
            Some("pw".into()),
            &["mitogen-sudo-password:"],
            &[""; 0],
            &[],
        );
        assert!(d.on_output("mitogen-sudo-password: ").unwrap().is_some());
    }
}
