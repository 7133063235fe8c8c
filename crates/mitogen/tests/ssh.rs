//! The ssh method against a real, throw-away OpenSSH server on loopback.
//! Skips (saying why) unless `scripts/fixture/setup.sh` has run as root.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use mitogen::{CheckHostKeys, Error, Router, SshOptions, SuOptions, SudoOptions};
use mitogen_testkit::fixture::{self, USER_A, USER_B};
use mitogen_testkit::silent::SilentPeer;
use mitogen_testkit::sshd::{Sshd, SshdOptions, HOST};

fn ready(test: &str) -> bool {
    fixture::ready_or_skip(test, Sshd::available().and_then(|()| fixture::available()))
}

/// Options for `user` on `sshd`, checking host keys against `known_hosts`.
fn ssh(sshd: &Sshd, user: &str, known_hosts: &Path) -> SshOptions {
    let mut o = SshOptions::new(HOST);
    o.username = Some(user.into());
    o.port = Some(sshd.port());
    o.ssh_args = vec![
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
    ];
    o.common.connect_timeout = Duration::from_secs(20);
    o
}

fn with_key(mut o: SshOptions, sshd: &Sshd) -> SshOptions {
    o.identity_file = Some(sshd.client_key());
    o
}

fn with_password(mut o: SshOptions, password: &str) -> SshOptions {
    o.password = Some(password.into());
    o.ssh_args
        .extend(["-o".into(), "PubkeyAuthentication=no".into()]);
    o
}

#[test]
fn key_login_and_warm_reconnect_sends_no_binary() {
    if !ready("key_login_and_warm_reconnect_sends_no_binary") {
        return;
    }
    let sshd = Sshd::start().unwrap();
    Router::with(|router| {
        let o = with_key(ssh(&sshd, USER_A.name, &sshd.known_hosts_file()), &sshd);
        let first = router
            .ssh(o.clone())
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        let (is_master, ..) = first.call(identity::remote, ()).unwrap();
        assert!(!is_master);
        assert_eq!(first.call(add::remote, (2, 2)).unwrap(), 4);
        let after_first = router.binary_bytes_sent();
        let second = router.ssh(o).unwrap();
        assert_eq!(second.call(add::remote, (3, 3)).unwrap(), 6);
        assert_eq!(
            router.binary_bytes_sent(),
            after_first,
            "a warm reconnect sends no binary bytes"
        );
    })
    .unwrap();
}

