//! Checks that the machine fixture (`scripts/fixture/setup.sh`) and the
//! throwaway sshd behave as `docs/testing.md` promises, using the real
//! ssh, sudo, doas and su. Skips (`SKIP <test>: <reason>`) when not root or
//! when setup.sh has not been run.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use mitogen_testkit::fixture::{
    self, as_user, run_detached, USER_A, USER_B, USER_NOPW, USER_TPW, USER_TTY,
};
use mitogen_testkit::pty::PtyProcess;
use mitogen_testkit::silent::SilentPeer;
use mitogen_testkit::sshd::{Sshd, SshdOptions};
use mitogen_testkit::wait_for;

const T: Duration = Duration::from_secs(30);
const SUDO: &str = "/usr/bin/sudo";
const DOAS: &str = "/usr/bin/doas";
const SU: &str = "/bin/su";

fn machine(test: &str) -> bool {
    fixture::ready_or_skip(test, fixture::available())
}

fn sshd(test: &str) -> Option<Sshd> {
    if !fixture::ready_or_skip(test, Sshd::available()) {
        return None;
    }
    Some(Sshd::start().expect("start sshd"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run detached (no terminal), failing the test on a spawn error.
fn run(cmd: &mut Command, input: Option<&str>) -> Output {
    run_detached(cmd, input, T).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn assert_ok(out: &Output, stdout: &str, what: &str) {
    assert!(
        out.status.success() && text(&out.stdout) == stdout,
        "{what}: {}\nstdout {:?}\nstderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_fails(out: &Output, stderr_has: &str, what: &str) {
    assert!(
        !out.status.success() && text(&out.stderr).contains(stderr_has),
        "{what}: expected failure mentioning {stderr_has:?}, got {}\nstdout {:?}\nstderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn ssh(args: &[String], dest: &str, command: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/ssh");
    cmd.args(args).arg(dest).arg(command);
    cmd
}

/// ssh taking its password from an askpass script (no terminal needed).
fn ssh_with_password(sshd: &Sshd, user: &str, password: &str, command: &str) -> Output {
    let askpass = sshd.dir().join(format!("askpass-{user}-{password}"));
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = ssh(&sshd.ssh_password_args(), &sshd.destination(user), command);
    cmd.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force");
    run(&mut cmd, None)
}

#[test]
fn shell_users_log_in_with_their_own_shell() {
    if !machine("shell_users_log_in_with_their_own_shell") {
        return;
    }
    let shells = std::fs::read_to_string("/etc/shells").unwrap();
    for u in fixture::SHELL_USERS {
        let out = run(Command::new("getent").args(["passwd", u.name]), None);
        let line = text(&out.stdout);
        assert_eq!(
            line.trim_end().rsplit(':').next(),
            Some(u.shell),
            "{}: {line}",
            u.name
        );
        assert!(
            shells.lines().any(|l| l == u.shell),
            "{} missing from /etc/shells",
            u.shell
        );
        // The shell runs a -c command, as sshd will make it do.
        let out = run(&mut as_user(u.name, u.shell, &["-c", "echo ok"]), None);
        assert_ok(&out, "ok\n", &format!("{} -c as {}", u.shell, u.name));
    }
}

// ------------------------------------------------------------------- sshd

#[test]
fn ssh_key_login_works_for_root_and_every_user() {
    let Some(sshd) = sshd("ssh_key_login_works_for_root_and_every_user") else {
        return;
    };
    let names = std::iter::once("root")
        .chain(fixture::USERS.iter().map(|u| u.name))
        .chain(fixture::SHELL_USERS.iter().map(|u| u.name));
    for name in names {
        let out = run(
            &mut ssh(&sshd.ssh_key_args(), &sshd.destination(name), "id -un"),
            None,
        );
        assert_ok(&out, &format!("{name}\n"), &format!("key login as {name}"));
    }
    assert!(sshd.log().contains("Accepted publickey for mitogen-nopw"));
}

#[test]
fn ssh_password_login_works() {
    let Some(sshd) = sshd("ssh_password_login_works") else {
        return;
    };
    let out = ssh_with_password(&sshd, USER_A.name, "apass", "id -un");
    assert_ok(
        &out,
        "mitogen-a\n",
        &format!("password login\n{}", sshd.log()),
    );
    let out = ssh_with_password(&sshd, USER_B.name, "bpass", "echo $HOME");
    assert_ok(&out, "/home/mitogen-b\n", "password login as mitogen-b");
    let out = ssh_with_password(&sshd, USER_A.name, "wrong", "true");
    assert_fails(&out, "Permission denied", "wrong password");
}

#[test]
fn ssh_password_prompt_on_a_terminal() {
    let Some(sshd) = sshd("ssh_password_prompt_on_a_terminal") else {
        return;
    };
    let dest = sshd.destination(USER_A.name);
    let mut cmd = ssh(&sshd.ssh_password_args(), &dest, "id -un");
    let mut pty = PtyProcess::spawn(&mut cmd).unwrap();
    pty.answer_password(&format!("{dest}'s password: "), "apass", T)
        .unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(status.success(), "{status}: {output:?}\n{}", sshd.log());
    assert!(output.ends_with("mitogen-a\r\n"), "{output:?}");
}

#[test]
fn ssh_offers_publickey_and_password_only() {
    let Some(sshd) = sshd("ssh_offers_publickey_and_password_only") else {
        return;
    };
    let mut args = sshd.ssh_base_args();
    args.extend(["-o".into(), "BatchMode=yes".into()]);
    args.extend(["-o".into(), "PubkeyAuthentication=no".into()]);
    let out = run(
        &mut ssh(&args, &sshd.destination(USER_A.name), "true"),
        None,
    );
    assert_fails(&out, "Permission denied (publickey,password)", "batch mode");
}

#[test]
fn ssh_refuses_a_changed_host_key_and_an_unknown_host() {
    let Some(mut sshd) = sshd("ssh_refuses_a_changed_host_key_and_an_unknown_host") else {
        return;
    };
    let port = sshd.port();
    let first = sshd.known_hosts_line();
    sshd.restart_with_other_host_key().expect("restart");
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.known_hosts_line(), first);
    let dest = sshd.destination(USER_A.name);
    let out = run(&mut ssh(&sshd.ssh_key_args(), &dest, "true"), None);
    assert_fails(
        &out,
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "changed key",
    );

    // The current line makes it work again.
    let fresh = sshd.dir().join("known_hosts_fresh");
    std::fs::write(&fresh, format!("{}\n", sshd.known_hosts_line())).unwrap();
    // ssh takes the first value of an option: put ours first.
    let mut first_args = vec![
        "-o".to_string(),
        format!("UserKnownHostsFile={}", fresh.display()),
    ];
    first_args.extend(sshd.ssh_key_args());
    let out = run(&mut ssh(&first_args, &dest, "echo ok"), None);
    assert_ok(&out, "ok\n", "current host key");

    // No entry at all: strict checking refuses.
    let empty = sshd.dir().join("known_hosts_empty");
    std::fs::write(&empty, "").unwrap();
    let mut args = vec![
        "-o".to_string(),
        format!("UserKnownHostsFile={}", empty.display()),
    ];
    args.extend(sshd.ssh_key_args());
    let out = run(&mut ssh(&args, &dest, "true"), None);
    assert_fails(&out, "Host key verification failed", "unknown host");
}

#[test]
fn ssh_banner_is_printed_before_login() {
    if !fixture::ready_or_skip("ssh_banner_is_printed_before_login", Sshd::available()) {
        return;
    }
    let banner = "*** mitogen test banner ***\nline two of the banner\n";
    let sshd = Sshd::start_with(SshdOptions {
        banner: Some(banner.into()),
        ..Default::default()
    })
    .expect("start sshd");
    let out = run(
        &mut ssh(
            &sshd.ssh_key_args(),
            &sshd.destination(USER_B.name),
            "echo done",
        ),
        None,
    );
    assert_ok(&out, "done\n", "banner login");
    assert!(
        text(&out.stderr).contains(banner),
        "stderr {:?}",
        text(&out.stderr)
    );
}

/// Pids of processes whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            (std::fs::read(e.path().join("cmdline")).ok()? == want).then_some(pid)
        })
        .collect()
}

#[test]
fn sshd_drop_stops_server_and_sessions() {
    let Some(sshd) = sshd("sshd_drop_stops_server_and_sessions") else {
        return;
    };
    let port = sshd.port();
    let pid = sshd.pid().unwrap();
    // A duration no other test uses, to find the session's process.
    let argv = ["sleep", "7207"];
    let mut client = ssh(
        &sshd.ssh_key_args(),
        &sshd.destination(USER_A.name),
        &argv.join(" "),
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_for(T, "the session's command to start", || {
        !pids_running(&argv).is_empty()
    });
    let session = pids_running(&argv);
    drop(sshd);
    assert!(mitogen_testkit::process_gone(pid));
    wait_for(T, "the session's command to be killed", || {
        session.iter().all(|&p| mitogen_testkit::process_gone(p))
    });
    wait_for(T, "the ssh client to see its session end", || {
        client.try_wait().unwrap().is_some()
    });
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn silent_peer_accepts_and_says_nothing() {
    let peer = SilentPeer::start().unwrap();
    let mut stream = TcpStream::connect(peer.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    let err = stream.read(&mut buf).expect_err("silence");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    wait_for(T, "accept", || peer.accepted() == 1);
    let port = peer.port();
    drop(peer);
    stream.set_read_timeout(Some(T)).unwrap();
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "closed on drop");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

// ------------------------------------------------------------------- sudo

#[test]
fn sudo_nopasswd_a_to_b() {
    if !machine("sudo_nopasswd_a_to_b") {
        return;
    }
    let out = run(
        &mut as_user(USER_A.name, SUDO, &["-n", "-u", "mitogen-b", "id", "-un"]),
        None,
    );
    assert_ok(&out, "mitogen-b\n", "sudo -n a->b");
}

#[test]
fn sudo_own_password_a_to_nopw() {
    if !machine("sudo_own_password_a_to_nopw") {
        return;
    }
    let args = ["-u", "mitogen-nopw", "id", "-un"];
    let out = run(
        &mut as_user(USER_A.name, SUDO, &[&["-n"], &args[..]].concat()),
        None,
    );
    assert_fails(&out, "a password is required", "sudo -n a->nopw");
    let stdin_args = [&["-S", "-p", "PROMPT:"], &args[..]].concat();
    let out = run(
        &mut as_user(USER_A.name, SUDO, &stdin_args),
        Some("apass\n"),
    );
    assert_ok(&out, "mitogen-nopw\n", "sudo -S a->nopw");
    let out = run(&mut as_user(USER_A.name, SUDO, &stdin_args), Some("bad\n"));
    assert_fails(&out, "incorrect password", "sudo -S wrong password");
}

#[test]
fn sudo_requiretty_refuses_without_a_terminal() {
    if !machine("sudo_requiretty_refuses_without_a_terminal") {
        return;
    }
    let args = ["-n", "-u", "mitogen-b", "id", "-un"];
    let out = run(&mut as_user(USER_TTY.name, SUDO, &args), None);
    assert_fails(&out, "you must have a tty", "requiretty without a tty");

    let pty = PtyProcess::spawn(&mut as_user(USER_TTY.name, SUDO, &args)).unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(status.success(), "{status}: {output:?}");
    assert_eq!(output.trim(), "mitogen-b");
}

#[test]
fn sudo_requiretty_with_password_on_a_terminal() {
    if !machine("sudo_requiretty_with_password_on_a_terminal") {
        return;
    }
    let mut pty = PtyProcess::spawn(&mut as_user(
        USER_TTY.name,
        SUDO,
        &["-u", "mitogen-a", "id", "-un"],
    ))
    .unwrap();
    pty.answer_password("[sudo] password for mitogen-tty: ", "ttypass", T)
        .unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(status.success(), "{status}: {output:?}");
    assert!(output.ends_with("mitogen-a\r\n"), "{output:?}");
}

#[test]
fn sudo_targetpw_asks_for_the_target_password() {
    if !machine("sudo_targetpw_asks_for_the_target_password") {
        return;
    }
    let args = ["-S", "-u", "mitogen-a", "id", "-un"];
    let out = run(&mut as_user(USER_TPW.name, SUDO, &args), Some("apass\n"));
    assert_ok(&out, "mitogen-a\n", "targetpw with apass");
    assert!(text(&out.stderr).contains("password for mitogen-a"));
    let out = run(&mut as_user(USER_TPW.name, SUDO, &args), Some("tpwpass\n"));
    assert_fails(&out, "incorrect password", "targetpw with own password");
}

#[test]
fn sudo_lectures_b_every_time_and_denies_unlisted_targets() {
    if !machine("sudo_lectures_b_every_time_and_denies_unlisted_targets") {
        return;
    }
    for _ in 0..2 {
        let out = run(
            &mut as_user(USER_B.name, SUDO, &["-S", "-u", "mitogen-a", "id", "-un"]),
            Some("bpass\n"),
        );
        assert_ok(&out, "mitogen-a\n", "b->a with bpass");
        assert!(
            text(&out.stderr).contains("usual lecture"),
            "{:?}",
            text(&out.stderr)
        );
    }
    // Denial is only reported after authentication.
    let out = run(
        &mut as_user(USER_B.name, SUDO, &["-S", "-u", "mitogen-nopw", "true"]),
        Some("bpass\n"),
    );
    assert_fails(&out, "is not allowed to execute", "b->nopw");
    let out = run(&mut as_user(USER_NOPW.name, SUDO, &["-n", "true"]), None);
    assert_fails(&out, "a password is required", "nopw has no rules");
}

// ------------------------------------------------------------------- doas

#[test]
fn doas_nopass_a_to_b_and_root() {
    if !machine("doas_nopass_a_to_b_and_root") {
        return;
    }
    let args = ["-n", "-u", "mitogen-b", "id", "-un"];
    let out = run(&mut as_user(USER_A.name, DOAS, &args), None);
    assert_ok(&out, "mitogen-b\n", "doas a->b");
    let out = run(Command::new(DOAS).args(args), None);
    assert_ok(&out, "mitogen-b\n", "doas root->b");
}

#[test]
fn doas_password_needs_a_terminal() {
    if !machine("doas_password_needs_a_terminal") {
        return;
    }
    let args = ["-u", "mitogen-a", "id", "-un"];
    let out = run(
        &mut as_user(USER_B.name, DOAS, &[&["-n"], &args[..]].concat()),
        None,
    );
    assert_fails(&out, "Authentication required", "doas -n b->a");
    // A password on stdin is not read: doas wants a terminal.
    let out = run(&mut as_user(USER_B.name, DOAS, &args), Some("bpass\n"));
    assert_fails(&out, "Authentication failed", "doas b->a without a tty");

    let mut pty = PtyProcess::spawn(&mut as_user(USER_B.name, DOAS, &args)).unwrap();
    pty.answer_password("password: ", "bpass", T).unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(status.success(), "{status}: {output:?}");
    // opendoas starts its prompt with a carriage return.
    assert!(output.starts_with("\rdoas (mitogen-b@"), "{output:?}");
    assert!(output.ends_with("mitogen-a\r\n"), "{output:?}");

    let mut pty = PtyProcess::spawn(&mut as_user(USER_B.name, DOAS, &args)).unwrap();
    pty.answer_password("password: ", "wrong", T).unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(!status.success(), "{output:?}");
    assert!(output.contains("Authentication failed"), "{output:?}");
}

// --------------------------------------------------------------------- su

#[test]
fn su_from_a_to_b_asks_for_b_password() {
    if !machine("su_from_a_to_b_asks_for_b_password") {
        return;
    }
    let args = ["mitogen-b", "-c", "id -un"];
    let mut pty = PtyProcess::spawn(&mut as_user(USER_A.name, SU, &args)).unwrap();
    pty.answer_password("Password: ", "bpass", T).unwrap();
    let (status, output) = pty.wait(T).unwrap();
    assert!(status.success(), "{status}: {output:?}");
    assert!(output.ends_with("mitogen-b\r\n"), "{output:?}");

    // util-linux su also reads the password from a pipe.
    let out = run(&mut as_user(USER_A.name, SU, &args), Some("bpass\n"));
    assert_ok(&out, "mitogen-b\n", "su with the password on stdin");
    let out = run(&mut as_user(USER_A.name, SU, &args), Some("wrong\n"));
    assert_fails(&out, "Authentication failure", "su with a wrong password");
    // A locked account can't be reached with any password.
    let out = run(
        &mut as_user(USER_A.name, SU, &["mitogen-nopw", "-c", "true"]),
        Some("\n"),
    );
    assert_fails(&out, "Authentication failure", "su to a locked account");
}

#[test]
fn login_shells_of_b_are_noisy() {
    if !machine("login_shells_of_b_are_noisy") {
        return;
    }
    // Root's su asks nothing.
    let out = run(
        Command::new(SU).args(["-", "mitogen-b", "-c", "echo END"]),
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with(fixture::PROFILE_NOISE) && stdout.lines().count() > 3,
        "{stdout:?}"
    );
    assert!(stdout.ends_with("\nEND\n"), "{stdout:?}");
    // Not a login shell: quiet.
    let out = run(Command::new(SU).args(["mitogen-b", "-c", "echo END"]), None);
    assert_ok(&out, "END\n", "su without -");
}
