//! Reading what a connection program prints before the bootstrap: typing
//! passwords at prompts, and turning failures into precise errors.

use crate::error::{Error, PasswordError};

/// What a method does with the program's output.
pub(crate) trait Prompts: Send {
    /// `text` is everything printed since the last answer (terminal,
    /// stderr and non-marker stdout). Return what to type, if anything.
    ///
    /// # Errors
    /// A precise error (wrong password, refused) that ends the attempt.
    fn on_output(&mut self, text: &str) -> Result<Option<String>, Error>;

    /// The program ended before the child said hello: the most precise
    /// error its `output` allows, or `None` for the generic one.
    fn on_exit(&self, output: &str) -> Option<Error>;
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
    pub password: Option<String>,
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
        password: Option<String>,
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
            output: output.trim().to_string(),
        }
        .into()
    }

    fn incorrect_in(&self, lower: &str) -> bool {
        self.incorrect.iter().any(|p| lower.contains(p.as_str()))
    }
}

impl Prompts for PasswordDialogue {
    fn on_output(&mut self, text: &str) -> Result<Option<String>, Error> {
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
                reason: format!("{} refused ({r})", self.method),
                output: text.trim().to_string(),
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
                Ok(Some(format!("{p}\n")))
            }
        }
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