#[test]
fn password_login_right_wrong_and_missing() {
    if !ready("password_login_right_wrong_and_missing") {
        return;
    }
    let sshd = Sshd::start().unwrap();
    let known = sshd.known_hosts_file();
    Router::with(|router| {
        let ok = router
            .ssh(with_password(ssh(&sshd, USER_A.name, &known), "apass"))
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        assert_eq!(ok.call(add::remote, (1, 2)).unwrap(), 3);

        match router.ssh(with_password(ssh(&sshd, USER_A.name, &known), "wrong")) {
            Err(Error::Password(e)) => assert!(e.reason.contains("refused"), "{e}"),
            other => panic!("expected PasswordError, got {other:?}"),
        }
        let mut none = ssh(&sshd, USER_A.name, &known);
        none.ssh_args
            .extend(["-o".into(), "PubkeyAuthentication=no".into()]);
        match router.ssh(none) {
            Err(Error::Password(e)) => assert!(e.reason.contains("none was given"), "{e}"),
            other => panic!("expected PasswordError, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn host_key_checking_modes() {
    if !ready("host_key_checking_modes") {
        return;
    }
    let mut sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    Router::with(|router| {
        // enforce + unknown key
        match router.ssh(with_key(ssh(&sshd, USER_A.name, &empty), &sshd)) {
            Err(Error::HostKey(e)) => assert!(e.reason.contains("not known"), "{e}"),
            other => panic!("expected HostKeyError, got {other:?}"),
        }
        // accept: recorded, then enforce works against the recorded key
        let recorded = dir.path().join("recorded");
        std::fs::write(&recorded, "").unwrap();
        let mut accept = with_key(ssh(&sshd, USER_A.name, &recorded), &sshd);
        accept.check_host_keys = CheckHostKeys::Accept;
        router
            .ssh(accept)
            .unwrap()
            .call(add::remote, (1, 1))
            .unwrap();
        assert!(std::fs::read_to_string(&recorded)
            .unwrap()
            .contains("ssh-ed25519"));
        router
            .ssh(with_key(ssh(&sshd, USER_A.name, &recorded), &sshd))
            .unwrap()
            .call(add::remote, (1, 1))
            .unwrap();

        // a changed key fails under enforce and accept; ignore still works
        sshd.restart_with_other_host_key().unwrap();
        let known = sshd.known_hosts_file();
        match router.ssh(with_key(ssh(&sshd, USER_A.name, &known), &sshd)) {
            Err(Error::HostKey(e)) => assert!(e.reason.contains("changed"), "{e}"),
            other => panic!("expected HostKeyError, got {other:?}"),
        }
        let mut accept = with_key(ssh(&sshd, USER_A.name, &known), &sshd);
        accept.check_host_keys = CheckHostKeys::Accept;
        assert!(matches!(router.ssh(accept), Err(Error::HostKey(_))));
        let mut ignore = with_key(ssh(&sshd, USER_A.name, &known), &sshd);
        ignore.check_host_keys = CheckHostKeys::Ignore;
        assert_eq!(
            router
                .ssh(ignore)
                .unwrap()
                .call(add::remote, (2, 5))
                .unwrap(),
            7
        );
    })
    .unwrap();
}

#[test]
fn silent_peer_times_out_within_connect_timeout() {
    if !ready("silent_peer_times_out_within_connect_timeout") {
        return;
    }
    let peer = SilentPeer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    Router::with(|router| {
        let mut o = SshOptions::new(HOST);
        o.port = Some(peer.port());
        o.check_host_keys = CheckHostKeys::Ignore;
        o.ssh_args = vec!["-F".into(), "/dev/null".into()];
        o.common.connect_timeout = Duration::from_secs(3);
        o.common.cache_dir = Some(dir.path().to_path_buf());
        let started = Instant::now();
        let e = router.ssh(o).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(e, Error::Timeout(_)),
            "expected TimeoutError, got {e}"
        );
        assert!(
            took >= Duration::from_secs(2) && took <= Duration::from_secs(4),
            "took {took:?} for a 3 s connect_timeout"
        );
    })
    .unwrap();
}

#[test]
fn connection_refused_is_a_stream_error_with_ssh_output() {
    if !ready("connection_refused_is_a_stream_error_with_ssh_output") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Router::with(|router| {
        let mut o = SshOptions::new(HOST);
        o.port = Some(port);
        o.ssh_args = vec!["-F".into(), "/dev/null".into()];
        match router.ssh(o) {
            Err(Error::Stream(e)) => assert!(e.to_string().contains("Connection refused"), "{e}"),
            other => panic!("expected StreamError, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn login_noise_does_not_break_the_bootstrap() {
    if !ready("login_noise_does_not_break_the_bootstrap") {
        return;
    }
    let sshd = Sshd::start_with(SshdOptions {
        banner: Some(
            "Welcome!\nAuthorized use only.\nMITOGEN-HELLO looks like a marker but is not\n".into(),
        ),
        ..Default::default()
    })
    .unwrap();
    Router::with(|router| {
        let c = router
            .ssh(with_key(
                ssh(&sshd, USER_B.name, &sshd.known_hosts_file()),
                &sshd,
            ))
            .unwrap();
        assert_eq!(c.call(add::remote, (4, 4)).unwrap(), 8);
    })
    .unwrap();
}

#[test]
fn ssh_then_sudo_and_ssh_then_ssh_then_su() {
    if !ready("ssh_then_sudo_and_ssh_then_ssh_then_su") {
        return;
    }
    let sshd = Sshd::start().unwrap();
    Router::with(|router| {
        let a = router
            .ssh(with_key(
                ssh(&sshd, USER_A.name, &sshd.known_hosts_file()),
                &sshd,
            ))
            .unwrap();
        // ssh → sudo (NOPASSWD rule a → b)
        let mut sudo = SudoOptions::new().username(USER_B.name);
        sudo.common.via = Some(a.clone());
        let b = router.sudo(sudo).unwrap();
        assert_eq!(b.call(whoami::remote, ()).unwrap(), USER_B.name);

        // ssh → ssh (password, as b) → su back to a
        let mut hop = with_password(ssh(&sshd, USER_B.name, Path::new("/dev/null")), "bpass");
        hop.check_host_keys = CheckHostKeys::Ignore;
        hop.common.via = Some(a.clone());
        let b2 = router.ssh(hop).unwrap();
        assert_eq!(b2.call(whoami::remote, ()).unwrap(), USER_B.name);
        let mut su = SuOptions::new().username(USER_A.name).password("apass");
        su.common.via = Some(b2.clone());
        let a2 = router.su(su).unwrap();
        assert_eq!(a2.call(whoami::remote, ()).unwrap(), USER_A.name);
        let (_, _, _, parents, _, _) = a2.call(identity::remote, ()).unwrap();
        assert_eq!(parents, vec![b2.context_id(), a.context_id(), 0]);
    })
    .unwrap();
}
