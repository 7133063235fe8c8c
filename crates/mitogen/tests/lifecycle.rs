//! Process lifecycle: lost children wake callers, dead masters take their
//! children with them, shutdown leaves nothing behind, garbage is refused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mitogen::{ChannelError, Error, LocalOptions, Router};
use mitogen_testkit::{child_pids, process_gone, wait_for};

#[test]
fn sigkilled_child_wakes_caller_within_a_second() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let pid = child.call(pid::remote, ()).unwrap();
        let pending = child.call_async(sleep_ms::remote, (60_000,)).unwrap();
        let started = Instant::now();
        unsafe_kill(pid, 9);
        match pending.get_timeout(Duration::from_secs(5)) {
            Err(Error::Channel(ChannelError::Dead(reason))) => {
                assert!(reason.contains("disconnected"), "{reason}");
            }
            other => panic!("expected ChannelError, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(1),
            "caller woke after {waited:?}"
        );
        // A later call fails at once too.
        assert!(matches!(
            child.call(add::remote, (1, 1)),
            Err(Error::Channel(_))
        ));
    })
    .unwrap();
}

fn unsafe_kill(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn shutdown_wait_leaves_no_process_or_zombie() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let pid = child.call(pid::remote, ()).unwrap();
        child.shutdown(true).unwrap();
        wait_for(Duration::from_secs(5), "the child to be reaped", || {
            process_gone(pid)
        });
        assert!(matches!(
            child.call(add::remote, (1, 1)),
            Err(Error::Channel(_))
        ));
    })
    .unwrap();
}

#[test]
fn router_shutdown_reaps_every_child() {
    let mut pids = Vec::new();
    Router::with(|router| {
        for _ in 0..5 {
            let c = router.local(LocalOptions::default()).unwrap();
            pids.push(c.call(pid::remote, ()).unwrap());
        }
    })
    .unwrap();
    // Router::with returned after the broker reaped them: no wait needed.
    for pid in pids {
        assert!(process_gone(pid), "child {pid} still exists after shutdown");
    }
}

/// Started as a separate process by `dead_master_takes_children_along`.
#[test]
#[ignore = "helper: runs only when started by dead_master_takes_children_along"]
fn master_helper() {
    if std::env::var_os("MITOGEN_TEST_MASTER").is_none() {
        return;
    }
    Router::with(|router| {
        let mut out = std::io::stdout();
        for _ in 0..3 {
            let c = router.local(LocalOptions::default()).unwrap();
            let pid = c.call(pid::remote, ()).unwrap();
            writeln!(out, "child {pid}").unwrap();
        }
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        // Wait to be killed.
        mitogen::Latch::<()>::new().get().unwrap();
    })
    .unwrap();
}

#[test]
fn dead_master_takes_children_along() {
    let mut master = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "master_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MITOGEN_TEST_MASTER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    let mut lines = BufReader::new(master.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest may print "test master_helper ... " on the same line.
        if let Some((_, p)) = line.split_once("child ") {
            pids.push(p.trim().parse::<u32>().unwrap());
        }
        if line.contains("ready") {
            break;
        }
    }
    assert_eq!(pids.len(), 3, "helper master did not start its children");
    master.kill().unwrap(); // SIGKILL: no chance to clean up
    master.wait().unwrap();
    for pid in pids {
        let took = wait_for(
            Duration::from_secs(5),
            &format!("child {pid} to exit"),
            || process_gone(pid) || mitogen_testkit::process_state(pid) == Some('Z'),
        );
        assert!(took < Duration::from_secs(5));
    }
}

/// The nonce `raw_child` expects in its configuration frame.
const RAW_NONCE: &str = "00112233445566778899aabbccddeeff";

/// Start this test binary as a child context by hand, so the test controls
/// every byte on its stdin.
fn raw_child() -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env("MITOGEN_CHILD", format!("{RAW_NONCE}:10000"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            start.elapsed() < within,
            "child did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn garbage_before_configuration_is_refused() {
    let mut child = raw_child();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"\x00garbage garbage garbage garbage\n")
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.is_empty(), "no hello before a configuration: {out}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("bad frame magic"), "stderr: {err}");
}

