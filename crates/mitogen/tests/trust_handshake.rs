//! Issue 8, the bootstrap handshake: a stray `MITOGEN_CHILD` never turns a
//! program into a call server (L12), version skew is still named after the
//! config-first handshake, and a password prompt printed on the target's
//! stdout is never answered (L8).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mitogen::{Bootstrap, LocalOptions, Router, SshOptions};

/// A well-formed `MITOGEN_CHILD` value, as a parent sets it.
const NONCE: &str = "00112233445566778899aabbccddeeff";

/// What a run of this test binary as a would-be child did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Start this test binary with `MITOGEN_CHILD=env`, feed it `stdin` (or
/// `/dev/null`), close its stdin unless `keep_open`, and wait for it.
fn run_child(env: &str, stdin: Option<&[u8]>, keep_open: bool) -> Run {
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("MITOGEN_CHILD", env)
        .stdin(if stdin.is_some() || keep_open {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take();
    if let (Some(pipe), Some(bytes)) = (input.as_mut(), stdin) {
        // The child may have exited already: a broken pipe is fine.
        let _ = pipe.write_all(bytes);
    }
    if !keep_open {
        drop(input.take());
    }
    // Reading to the end returns once the child (the only writer) exits.
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    drop(input);
    Run {
        code: status.code(),
        stdout,
        stderr,
        took: start.elapsed(),
    }
}

/// One frame: a header for context 1, handle 0, and `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let header = mitogen_wire::Header {
        dst_id: 1,
        length: body.len() as u32,
        ..Default::default()
    };
    let mut f = header.to_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn assert_refused(what: &str, run: &Run, cause: &str) {
    assert_eq!(
        run.code,
        Some(1),
        "{what}: exit status; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("MITOGEN_CHILD is set but")
            && run.stderr.contains("unset it to run the program normally")
            && run.stderr.contains(cause),
        "{what}: expected the clear refusal naming {cause:?}, got stderr {:?}",
        run.stderr
    );
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "{what}: one line: {:?}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("MITOGEN-HELLO"),
        "{what}: greeted although stdin is not a mitogen stream: {:?}",
        run.stdout
    );
    assert!(
        run.took < Duration::from_secs(10),
        "{what}: took {:?}",
        run.took
    );
}

#[test]
fn l12_stray_mitogen_child_exits_with_clear_error() {
    // A stray value, as left in an environment by hand or by a sudo rule.
    let r = run_child("1", None, false);
    assert_refused("malformed value", &r, "its value is not");
    assert!(r.took < Duration::from_secs(5));

    // A well-formed value, but stdin is not a stream at all.
    let env = format!("{NONCE}:30000");
    let r = run_child(&env, None, false);
    assert_refused("stdin from /dev/null", &r, "end of file");

    // Another program's output: refused at the first wrong byte, without
    // waiting for a whole header (stdin stays open).
    let r = run_child(&env, Some(b"GET / HTTP/1.0\r\n\r\nmore garbage"), true);
    assert_refused("garbage on a pipe", &r, "bad frame magic");

    // A well-formed configuration frame carrying another nonce.
    let body = mitogen_wire::encode(&"ffeeddccbbaa99887766554433221100").unwrap();
    let r = run_child(&env, Some(&frame(&body)), true);
    assert_refused("wrong nonce", &r, "carries another nonce");

    // Nothing arrives: the wait is bounded by the value's deadline.
    let r = run_child(&format!("{NONCE}:300"), None, true);
    assert_refused("silent stdin", &r, "nothing arrived in time");
}

/// The nonce matches but the rest of the configuration does not decode
/// (another build's layout): the child still greets, so the parent can
/// name the versions, and then exits.
#[test]
fn l12_matching_nonce_with_unreadable_config_still_greets_then_exits() {
    let mut body = mitogen_wire::encode(&NONCE).unwrap();
    body.extend_from_slice(&[0xff; 3]);
    let r = run_child(&format!("{NONCE}:30000"), Some(&frame(&body)), true);
    assert!(
        r.stdout.starts_with(&format!("MITOGEN-HELLO:{NONCE}:")),
        "greets first: {:?}",
        r.stdout
    );
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("bad configuration frame"),
        "stderr: {}",
        r.stderr
    );
}

/// A cached program of the right size that greets with another protocol
/// (what an incompatible build would do): `VersionSkew` names both.
#[test]
fn l12_version_skew_is_still_named() {
    let dir = tempfile::tempdir().unwrap();
    mitogen_testkit::plant_other_build(dir.path(), "1:0123456789abcdef");
    Router::with(|router| {
        let opts = LocalOptions::new()
            .bootstrap(Bootstrap::Shell)
            .cache_dir(dir.path().to_path_buf());
        match router.local(opts) {
            Err(mitogen::Error::Stream(e)) => {
                let text = e.to_string();
                assert!(text.contains("version skew"), "{text}");
                assert!(text.contains("0123456789abcdef"), "{text}");
            }
            other => panic!("expected a version skew error, got {other:?}"),
        }
    })
    .unwrap();
}

/// A fake `ssh`: prints `noise` (a printf format: no `%` or `'`) on stdout,
/// as the target's `.profile` would, then,
/// if `tty_prompt`, a real prompt on its terminal, reads the answer and
/// records it in `<log>`, then runs the real first stage (its last
/// argument) like a remote login shell would.
fn fake_ssh(dir: &std::path::Path, noise: &str, tty_prompt: bool) -> std::path::PathBuf {
    let log = dir.join("typed");
    let prompt = if tty_prompt {
        format!(
            "printf 'mitogen-b@target password: ' > /dev/tty\n\
             IFS= read -r pw < /dev/tty\n\
             printf '%s\\n' \"$pw\" >> '{}'\n",
            log.display()
        )
    } else {
        String::new()
    };
    let script = format!(
        "#!/bin/sh\n\
         for a; do cmd=$a; done\n\
         printf '{noise}'\n\
         {prompt}\
         exec /bin/sh -c \"$cmd\"\n"
    );
    let path = dir.join("ssh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn l8_prompt_on_stdout_is_not_answered() {
    let noise = "Last login: yesterday\\nYour password expires soon. Old password:";
    Router::with(|router| {
        // No password given (stdio on sockets): a prompt on stdout used to
        // end the attempt with "a password is required".
        let dir = tempfile::tempdir().unwrap();
        let mut o = SshOptions::new("target");
        o.ssh_path = fake_ssh(dir.path(), noise, false).display().to_string();
        o.common.connect_timeout = Duration::from_secs(20);
        o.common.cache_dir = Some(dir.path().join("cache"));
        let c = router.ssh(o).unwrap();
        assert_eq!(c.call(add::remote, (1, 2)).unwrap(), 3);
        c.shutdown(true).unwrap();

        // With a password (ssh gets a terminal): it is typed once, at the
        // prompt on the terminal, never at the one on stdout.
        let dir = tempfile::tempdir().unwrap();
        let mut o = SshOptions::new("target");
        o.ssh_path = fake_ssh(dir.path(), noise, true).display().to_string();
        o.password = Some("s3cret".into());
        o.common.connect_timeout = Duration::from_secs(20);
        o.common.cache_dir = Some(dir.path().join("cache"));
        let c = router.ssh(o).unwrap();
        assert_eq!(c.call(add::remote, (2, 2)).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("typed")).unwrap(),
            "s3cret\n",
            "the password reached the terminal exactly once"
        );
        c.shutdown(true).unwrap();
    })
    .unwrap();
}
