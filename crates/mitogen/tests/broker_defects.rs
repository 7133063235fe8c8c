//! Broker defects from the reliability review (issue 9): an end of file
//! that arrives with the last data (H4), a peer that keeps its socket full
//! (H3), flushes requested from timer callbacks (M3), a panic on the broker
//! thread (M2) and an endless stderr line (M5). Own binary: it installs a
//! global log capture and measures this process's memory, so its tests take
//! turns (`serial`).

mod common;
mod logs;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use mitogen::{ChannelError, Context, Error, Latch, LocalOptions, Router, Sender};
use mitogen_testkit::{process_gone, process_state, wait_for};
use mitogen_wire::{Header, HEADER_LEN};

/// How long a child stalls its own broker in the H4 tests.
const STALL: Duration = Duration::from_millis(1500);
/// How long the hostile children of H3 and M5 flood.
const FLOOD: Duration = Duration::from_secs(3);
/// A handle nothing listens on.
const NOBODY: u32 = 9999;

/// One test at a time: they measure this process's memory and share its
/// log capture.
fn serial() -> MutexGuard<'static, ()> {
    // The capture must be the global subscriber before any router installs
    // the default one.
    errors();
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Error-level events of this process (and what children forward).
fn errors() -> &'static Latch<String> {
    static ERRORS: OnceLock<Latch<String>> = OnceLock::new();
    ERRORS.get_or_init(|| logs::capture(tracing::Level::ERROR))
}

/// Stall this context's broker for `ms` (it is stalled when this returns),
/// and return our pid.
#[mitogen::remote]
fn pid_and_stall_broker(router: &Router, ms: u64) -> u32 {
    stall_broker(router, ms);
    std::process::id()
}

/// The target of `/proc/self/fd/<fd>`, if any.
fn fd_target(fd: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Our descriptors whose target starts with `kind` (`socket:`, `pipe:`).
fn fds_of_kind(kind: &str) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let target = fd_target(&name)?;
            Some((name.parse().ok()?, target))
        })
        .filter(|(_, t)| t.starts_with(kind))
        .collect();
    out.sort();
    out
}

/// Hostile (H3): write valid empty frames for a handle nobody listens on,
/// with no reply wanted, straight to this child's stream socket for `ms`.
/// Returns the bytes written.
#[mitogen::remote]
fn flood_stream(ms: u64) -> u64 {
    let (fd, _) = fds_of_kind("socket:")
        .into_iter()
        .next()
        .expect("the stream socket");
    // SAFETY: `fd` is this process's stream socket, open for its whole life
    // (the broker owns it); the duplicate made here is closed on return.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .unwrap();
    let mut sock = UnixStream::from(owned);
    let me = mitogen::context_id();
    let frame = Header {
        src_id: me,
        auth_id: me,
        handle: NOBODY,
        ..Header::default()
    }
    .to_bytes();
    let block = frame.repeat(64 * 1024 / HEADER_LEN);
    let deadline = Instant::now() + Duration::from_millis(ms);
    let (mut pos, mut sent) = (0, 0u64);
    // Stop only on a frame boundary: the parent must see valid frames.
    while Instant::now() < deadline || pos % HEADER_LEN != 0 {
        match sock.write(&block[pos..]) {
            Ok(n) => {
                pos = (pos + n) % block.len();
                sent += n as u64;
            }
            // The descriptor is non-blocking (shared with the broker).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(e) => panic!("write to the stream: {e}"),
        }
    }
    sent
}

/// Hostile (M5): write 64 KiB blocks of `A` with no newline, for `ms`, to
/// the original stderr this child keeps (read by the parent's broker).
/// Returns the bytes written.
#[mitogen::remote]
fn flood_stderr(ms: u64) -> u64 {
    let forwarded: Vec<String> = ["1", "2"].iter().filter_map(|f| fd_target(f)).collect();
    let (fd, _) = fds_of_kind("pipe:")
        .into_iter()
        .find(|(fd, t)| {
            let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            let flags = flags
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
                .unwrap();
            flags & 3 == 1 && !forwarded.contains(t)
        })
        .expect("the original stderr");
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .unwrap();
    let block = vec![b'A'; 64 * 1024];
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        pipe.write_all(&block).unwrap();
        sent += block.len() as u64;
    }
    sent
}