#[test]
fn garbage_after_configuration_closes_the_child() {
    let mut child = raw_child();
    // A valid configuration frame, as a parent would send.
    let config = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "print_config_frame", "--ignored", "--nocapture"])
        .env("MITOGEN_TEST_CONFIG", "1")
        .output()
        .unwrap();
    let hex = String::from_utf8_lossy(&config.stdout);
    let hex = hex
        .lines()
        // The harness may print "test print_config_frame ... " first.
        .filter_map(|l| l.rsplit_once("frame ").map(|(_, hex)| hex.trim()))
        .map(|hex| &hex[..hex.bytes().take_while(u8::is_ascii_hexdigit).count()])
        .find(|hex| !hex.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "no config frame printed: {}\nstderr: {}",
                String::from_utf8_lossy(&config.stdout),
                String::from_utf8_lossy(&config.stderr)
            )
        });
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&bytes).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut hello = String::new();
    stdout.read_line(&mut hello).unwrap();
    if !hello.starts_with(&format!("MITOGEN-HELLO:{RAW_NONCE}:")) {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("no hello but {hello:?} (frame {hex}); stderr: {err}");
    }
    let stdin = child.stdin.as_mut().unwrap();
    stdin
        .write_all(b"this is not a frame at all, not even close....")
        .unwrap();
    stdin.flush().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("corrupt stream") && err.contains("bad frame magic"),
        "stderr: {err}; {status}"
    );
}

/// Prints the bytes of a configuration frame for context 9 (helper).
#[test]
#[ignore = "helper: used by garbage_after_configuration_closes_the_child"]
fn print_config_frame() {
    if std::env::var_os("MITOGEN_TEST_CONFIG").is_none() {
        return;
    }
    // Keep in step with bootstrap::ChildConfig (postcard, field order).
    #[derive(serde::Serialize)]
    struct Config {
        nonce: String,
        context_id: u32,
        parent_ids: Vec<u32>,
        name: String,
        max_message_size: u32,
        debug: bool,
        forward_level: u8,
        unidirectional: bool,
        shutdown_timeout_ms: u64,
        flow_window: u64,
        keepalive_ms: Option<(u64, u32)>,
        profiling: bool,
    }
    let body = postcard::to_allocvec(&Config {
        nonce: RAW_NONCE.into(),
        context_id: 9,
        parent_ids: vec![0],
        name: "raw".into(),
        max_message_size: 1 << 20,
        debug: false,
        forward_level: 3,
        unidirectional: false,
        shutdown_timeout_ms: 1000,
        flow_window: 1 << 20,
        keepalive_ms: None,
        profiling: false,
    })
    .unwrap();
    let header = mitogen_wire::Header {
        dst_id: 9,
        length: body.len() as u32,
        ..Default::default()
    };
    let mut all = header.to_bytes().to_vec();
    all.extend(body);
    let hex: String = all.iter().map(|b| format!("{b:02x}")).collect();
    println!("frame {hex}");
}

#[test]
fn children_are_not_left_behind_by_this_test_binary() {
    // Sanity check of the helper used above.
    assert!(child_pids().iter().all(|p| *p != std::process::id()));
}

#[test]
fn stopped_child_is_killed_after_the_shutdown_grace() {
    // A child that cannot react (SIGSTOP) gets SIGTERM after
    // shutdown_timeout and SIGKILL a second later; shutdown still reaps it.
    let mut pid = 0;
    let started = Instant::now();
    Router::with(|router| {
        router
            .broker()
            .set_shutdown_timeout(Duration::from_millis(300));
        let child = router.local(LocalOptions::default()).unwrap();
        pid = child.call(pid::remote, ()).unwrap();
        unsafe_kill(pid, 19); // SIGSTOP
    })
    .unwrap();
    let took = started.elapsed();
    assert!(process_gone(pid), "stopped child {pid} was not reaped");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}
