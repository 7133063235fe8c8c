//! Trust boundary of the connection methods: what a host name, a user name
//! or a password can do. L5: a host or user name is never read as an ssh
//! option. L8: a password never shows in `Debug` output, error texts or
//! logs. Own binary: installs a global log capture.

mod common;
mod logs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mitogen::{
    Context, DoasOptions, Error, LocalOptions, Password, Router, SshOptions, StreamError,
    SuOptions, SudoOptions,
};
use mitogen_testkit::fixture::{self, USER_A, USER_B, USER_NOPW};

/// Paths of the debug logs this context has open.
#[mitogen::remote]
fn my_debug_logs() -> Vec<String> {
    logs::open_debug_logs()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// An `ssh` that records its arguments in `record` and fails.
fn fake_ssh(dir: &Path, record: &Path) -> String {
    let path = dir.join("ssh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\necho 'ssh: fake' >&2\nexit 255\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

fn expect_invalid(r: mitogen::Result<Context>, needle: &str) {
    match r {
        Err(Error::Stream(StreamError::InvalidOptions(text))) => {
            assert!(text.contains(needle), "{text}")
        }
        Err(other) => panic!("expected InvalidOptions naming {needle}, got {other}"),
        Ok(c) => panic!(
            "expected InvalidOptions naming {needle}, got context {}",
            c.name()
        ),
    }
}

#[test]
fn l5_ssh_host_or_user_starting_with_dash_is_refused() {
    events(); // installed before any router installs the default subscriber
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("argv");
    let ssh_path = fake_ssh(dir.path(), &record);
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let hostile = "-oProxyCommand=touch /tmp/l5-pwned";
        let mut o = SshOptions::new(hostile);
        o.ssh_path = ssh_path.clone();
        expect_invalid(router.ssh(o.clone()), hostile);
        // Through a relay too: refused here, before the request travels.
        o.common.via = Some(relay.clone());
        expect_invalid(router.ssh(o), hostile);
        let mut o = SshOptions::new("web1");
        o.ssh_path = ssh_path.clone();
        o.username = Some("-oProxyCommand=x".into());
        expect_invalid(router.ssh(o), "-oProxyCommand=x");
        assert!(!record.exists(), "ssh was never run");

        // A valid host does run ssh, with "--" before the host.
        let mut o = SshOptions::new("web1");
        o.ssh_path = ssh_path.clone();
        assert!(router.ssh(o).is_err(), "the fake ssh fails");
        let argv = std::fs::read_to_string(&record).unwrap();
        assert!(argv.contains(" -- web1 "), "{argv}");

        assert_eq!(relay.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();
}

/// Passwords used below; none may appear in any output.
const SECRETS: [&str; 3] = ["l8-Secret-Debug", "l8-Wrong-Sudo-Pw", "l8-Wrong-Su-Pw"];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the password {s}: {text}");
    }
}

fn expect_password_error(r: mitogen::Result<Context>, what: &str) -> Error {
    match r {
        Err(e @ Error::Password(_)) => e,
        Err(other) => panic!("{what}: expected PasswordError, got {other}"),
        Ok(c) => panic!("{what}: expected PasswordError, got context {}", c.name()),
    }
}

/// Every event of this process, installed once (before any router would
/// install the default subscriber).
fn events() -> &'static mitogen::Latch<String> {
    static EVENTS: std::sync::OnceLock<mitogen::Latch<String>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| logs::capture(tracing::Level::TRACE))
}

#[test]
fn l8_password_never_in_debug_or_errors() {
    let events = events();
    let pw = || Some(Password::from(SECRETS[0]));
    let mut ssh = SshOptions::new("web1");
    ssh.password = pw();
    let sudo = SudoOptions::new().password(SECRETS[0]);
    let su = SuOptions::new().password(SECRETS[0]);
    let doas = DoasOptions::new().password(SECRETS[0]);
    for text in [
        format!("{ssh:?}"),
        format!("{sudo:?}"),
        format!("{su:?}"),
        format!("{doas:?}"),
        format!("{:#?}", pw()),
    ] {
        assert!(text.contains("<redacted>"), "{text}");
        assert_no_secret("Debug", &text);
    }
    assert_eq!(ssh.password.as_ref().unwrap().expose(), SECRETS[0]);

    if !fixture::ready_or_skip("l8_password_never_in_debug_or_errors", fixture::available()) {
        return;
    }
    Router::with(|router| {
        // A context as a fixture user, logging at debug level (its events
        // are forwarded here; it also writes its own debug log).
        let a = router
            .sudo(
                SudoOptions::new()
                    .username(USER_A.name)
                    .debug(true)
                    .forward_level(tracing::Level::DEBUG),
            )
            .unwrap();
        let mut sudo = SudoOptions::new()
            .username(USER_NOPW.name)
            .password(SECRETS[1]);
        sudo.common.via = Some(a.clone());
        let mut su = SuOptions::new().username(USER_B.name).password(SECRETS[2]);
        su.common.via = Some(a.clone());
        for (what, result) in [("sudo", router.sudo(sudo)), ("su", router.su(su))] {
            let e = expect_password_error(result, what);
            assert!(e.to_string().contains("incorrect password"), "{e}");
            assert_no_secret(&format!("{what} error Display"), &e.to_string());
            assert_no_secret(&format!("{what} error Debug"), &format!("{e:?}"));
        }

        // The tree keeps working; then nothing logged, here or in the
        // context's own debug log, shows a password.
        assert_eq!(a.call(whoami::remote, ()).unwrap(), USER_A.name);
        let logs = a.call(my_debug_logs::remote, ()).unwrap();
        assert_eq!(logs.len(), 1, "{logs:?}");
        let text = std::fs::read_to_string(&logs[0]).unwrap();
        // `HH:MM:SS.mmm D …`: the default format's debug lines.
        assert!(
            text.lines().any(|l| l.get(12..15) == Some(" D ")),
            "the debug log has debug events:\n{text}"
        );
        assert_no_secret(&logs[0], &text);
    })
    .unwrap();
    let mut logged = 0;
    while let Ok(line) = events.try_get() {
        assert_no_secret("a log event", &line);
        logged += 1;
    }
    assert!(logged > 0, "log events were captured");
}