/// What happened to this process while a hostile child flooded it.
struct Flooded {
    /// Peak memory above the baseline, kB.
    peak_kb: u64,
    /// Round trips of the pings to the other child, sorted.
    pings: Vec<Duration>,
    /// Bytes the hostile child wrote.
    sent: u64,
}

/// Start a victim and an attacker child, run `flood` on the attacker
/// (from another thread) and meanwhile ping the victim; then check both
/// still answer.
fn flooded(router: &Router, flood: fn(&Context) -> u64) -> Flooded {
    let victim = router.local(LocalOptions::default()).unwrap();
    let attacker = router.local(LocalOptions::default()).unwrap();
    assert_eq!(victim.call(add::remote, (1, 2)).unwrap(), 3);
    assert_eq!(attacker.call(add::remote, (1, 2)).unwrap(), 3);
    // Peak memory from here on: reset VmHWM to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kb("VmRSS:");
    let a2 = attacker.clone();
    let flooding = std::thread::spawn(move || flood(&a2));
    let deadline = Instant::now() + FLOOD + Duration::from_secs(30);
    let mut pings = Vec::new();
    while !flooding.is_finished() {
        assert!(Instant::now() < deadline, "the flood call never returned");
        let t = Instant::now();
        let sum = victim
            .call_async(add::remote, (2, 3))
            .unwrap()
            .get_timeout(Duration::from_secs(30))
            .expect("the victim answers during the flood");
        assert_eq!(sum, 5);
        pings.push(t.elapsed());
        // Pace the pings; this is not waiting for anything.
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = flooding.join().expect("the flood call");
    let peak_kb = status_kb("VmHWM:").saturating_sub(before);
    // The tree keeps working afterwards.
    assert_eq!(victim.call(add::remote, (4, 4)).unwrap(), 8);
    assert_eq!(attacker.call(add::remote, (4, 4)).unwrap(), 8);
    pings.sort();
    Flooded {
        peak_kb,
        pings,
        sent,
    }
}

/// Prints what a flood did (visible with `--nocapture`) and checks it.
fn check_flood(test: &str, f: &Flooded, max_peak_kb: u64) {
    let median = f.pings[f.pings.len() / 2];
    let p90 = f.pings[f.pings.len() * 9 / 10];
    let max = *f.pings.last().unwrap();
    println!(
        "{test}: {} MB written by the attacker; peak memory +{} kB; {} pings, median {median:?}, p90 {p90:?}, max {max:?}",
        f.sent >> 20,
        f.peak_kb,
        f.pings.len()
    );
    assert!(f.sent > 8 << 20, "the attacker wrote only {} bytes", f.sent);
    assert!(
        f.peak_kb < max_peak_kb,
        "memory rose by {} kB during the flood",
        f.peak_kb
    );
    assert!(f.pings.len() >= 10, "only {} pings answered", f.pings.len());
    // Unfixed, the review measured a 150–300 ms median (M5) and an 18 s
    // stall (H3). On two cores shared with the flooding child, the rest of
    // the suite and its builds, a healthy broker was seen at a 55 ms median
    // and a 160 ms max: bound the median and the worst, not the tail.
    assert!(
        median < Duration::from_millis(100) && max < Duration::from_secs(1),
        "pings during the flood: median {median:?}, 90th percentile {p90:?}, max {max:?}"
    );
}

#[test]
fn h3_read_per_wakeup_is_bounded() {
    let _serial = serial();
    Router::with(|router| {
        let f = flooded(&router, |attacker| {
            attacker
                .call(flood_stream::remote, (FLOOD.as_millis() as u64,))
                .unwrap()
        });
        check_flood("h3_read_per_wakeup_is_bounded", &f, 8 * 1024);
    })
    .unwrap();
}

#[test]
fn m5_endless_stderr_line_is_cut() {
    let _serial = serial();
    Router::with(|router| {
        let f = flooded(&router, |attacker| {
            attacker
                .call(flood_stderr::remote, (FLOOD.as_millis() as u64,))
                .unwrap()
        });
        check_flood("m5_endless_stderr_line_is_cut", &f, 8 * 1024);
    })
    .unwrap();
}

/// Started as a separate process by `h4_eof_with_last_data_is_seen`: a
/// master that sends one last message to a child whose broker is stalled,
/// then exits at once.
#[test]
#[ignore = "helper: runs only when started by h4_eof_with_last_data_is_seen"]
fn h4_master_helper() {
    if std::env::var_os("MITOGEN_TEST_H4_MASTER").is_none() {
        return;
    }
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let pid = child
            .call(pid_and_stall_broker::remote, (STALL.as_millis() as u64,))
            .unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "child {pid}").unwrap();
        out.flush().unwrap();
        child.call_no_reply(record::remote, (1,)).unwrap();
        std::process::exit(0);
    })
    .unwrap();
}

