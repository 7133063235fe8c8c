//! `Context::shutdown(true)` returns within milliseconds on every method,
//! once the process we started is gone, and leaves no zombie or orphan —
//! also for children that printed to stdout and stderr just before.
//! ssh runs against a throw-away sshd; sudo, su and doas use the fixture's
//! users.
//! Skips (saying why) without root or the fixture.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mitogen::{Context, DoasOptions, Router, SuOptions, SudoOptions};
use mitogen_testkit::fixture::{self, USER_A};
use mitogen_testkit::sshd::Sshd;
use mitogen_testkit::{child_pids, process_gone, wait_for};

/// Repetitions per method.
const REPS: usize = 50;
/// The longest `shutdown(true)` allowed.
const LIMIT: Duration = Duration::from_millis(100);

/// Start a context named `name`; the method under test.
type Start<'a> = dyn Fn(&Router, &str) -> Context + 'a;

/// One test at a time: "our children" are told apart from those of the
/// other tests of this binary (an sshd's key generation too) only if no
/// other test starts any meanwhile.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shut down `REPS` contexts made by `start`, each after it printed, and
/// check the time, the exit of our own child and of the target process,
/// and that no process carrying the run's marker is left.
fn measure(method: &str, start: &Start<'_>) {
    let marker = format!("sf{}-{method}", std::process::id());
    let mut took = Vec::with_capacity(REPS);
    let before = child_pids();
    Router::with(|router| {
        for i in 0..REPS {
            let name = format!("{marker}-{i}");
            let before = child_pids();
            let ctx = start(&router, &name);
            let target = ctx.call(pid::remote, ()).unwrap();
            ctx.call(print_and_log::remote, (format!("bye {i}"),))
                .unwrap();
            // Our own children started for this context (not the sshd).
            let ours: Vec<u32> = child_pids()
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            assert!(!ours.is_empty(), "{method} #{i}: no child process of ours");
            let started = Instant::now();
            ctx.shutdown(true).unwrap();
            took.push(started.elapsed());
            // `shutdown(true)` returned: the process we started is reaped.
            for pid in &ours {
                assert!(
                    process_gone(*pid),
                    "{method} #{i}: our child {pid} ({}) still exists (state {:?}) after shutdown(true)",
                    cmdline_of(*pid),
                    mitogen_testkit::process_state(*pid)
                );
            }
            // The target may be the grandchild of sshd: it goes a moment later.
            wait_for(
                Duration::from_secs(5),
                &format!("{method} #{i}: target process {target} to go"),
                || process_gone(target),
            );
        }
    })
    .unwrap();
    let extra: Vec<u32> = child_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(extra.is_empty(), "{method}: children left: {extra:?}");
    // A helper of the connection program (sudo's monitor) may take a
    // moment longer than the program itself; anything still there after
    // this bound is an orphan.
    let mut left = Vec::new();
    let gone = wait_for_or(Duration::from_secs(5), || {
        left = marked_processes(&marker);
        left.is_empty()
    });
    assert!(gone, "{method}: processes left behind: {left:?}");
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    println!("shutdown(true) over {method}: {REPS} runs, median {median:?}, max {max:?}");
    assert!(
        max <= LIMIT,
        "{method}: shutdown(true) took up to {max:?} (median {median:?}), limit {LIMIT:?}"
    );
}

/// Poll `done` until it holds or `timeout` passes; whether it held.
fn wait_for_or(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The command line of `pid`, for messages.
fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Processes whose command line carries `marker` (zombies included).
fn marked_processes(marker: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = cmdline_of(pid);
        if cmdline.contains(marker) {
            out.push((pid, cmdline));
        }
    }
    out
}

fn ready(test: &str) -> bool {
    fixture::ready_or_skip(test, fixture::available())
}

#[test]
fn local_shutdown_is_fast() {
    let _serial = serial();
    measure("local", &|router, name| named(router, name));
}

#[test]
fn ssh_shutdown_is_fast() {
    let _serial = serial();
    if !fixture::ready_or_skip(
        "ssh_shutdown_is_fast",
        Sshd::available().and_then(|()| fixture::available()),
    ) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    measure("ssh", &|router, name| {
        let mut o = ssh_options(&sshd, USER_A.name);
        o.common.remote_name = Some(name.into());
        router
            .ssh(o)
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()))
    });
}

#[test]
fn sudo_shutdown_is_fast() {
    let _serial = serial();
    if !ready("sudo_shutdown_is_fast") {
        return;
    }
    measure("sudo", &|router, name| {
        let mut o = SudoOptions::new().username(USER_A.name);
        o.common.remote_name = Some(name.into());
        router.sudo(o).unwrap()
    });
}

#[test]
fn su_shutdown_is_fast() {
    let _serial = serial();
    if !ready("su_shutdown_is_fast") {
        return;
    }
    measure("su", &|router, name| {
        let mut o = SuOptions::new().username(USER_A.name);
        o.common.remote_name = Some(name.into());
        router.su(o).unwrap()
    });
}

#[test]
fn doas_shutdown_is_fast() {
    let _serial = serial();
    if !ready("doas_shutdown_is_fast") {
        return;
    }
    measure("doas", &|router, name| {
        let mut o = DoasOptions::new().username(USER_A.name);
        o.common.remote_name = Some(name.into());
        router.doas(o).unwrap()
    });
}
