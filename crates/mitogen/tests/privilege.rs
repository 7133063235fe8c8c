//! sudo, su and doas against the real programs, with the fixture's users
//! and rules (docs/testing.md). The master runs as root; each test first
//! becomes a fixture user (root needs no password), then exercises the
//! method from there. Skips, saying why, without root or the fixture.

mod common;

use common::*;
use mitogen::{Context, DoasOptions, Error, Router, SuOptions, SudoOptions};
use mitogen_testkit::fixture::{self, USER_A, USER_B, USER_NOPW, USER_TPW, USER_TTY};

fn ready(test: &str) -> bool {
    fixture::ready_or_skip(test, fixture::available())
}

/// A context running as `user`, made with sudo from root.
fn become_user(router: &Router, user: &str) -> Context {
    let c = router
        .sudo(SudoOptions::new().username(user))
        .unwrap_or_else(|e| panic!("root → {user}: {e}"));
    assert_eq!(c.call(whoami::remote, ()).unwrap(), user);
    c
}

fn sudo_from(via: &Context, user: &str, password: Option<&str>) -> SudoOptions {
    let mut o = SudoOptions::new().username(user).via(via);
    o.become_.password = password.map(Into::into);
    o
}

fn expect_password_error(r: mitogen::Result<Context>, what: &str) -> mitogen::PasswordError {
    match r {
        Err(Error::Password(e)) => e,
        Err(other) => panic!("{what}: expected PasswordError, got {other}"),
        Ok(c) => panic!("{what}: expected PasswordError, got context {}", c.name()),
    }
}

#[test]
fn sudo_nopasswd_password_wrong_missing_requiretty_targetpw() {
    if !ready("sudo_nopasswd_password_wrong_missing_requiretty_targetpw") {
        return;
    }
    Router::with(|router| {
        let a = become_user(&router, USER_A.name);
        // NOPASSWD: a → b
        let b = router.sudo(sudo_from(&a, USER_B.name, None)).unwrap();
        assert_eq!(b.call(whoami::remote, ()).unwrap(), USER_B.name);
        // a → nopw needs a's own password
        let nopw = router
            .sudo(sudo_from(&a, USER_NOPW.name, Some("apass")))
            .unwrap();
        assert_eq!(nopw.call(whoami::remote, ()).unwrap(), USER_NOPW.name);
        let e = expect_password_error(
            router.sudo(sudo_from(&a, USER_NOPW.name, Some("wrong"))),
            "wrong password",
        );
        assert!(e.reason.contains("incorrect password"), "{e}");
        let e = expect_password_error(
            router.sudo(sudo_from(&a, USER_NOPW.name, None)),
            "no password",
        );
        assert!(e.reason.contains("none was given"), "{e}");

        // requiretty: satisfied by our terminal, with and without a password
        let tty = become_user(&router, USER_TTY.name);
        let b2 = router.sudo(sudo_from(&tty, USER_B.name, None)).unwrap();
        assert_eq!(b2.call(whoami::remote, ()).unwrap(), USER_B.name);
        let a2 = router
            .sudo(sudo_from(&tty, USER_A.name, Some("ttypass")))
            .unwrap();
        assert_eq!(a2.call(whoami::remote, ()).unwrap(), USER_A.name);

        // targetpw: the target's password
        let tpw = become_user(&router, USER_TPW.name);
        let a3 = router
            .sudo(sudo_from(&tpw, USER_A.name, Some("apass")))
            .unwrap();
        assert_eq!(a3.call(whoami::remote, ()).unwrap(), USER_A.name);
        let e = expect_password_error(
            router.sudo(sudo_from(&tpw, USER_A.name, Some("tpwpass"))),
            "own password under targetpw",
        );
        assert!(e.reason.contains("incorrect"), "{e}");
    })
    .unwrap();
}

#[test]
fn sudo_refusal_carries_sudo_words() {
    if !ready("sudo_refusal_carries_sudo_words") {
        return;
    }
    Router::with(|router| {
        let b = become_user(&router, USER_B.name);
        // b has no rule for nopw: sudo refuses after the (right) password.
        match router.sudo(sudo_from(&b, USER_NOPW.name, Some("bpass"))) {
            Err(Error::Stream(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains("not allowed") || text.contains("sudoers"),
                    "{text}"
                );
            }
            other => panic!("expected StreamError, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn sudo_args_unsupported_option_is_named() {
    Router::with(|router| {
        let e = router
            .sudo(SudoOptions::new().sudo_args(["-i"]))
            .unwrap_err();
        assert!(e.to_string().contains("unsupported option(s) -i"), "{e}");
    })
    .unwrap();
}

#[test]
fn su_right_wrong_and_missing_password() {
    if !ready("su_right_wrong_and_missing_password") {
        return;
    }
    Router::with(|router| {
        let a = become_user(&router, USER_A.name);
        let su = |password: Option<&str>| {
            let mut o = SuOptions::new().username(USER_B.name).via(&a);
            o.become_.password = password.map(Into::into);
            router.su(o)
        };
        let b = su(Some("bpass")).unwrap();
        assert_eq!(b.call(whoami::remote, ()).unwrap(), USER_B.name);
        let e = expect_password_error(su(Some("nope")), "su wrong password");
        assert!(e.reason.contains("incorrect"), "{e}");
        let e = expect_password_error(su(None), "su without password");
        assert!(e.reason.contains("none was given"), "{e}");
        // Root needs no password for su.
        let root_su = router.su(SuOptions::new().username(USER_A.name)).unwrap();
        assert_eq!(root_su.call(whoami::remote, ()).unwrap(), USER_A.name);
    })
    .unwrap();
}

#[test]
fn doas_nopass_password_wrong_and_missing() {
    if !ready("doas_nopass_password_wrong_and_missing") {
        return;
    }
    Router::with(|router| {
        let a = become_user(&router, USER_A.name);
        let doas = |via: &Context, user: &str, password: Option<&str>| {
            let mut o = DoasOptions::new().username(user).via(via);
            o.become_.password = password.map(Into::into);
            router.doas(o)
        };
        let b = doas(&a, USER_B.name, None).unwrap();
        assert_eq!(b.call(whoami::remote, ()).unwrap(), USER_B.name);
        // b → a needs b's password
        let a2 = doas(&b, USER_A.name, Some("bpass")).unwrap();
        assert_eq!(a2.call(whoami::remote, ()).unwrap(), USER_A.name);
        let e = expect_password_error(doas(&b, USER_A.name, Some("wrong")), "doas wrong");
        assert!(e.reason.contains("incorrect"), "{e}");
        let e = expect_password_error(doas(&b, USER_A.name, None), "doas none");
        assert!(e.reason.contains("none was given"), "{e}");
    })
    .unwrap();
}