#[test]
fn h4_eof_with_last_data_is_seen() {
    let _serial = serial();
    let mut master = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "h4_master_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MITOGEN_TEST_H4_MASTER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pid = None;
    for line in BufReader::new(master.stdout.take().unwrap()).lines() {
        // libtest may print "test h4_master_helper ... " on the same line.
        if let Some((_, p)) = line.unwrap().split_once("child ") {
            pid = Some(p.trim().parse::<u32>().unwrap());
            break;
        }
    }
    // The child's broker stalls from before this line until STALL later.
    let stalled_at = Instant::now();
    let pid = pid.expect("the helper master started its child");
    let status = master.wait().unwrap();
    assert!(status.success(), "helper master: {status}");
    let resumed_by = STALL.saturating_sub(stalled_at.elapsed());
    wait_for(
        resumed_by + Duration::from_secs(1),
        &format!("orphaned child {pid} to exit within 1 s of its broker resuming"),
        || process_gone(pid) || process_state(pid) == Some('Z'),
    );
}

#[test]
fn h4_shutdown_with_stalled_child_is_prompt() {
    let _serial = serial();
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let timeout = router.broker().shutdown_timeout();
        assert!(timeout >= STALL + Duration::from_secs(2), "{timeout:?}");
        let pid = child
            .call(pid_and_stall_broker::remote, (STALL.as_millis() as u64,))
            .unwrap();
        let stalled_at = Instant::now();
        child.call_no_reply(record::remote, (1,)).unwrap();
        router.shutdown();
        let took = stalled_at.elapsed();
        assert!(
            took < STALL + Duration::from_secs(1),
            "shutdown took {took:?} with a child stalled for {STALL:?} (shutdown_timeout {timeout:?})"
        );
        assert!(process_gone(pid), "child {pid} was not reaped");
    })
    .unwrap();
}

#[test]
fn m3_flush_from_timer_callback_is_not_lost() {
    let _serial = serial();
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(child.call(journal::remote, ()).unwrap(), Vec::<u32>::new());
        let sent = Latch::new();
        let (s, c) = (sent.clone(), child.clone());
        router
            .broker()
            .schedule(Duration::from_millis(10), move || {
                // Back to back, so all but the first are queued for a flush.
                let r: Vec<_> = (1..=3)
                    .map(|n| c.call_no_reply(record::remote, (n,)))
                    .collect();
                let _ = s.put(r);
            });
        let results = sent
            .get_timeout(Duration::from_secs(5))
            .expect("the timer ran");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let journal = child
            .call_async(journal::remote, ())
            .unwrap()
            .get_timeout(Duration::from_secs(5))
            .expect("the call after the timer's sends answers");
        assert_eq!(journal, vec![1, 2, 3]);
    })
    .unwrap();
}

