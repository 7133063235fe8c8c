//! The `fork` method: children forked by a single-threaded zygote while the
//! master runs its broker and busy user threads; hooks; what a child
//! inherits; nothing left behind.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mitogen::{Context, ForkOptions, LocalOptions, Router};
use mitogen_testkit::{process_gone, wait_for};

/// Longest any single call or connection in these tests may take.
const BOUND: Duration = Duration::from_secs(20);

static ON_FORK_RAN: AtomicBool = AtomicBool::new(false);
static ON_START_RAN: AtomicBool = AtomicBool::new(false);
/// `on_start` saw `on_fork` done first.
static ORDER_OK: AtomicBool = AtomicBool::new(false);
/// Set by the master's test code after start: a forked child must not see it.
static SET_IN_MAIN: AtomicU32 = AtomicU32::new(0);

#[mitogen::remote]
fn mark_forked() {
    ON_FORK_RAN.store(true, Ordering::SeqCst);
}

#[mitogen::remote]
fn mark_started(ec: &mitogen::ExternalContext) {
    // The context is up: its id is the one the parent gave it.
    assert_ne!(ec.context_id(), 0);
    ORDER_OK.store(ON_FORK_RAN.load(Ordering::SeqCst), Ordering::SeqCst);
    ON_START_RAN.store(true, Ordering::SeqCst);
}

#[mitogen::remote]
fn failing_hook() -> Result<(), String> {
    Err("the hook refused".into())
}

/// What a forked child reports about itself.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Report {
    pid: u32,
    ppid: u32,
    on_fork: bool,
    on_start: bool,
    order_ok: bool,
    set_in_main: u32,
    comm: String,
}

