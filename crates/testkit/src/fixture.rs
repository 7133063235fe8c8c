//! The machine fixture `scripts/fixture/setup.sh` prepares: test users with
//! known passwords, sudoers and doas rules (matrix in `docs/testing.md`).
//!
//! Tests that need it call [`available`] (or [`crate::sshd::Sshd::available`])
//! through [`ready_or_skip`], which prints `SKIP <test>: <reason>` and lets
//! the test return early. With `MITOGEN_REQUIRE_FIXTURE=1` in the
//! environment a missing fixture fails the test instead, so CI can't skip
//! silently.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fixture version this crate expects; `setup.sh` writes its own to
/// [`STAMP`]. Bump both together. A newer fixture is accepted: versions
/// only ever add to the machine.
pub const VERSION: u32 = 2;

/// File `setup.sh` writes last, holding its [`VERSION`].
pub const STAMP: &str = "/etc/mitogen-test-fixture";

/// Environment variable that turns skips into failures.
pub const REQUIRE_ENV: &str = "MITOGEN_REQUIRE_FIXTURE";

/// A test account created by `setup.sh`. All have home directories and
/// `/bin/sh` as login shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: &'static str,
    /// Password, or `None` for a locked account (no usable password).
    pub password: Option<&'static str>,
}

/// sudo: no password as [`USER_B`], own password as [`USER_NOPW`];
/// doas: no password as [`USER_B`], own password as [`USER_NOPW`].
pub const USER_A: User = User {
    name: "mitogen-a",
    password: Some("apass"),
};
/// Noisy logins: `~/.profile` prints [`PROFILE_NOISE`] and a banner; sudo
/// lectures before every password prompt. sudo and doas: own password as
/// [`USER_A`].
pub const USER_B: User = User {
    name: "mitogen-b",
    password: Some("bpass"),
};
/// Locked password; no sudo or doas rules.
pub const USER_NOPW: User = User {
    name: "mitogen-nopw",
    password: None,
};
/// sudo `requiretty`: no password as [`USER_B`], own password as
/// [`USER_A`], both only from a terminal.
pub const USER_TTY: User = User {
    name: "mitogen-tty",
    password: Some("ttypass"),
};
/// sudo `targetpw`: may become [`USER_A`] or [`USER_B`] with *their*
/// password.
pub const USER_TPW: User = User {
    name: "mitogen-tpw",
    password: Some("tpwpass"),
};

/// Every fixture user.
pub const USERS: [User; 5] = [USER_A, USER_B, USER_NOPW, USER_TTY, USER_TPW];

/// A test account whose login shell is [`ShellUser::shell`]: key login
/// only (locked password), quiet home directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellUser {
    /// Login name.
    pub name: &'static str,
    /// Login shell, as in `/etc/passwd` (and `/etc/shells`).
    pub shell: &'static str,
}

/// One user per common login shell: sshd runs the first stage's command
/// line through each (`<shell> -c "sh -c '…'"`). `ash` is busybox's, through
/// the symlink `/usr/local/bin/ash`.
pub const SHELL_USERS: [ShellUser; 4] = [
    ShellUser {
        name: "mitogen-dash",
        shell: "/bin/dash",
    },
    ShellUser {
        name: "mitogen-bash",
        shell: "/bin/bash",
    },
    ShellUser {
        name: "mitogen-ash",
        shell: "/usr/local/bin/ash",
    },
    ShellUser {
        name: "mitogen-tcsh",
        shell: "/usr/bin/tcsh",
    },
];

/// First line [`USER_B`]'s `~/.profile` prints in login shells.
pub const PROFILE_NOISE: &str = "hello from .profile";

/// `Ok` when the machine fixture is in place (root, `setup.sh` of this
/// [`VERSION`] has run, sudo and doas present); otherwise why not.
pub fn available() -> Result<(), String> {
    if !crate::is_root() {
        return Err("needs root (the fixture switches users with sudo, su and doas)".into());
    }
    let hint = "run scripts/fixture/setup.sh as root";
    match std::fs::read_to_string(STAMP) {
        Err(_) => {
            return Err(format!(
                "machine fixture not set up ({STAMP} missing): {hint}"
            ))
        }
        Ok(s) if s.trim().parse::<u32>().map_or(true, |v| v < VERSION) => {
            return Err(format!(
                "machine fixture is version {} but the tests expect {VERSION} or newer: {hint}",
                s.trim()
            ))
        }
        Ok(_) => {}
    }
    for tool in [
        "/usr/bin/sudo",
        "/usr/bin/doas",
        "/bin/su",
        "/usr/sbin/runuser",
    ] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} missing: {hint}"));
        }
    }
    for user in USERS {
        if passwd_entry(user.name).is_none() {
            return Err(format!("user {} missing: {hint}", user.name));
        }
    }
    for user in SHELL_USERS {
        if passwd_entry(user.name).is_none() {
            return Err(format!("user {} missing: {hint}", user.name));
        }
        if !Path::new(user.shell).exists() {
            return Err(format!("login shell {} missing: {hint}", user.shell));
        }
    }
    Ok(())
}

/// `true` when `ready` is `Ok`. Otherwise prints `SKIP <test>: <reason>` to
/// stderr and returns `false` — or panics when [`REQUIRE_ENV`] is set to
/// anything but `0` or empty.
///
/// ```no_run
/// use mitogen_testkit::fixture;
/// if !fixture::ready_or_skip("sudo_works", fixture::available()) {
///     return;
/// }
/// ```
pub fn ready_or_skip(test: &str, ready: Result<(), String>) -> bool {
    match ready {
        Ok(()) => true,
        Err(reason) => {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(!required, "{test}: {reason} ({REQUIRE_ENV} is set)");
            eprintln!("SKIP {test}: {reason}");
            false
        }
    }
}

/// `(uid, gid, home)` of a local user from `/etc/passwd`.
pub fn passwd_entry(name: &str) -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string()))
        } else {
            None
        }
    })
}

/// `runuser -u <user> -- <program> <args>`: a command that runs as `user`
/// (from root; no password, no login shell). Add stdio and run it.
pub fn as_user(user: &str, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("/usr/sbin/runuser");
    cmd.args(["-u", user, "--", program]).args(args);
    cmd
}

/// Run `cmd` without a controlling terminal (in a new session), stdin
/// fed `input` then closed (or `/dev/null`), and collect its output. Kills
/// it and fails after `timeout`. For checking what sudo, doas and su do
/// when no terminal is present.
pub fn run_detached(
    cmd: &mut Command,
    input: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Output> {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // The program may exit without reading: ignore EPIPE.
        let _ = stdin.write_all(text.as_bytes());
    }
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{cmd:?} still running after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