#[test]
fn m2_broker_panic_stops_cleanly() {
    let _serial = serial();
    let errors = errors();
    let mut pids = Vec::new();
    let started = Instant::now();
    let mut timeout = Duration::ZERO;
    Router::with(|router| {
        // Children get it too: the sleeper's watchdog gives up on its call
        // this long after its parent stream is gone.
        router.broker().set_shutdown_timeout(Duration::from_secs(2));
        timeout = router.broker().shutdown_timeout();
        let boom = router
            .add_handler(
                |_msg: mitogen::Message| panic!("m2 handler boom"),
                None,
                true,
                None,
                None,
            )
            .unwrap();
        let sleeper = router.local(LocalOptions::default()).unwrap();
        let poker = router.local(LocalOptions::default()).unwrap();
        pids.push(sleeper.call(pid::remote, ()).unwrap());
        pids.push(poker.call(pid::remote, ()).unwrap());
        let pending = sleeper.call_async(sleep_ms::remote, (60_000,)).unwrap();
        // The poker's message runs the handler on this process's broker.
        let poking = poker
            .call_async(poke::remote, (Sender::new(Context::local(&router), boom),))
            .unwrap();
        for call in [
            pending.get_timeout(Duration::from_secs(10)).map(|_| ()),
            poking.get_timeout(Duration::from_secs(10)).map(|_| ()),
        ] {
            match call {
                Err(Error::Channel(ChannelError::Dead(reason))) => {
                    assert!(reason.contains("m2 handler boom"), "{reason}");
                }
                other => panic!("expected a dead message, got {other:?}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = errors
                .get_deadline(deadline)
                .expect("the panic is logged at error level");
            if line.contains("broker thread panicked") && line.contains("m2 handler boom") {
                break;
            }
        }
    })
    .unwrap();
    let took = started.elapsed();
    assert!(
        took < timeout,
        "Router::with returned after {took:?} (shutdown_timeout {timeout:?})"
    );
    for pid in pids {
        wait_for(
            Duration::from_secs(5),
            &format!(
                "child {pid} to exit and be reaped (state {:?}, threads {:?})",
                process_state(pid),
                std::fs::read_dir(format!("/proc/{pid}/task"))
                    .map(|d| d
                        .flatten()
                        .map(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default())
                        .collect::<Vec<_>>())
                    .ok()
            ),
            || process_gone(pid),
        );
    }
}

/// A child that cannot react (SIGSTOP) is sent SIGTERM when
/// `shutdown_timeout` is over, SIGKILL one second later, and is reaped as
/// soon as its pidfd reports the exit: shutdown waits on deadlines, never in
/// a loop on the broker thread, and leaves no zombie.
///
/// Not covered: a child that outlives SIGKILL (stuck in the kernel), which
/// the broker leaves to a background reaper; no test can make one portably.
#[test]
fn l10_force_shutdown_escalates_by_deadline() {
    let _serial = serial();
    let grace = Duration::from_millis(300);
    let mut pids = Vec::new();
    let started = Instant::now();
    Router::with(|router| {
        router.broker().set_shutdown_timeout(grace);
        for _ in 0..3 {
            let child = router.local(LocalOptions::default()).unwrap();
            let pid = child.call(pid::remote, ()).unwrap();
            let stopped = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status()
                .unwrap();
            assert!(stopped.success());
            pids.push(pid);
        }
    })
    .unwrap();
    let took = started.elapsed();
    for pid in &pids {
        assert!(process_gone(*pid), "stopped child {pid} was not reaped");
    }
    // SIGTERM after the grace, SIGKILL a second later: not before, and
    // not a second per child.
    assert!(
        took >= grace + Duration::from_secs(1),
        "shutdown took only {took:?}: SIGKILL came before its time"
    );
    assert!(
        took < grace + Duration::from_secs(2),
        "shutdown took {took:?} for {} stopped children",
        pids.len()
    );
}