#[mitogen::remote]
fn report() -> Report {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Report {
        pid: std::process::id(),
        ppid,
        on_fork: ON_FORK_RAN.load(Ordering::SeqCst),
        on_start: ON_START_RAN.load(Ordering::SeqCst),
        order_ok: ORDER_OK.load(Ordering::SeqCst),
        set_in_main: SET_IN_MAIN.load(Ordering::SeqCst),
        comm: std::fs::read_to_string("/proc/self/comm")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn hooked() -> ForkOptions {
    ForkOptions::new()
        .on_fork(mark_forked::remote)
        .on_start(mark_started::remote)
}

/// Call `report` with a bounded wait.
fn report_of(ctx: &Context) -> Report {
    ctx.call_async(report::remote, ())
        .unwrap()
        .get_timeout(BOUND)
        .unwrap_or_else(|e| panic!("{} did not report: {e}", ctx.name()))
}

#[test]
fn hundred_forks_while_the_master_runs_busy_threads() {
    SET_IN_MAIN.store(42, Ordering::SeqCst);
    Router::with(|router| {
        // User threads calling a local child all along: the master is as
        // multithreaded as a real program.
        let helper = router.local(LocalOptions::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..3)
            .map(|i| {
                let (helper, stop) = (helper.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut calls = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let sum = helper
                            .call_async(add::remote, (i, 1))
                            .unwrap()
                            .get_timeout(BOUND)
                            .expect("a busy thread's call");
                        assert_eq!(sum, i + 1);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();

        // 100 forks from 4 threads at once, each child answering a call.
        let started = Instant::now();
        let forkers: Vec<_> = (0..4)
            .map(|_| {
                let router = router.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..25 {
                        let ctx = router.fork(hooked()).expect("fork");
                        let r = report_of(&ctx);
                        assert!(r.on_fork, "on_fork did not run in {}", ctx.name());
                        assert!(r.on_start, "on_start did not run in {}", ctx.name());
                        assert!(r.order_ok, "on_start ran before on_fork in {}", ctx.name());
                        assert_eq!(r.set_in_main, 0, "state set in main leaked into a fork");
                        seen.push((r.pid, r.ppid));
                        ctx.shutdown(false).unwrap();
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for f in forkers {
            all.extend(f.join().expect("a forking thread panicked"));
        }
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let calls: u32 = busy.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(calls > 0, "the busy threads made no call");
        assert_eq!(all.len(), 100);
        let mut pids: Vec<u32> = all.iter().map(|(p, _)| *p).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 100, "every fork is its own process");
        // All forked by one zygote, which is our child, not the master.
        let zygote = all[0].1;
        assert!(all.iter().all(|(_, pp)| *pp == zygote), "{all:?}");
        assert_ne!(zygote, std::process::id());
        eprintln!("100 forks + first calls in {took:?}, busy threads made {calls} calls");
    })
    .unwrap();
}

#[test]
fn router_shutdown_leaves_no_zygote_and_no_forked_child() {
    let mut pids = Vec::new();
    let mut zygote = 0;
    Router::with(|router| {
        for _ in 0..3 {
            let ctx = router.fork(ForkOptions::new()).unwrap();
            let r = report_of(&ctx);
            zygote = r.ppid;
            pids.push(r.pid);
        }
        assert!(!process_gone(zygote));
    })
    .unwrap();
    for pid in pids.iter().copied().chain([zygote]) {
        wait_for(
            Duration::from_secs(10),
            &format!("process {pid} to end"),
            || process_gone(pid),
        );
    }
}

#[test]
fn a_fork_child_knows_its_name_and_parents() {
    Router::with(|router| {
        let mut opts = ForkOptions::new();
        opts.common.remote_name = Some("forkling".into());
        let ctx = router.fork(opts).unwrap();
        assert_eq!(ctx.name(), "forkling");
        let (is_master, id, parent, parents, ec_id, router_id) = ctx
            .call_async(identity::remote, ())
            .unwrap()
            .get_timeout(BOUND)
            .unwrap();
        assert!(!is_master);
        assert_eq!(id, ctx.context_id());
        assert_eq!((ec_id, router_id), (id, id));
        assert_eq!(parent, Some(router.context_id()));
        assert_eq!(parents, vec![router.context_id()]);
        assert_eq!(
            report_of(&ctx).comm,
            "mitogen:forklin",
            "comm keeps 15 bytes"
        );
        // Without hooks, none ran.
        let r = report_of(&ctx);
        assert!(!r.on_fork && !r.on_start);
    })
    .unwrap();
}

#[test]
fn an_unregistered_hook_is_refused_before_forking() {
    Router::with(|router| {
        let opts = ForkOptions::new().on_fork(mitogen::Remote::named("no::such::hook"));
        let e = router.fork(opts).unwrap_err().to_string();
        assert!(e.contains("\"no::such::hook\" is not a registered"), "{e}");
    })
    .unwrap();
}

#[test]
fn a_failing_hook_fails_the_connection_and_names_the_cause() {
    Router::with(|router| {
        for opts in [
            ForkOptions::new().on_start(failing_hook::remote),
            ForkOptions::new().on_fork(failing_hook::remote),
        ] {
            let started = Instant::now();
            let e = router.fork(opts).expect_err("a child whose hook failed");
            let text = e.to_string();
            assert!(text.contains("a hook failed"), "{text}");
            assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        }
        // The router still forks.
        let ctx = router.fork(hooked()).unwrap();
        assert!(report_of(&ctx).on_start);
    })
    .unwrap();
}

/// Started as a separate process by `a_killed_master_takes_zygote_and_forks_along`.
#[test]
#[ignore = "helper: runs only when started by a_killed_master_takes_zygote_and_forks_along"]
fn fork_master_helper() {
    if std::env::var_os("MITOGEN_TEST_FORK_MASTER").is_none() {
        return;
    }
    Router::with(|router| {
        use std::io::Write;
        let mut out = std::io::stdout();
        for _ in 0..3 {
            let r = report_of(&router.fork(ForkOptions::new()).unwrap());
            writeln!(out, "forked {} zygote {}", r.pid, r.ppid).unwrap();
        }
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        // Wait to be killed.
        mitogen::Latch::<()>::new().get().unwrap();
    })
    .unwrap();
}

#[test]
fn a_killed_master_takes_zygote_and_forks_along() {
    use std::io::BufRead;
    let mut master = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fork_master_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MITOGEN_TEST_FORK_MASTER", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Reading stops at "ready" or when the helper dies (end of file).
    let mut pids = Vec::new();
    let mut zygote = None;
    let lines = std::io::BufReader::new(master.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        // libtest may print "test fork_master_helper ... " on the same line.
        if let Some((_, rest)) = line.split_once("forked ") {
            let mut words = rest.split_whitespace();
            pids.push(words.next().unwrap().parse::<u32>().unwrap());
            zygote = words.nth(1).map(|z| z.parse::<u32>().unwrap());
        }
        if line.contains("ready") {
            break;
        }
    }
    assert_eq!(pids.len(), 3, "the helper master did not fork its children");
    let zygote = zygote.unwrap();
    master.kill().unwrap(); // SIGKILL: no chance to clean up
    master.wait().unwrap();
    // The zygote, orphaned, may stay a zombie of a non-reaping pid 1.
    for pid in pids.into_iter().chain([zygote]) {
        wait_for(
            Duration::from_secs(10),
            &format!("process {pid} to exit"),
            || process_gone(pid) || mitogen_testkit::process_state(pid) == Some('Z'),
        );
    }
}

#[test]
fn a_fork_via_another_context_is_its_child() {
    Router::with(|router| {
        let relay = router.local(LocalOptions::default()).unwrap();
        let mut opts = hooked();
        opts.common.via = Some(relay.clone());
        let ctx = router.fork(opts).unwrap();
        let (_, id, parent, parents, _, _) = ctx
            .call_async(identity::remote, ())
            .unwrap()
            .get_timeout(BOUND)
            .unwrap();
        assert_eq!(id, ctx.context_id());
        assert_eq!(parent, Some(relay.context_id()));
        assert_eq!(parents, vec![relay.context_id(), router.context_id()]);
        let r = report_of(&ctx);
        assert!(r.on_fork && r.on_start && r.order_ok, "{r:?}");
        // Its zygote is the relay's, not ours.
        let relay_pid = relay
            .call_async(pid::remote, ())
            .unwrap()
            .get_timeout(BOUND)
            .unwrap();
        let zygote_parent = std::fs::read_to_string(format!("/proc/{}/stat", r.ppid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
        assert_eq!(zygote_parent, Some(relay_pid));
    })
    .unwrap();
}

/// Started as a separate process (alone, so no other test opens
/// descriptors meanwhile) by `routers_that_forked_leave_no_descriptor_behind`.
#[test]
#[ignore = "helper: runs only when started by routers_that_forked_leave_no_descriptor_behind"]
fn fd_helper() {
    if std::env::var_os("MITOGEN_TEST_FORK_FDS").is_none() {
        return;
    }
    // Sockets and pipes only: each router leaks an eventfd today, whatever
    // the method (seen with `local` too), which is not this test's subject.
    let ours = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .filter(|l| l.starts_with("socket:") || l.starts_with("pipe:"))
            .count()
    };
    let before = ours();
    for _ in 0..5 {
        Router::with(|router| {
            let ctx = router.fork(ForkOptions::new()).unwrap();
            report_of(&ctx);
        })
        .unwrap();
    }
    // Each zygote ends once its router's broker stops; then its socket is closed.
    wait_for(
        Duration::from_secs(10),
        "sockets and pipes to be closed",
        || ours() <= before,
    );
    println!("fds ok: {before} -> {}", ours());
}

#[test]
fn routers_that_forked_leave_no_descriptor_behind() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fd_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MITOGEN_TEST_FORK_FDS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("fds ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
