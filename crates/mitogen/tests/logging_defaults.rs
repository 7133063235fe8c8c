//! Issue 12, logging: what a program shows without a subscriber of its own.
//! The global `tracing` subscriber is process-wide, so each test runs its
//! scenario in a fresh copy of this test binary (`scenario`, chosen by
//! `LOGGING_SCENARIO`) and reads what that process printed on stderr.
//!
//! A scenario keeps its router until its stdin closes, so output that
//! travels apart from call replies (a child's stdout) has time to arrive;
//! the test closes it once it saw what it waits for.

mod common;
mod logs;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pid;
use mitogen::{LocalOptions, Router};
use tracing::Level;

const SCENARIO: &str = "LOGGING_SCENARIO";
/// Where the `log_to_file` scenario writes.
const LOG_FILE: &str = "LOGGING_FILE";
/// Printed by a scenario once its calls returned.
const CALLS_DONE: &str = "scenario: calls done";
const WAIT: Duration = Duration::from_secs(30);

/// A child's job: a debug and an info event of target `myapp::job`, then a
/// line on stdout. Events are forwarded ahead of the call's reply; the
/// stdout line travels on its own.
#[mitogen::remote]
fn job(name: String) {
    tracing::debug!(target: "myapp::job", "detail from {name}");
    tracing::info!(target: "myapp::job", "job step from {name}");
    println!("plain stdout from {name}");
}

/// Keep the router until the test closes our stdin.
fn hold() {
    eprintln!("{CALLS_DONE}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn one_job(router: &Router, name: &str) {
    let child = router.local(LocalOptions::new().remote_name(name)).unwrap();
    child.call(job::remote, (name.to_string(),)).unwrap();
}

/// The scenarios, run in a process of their own (see the module docs).
#[test]
fn scenario() {
    let Ok(which) = std::env::var(SCENARIO) else {
        return; // run directly: nothing to do
    };
    match which.as_str() {
        "default" => mitogen::main(|router| {
            one_job(&router, "worker");
            hold();
            Ok(())
        }),
        "opt_out" => {
            mitogen::set_default_logging(false);
            Router::with(|router| {
                one_job(&router, "worker");
                hold();
            })
            .unwrap();
        }
        "forward_level" => mitogen::main(|router| {
            one_job(&router, "quiet");
            let loud = router.local(
                LocalOptions::new()
                    .remote_name("loud")
                    .forward_level(Level::DEBUG),
            )?;
            loud.call(job::remote, ("loud".to_string(),))?;
            router.set_forward_level(Level::DEBUG);
            one_job(&router, "routerwide");
            hold();
            Ok(())
        }),
        "log_to_file" => mitogen::main(|router| {
            let path = PathBuf::from(std::env::var_os(LOG_FILE).unwrap());
            mitogen::log_to_file(Some(&path), Level::INFO)?;
            one_job(&router, "filed");
            tracing::info!(target: "myapp::main", "master marker");
            tracing::debug!(target: "myapp::main", "master detail");
            hold();
            Ok(())
        }),
        "enable_debug" => mitogen::main(|router| {
            // Started before debug was on: only what it starts afterwards
            // (through it) writes a debug log.
            let early = router.local(LocalOptions::new().remote_name("early"))?;
            router.enable_debug();
            let relay = router.local(LocalOptions::new().remote_name("relay"))?;
            let leaf = router.local(LocalOptions::new().remote_name("leaf").via(&relay))?;
            let late = router.local(LocalOptions::new().remote_name("late").via(&early))?;
            let mut pids = vec![std::process::id()];
            for (ctx, name) in [(&relay, "relay"), (&leaf, "leaf"), (&late, "late")] {
                ctx.call(job::remote, (name.to_string(),))?;
                pids.push(ctx.call(pid::remote, ())?);
            }
            pids.push(early.call(pid::remote, ())?);
            tracing::debug!(target: "myapp::main", "master detail");
            eprintln!("pids: {pids:?}");
            hold();
            Ok(())
        }),
        "foreign" => {
            // The program's own subscriber: kept, and it sees forwarded
            // events under their own target with the context's name.
            let seen = logs::capture(Level::TRACE);
            Router::with(|router| {
                one_job(&router, "worker");
                let deadline = Instant::now() + WAIT;
                let event = loop {
                    let e: String = seen.get_deadline(deadline).expect("the forwarded event");
                    if e.contains("job step from worker") {
                        break e;
                    }
                };
                eprintln!("captured: {event}");
                let e = mitogen::log_to_file(None, Level::INFO).unwrap_err();
                eprintln!("log_to_file: {e}");
                hold();
            })
            .unwrap();
        }
        other => panic!("unknown scenario {other:?}"),
    }
}

/// A scenario process and the lines it prints on stderr.
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(scenario: &str, env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["scenario", "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO, scenario)
            .env_remove("MITOGEN_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting the scenario");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for a line containing every one of `parts`; it is returned.
    fn expect(&mut self, parts: &[&str]) -> String {
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = parts.iter().all(|p| line.contains(p));
                    self.seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {parts:?} within {WAIT:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the scenario's calls to return, then [`Run::finish`].
    fn finish_after_calls(mut self) -> Vec<String> {
        self.expect(&[CALLS_DONE]);
        self.finish()
    }

    /// Close the scenario's stdin and collect the rest of its stderr; it
    /// must exit successfully.
    fn finish(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "the scenario did not end within {WAIT:?}; saw:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the scenario failed ({status}); stderr:\n{}",
            self.seen.join("\n")
        );
        self.seen
    }
}

/// `HH:MM:SS.mmm L ` at the start of a line.
fn has_time_and_level(line: &str, level: char) -> bool {
    let b = line.as_bytes();
    b.len() > 15
        && [0, 1, 3, 4, 6, 7, 9, 10, 11]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
        && b[12] == b' '
        && b[13] == level as u8
        && b[14] == b' '
}

fn none_contains(lines: &[String], needle: &str) {
    assert!(
        !lines.iter().any(|l| l.contains(needle)),
        "{needle:?} was shown:\n{}",
        lines.join("\n")
    );
}

#[test]
fn default_subscriber_shows_child_events_and_output_tagged() {
    let mut run = Run::start("default", &[]);
    let line = run.expect(&["job step from worker"]);
    assert!(
        line.contains(" I worker myapp::job: job step from worker"),
        "not `time level context target: message`: {line}"
    );
    assert!(has_time_and_level(&line, 'I'), "{line}");
    assert!(line.contains("context_id="), "{line}");
    let out = run.expect(&["plain stdout from worker"]);
    assert!(
        out.contains(" I worker mitogen::stdout: plain stdout from worker"),
        "{out}"
    );
    let lines = run.finish_after_calls();
    // Forwarding is INFO by default: the child's debug! never left it.
    none_contains(&lines, "detail from worker");
}

#[test]
fn rust_log_filters_forwarded_events_by_their_own_target() {
    let mut run = Run::start("default", &[("RUST_LOG", "myapp=info")]);
    run.expect(&[" I worker myapp::job: job step from worker"]);
    let lines = run.finish_after_calls();
    // `myapp=info` alone leaves out every other target, output lines too.
    none_contains(&lines, "mitogen::stdout");
}

/// Run `scenario`: nothing of the child's job is shown.
fn shows_no_job(scenario: &str, env: &[(&str, &str)]) {
    let lines = Run::start(scenario, env).finish_after_calls();
    none_contains(&lines, "job step from worker");
    none_contains(&lines, "myapp::job");
}

#[test]
fn mitogen_log_off_hides_events_and_output() {
    // MITOGEN_LOG wins over RUST_LOG.
    shows_no_job("default", &[("MITOGEN_LOG", "off"), ("RUST_LOG", "info")]);
}

#[test]
fn set_default_logging_false_installs_nothing() {
    shows_no_job("opt_out", &[]);
}

#[test]
fn child_debug_is_forwarded_only_at_its_forward_level() {
    let mut run = Run::start("forward_level", &[("MITOGEN_LOG", "info,myapp=debug")]);
    // Each child's debug event would come before its info event.
    run.expect(&[" I quiet myapp::job: job step from quiet"]);
    let loud = run.expect(&["detail from loud"]);
    assert!(
        loud.contains(" D loud myapp::job: detail from loud"),
        "{loud}"
    );
    run.expect(&[" D routerwide myapp::job: detail from routerwide"]);
    let lines = run.finish_after_calls();
    none_contains(&lines, "detail from quiet");
}

#[test]
fn log_to_file_writes_the_default_format_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let run = Run::start("log_to_file", &[(LOG_FILE, path.to_str().unwrap())]);
    let lines = run.finish_after_calls();
    none_contains(&lines, "job step from filed");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(" I filed myapp::job: job step from filed"),
        "{text}"
    );
    assert!(
        text.contains(" I master myapp::main: master marker"),
        "{text}"
    );
    assert!(!text.contains("master detail"), "below INFO: {text}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "log file mode");
}

/// Every `mitogen.<pid>.log` under `dir`, by pid.
fn debug_logs(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("mitogen.")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
            {
                found.push((pid, path));
            }
        }
    }
    found
}

#[test]
fn enable_debug_writes_a_log_per_process_across_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = Run::start(
        "enable_debug",
        &[
            ("TMPDIR", tmp.path().to_str().unwrap()),
            ("XDG_RUNTIME_DIR", ""),
        ],
    );
    let line = run.expect(&["pids: ["]);
    let pids: Vec<u32> = line
        .split_once("pids: [")
        .unwrap()
        .1
        .trim_end_matches(']')
        .split(", ")
        .map(|p| p.parse().unwrap())
        .collect();
    let [master, relay, leaf, late, early] = pids[..] else {
        panic!("five pids: {line}");
    };
    run.finish();
    let logs = debug_logs(tmp.path());
    for (who, pid, mark) in [
        ("master", master, "master detail"),
        ("relay", relay, "detail from relay"),
        ("leaf (via relay)", leaf, "detail from leaf"),
        (
            "late (via a relay started before)",
            late,
            "detail from late",
        ),
    ] {
        let Some((_, path)) = logs.iter().find(|(p, _)| *p == pid) else {
            panic!("no debug log for {who} (pid {pid}) in {logs:?}");
        };
        let text = std::fs::read_to_string(path).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(mark))
            .unwrap_or_else(|| panic!("{who}'s log {} lacks {mark:?}:\n{text}", path.display()));
        assert!(has_time_and_level(line, 'D'), "{line}");
        // Each process writes its own: no other context's job in it.
        for other in ["relay", "leaf", "late"] {
            if !who.starts_with(other) {
                assert!(
                    !text.contains(&format!("detail from {other}")),
                    "{who}'s log has {other}'s detail:\n{text}"
                );
            }
        }
    }
    assert!(
        !logs.iter().any(|(p, _)| *p == early),
        "'early' started before enable_debug, yet wrote a debug log: {logs:?}"
    );
}

#[test]
fn a_subscriber_of_the_programs_own_is_kept() {
    let mut run = Run::start("foreign", &[]);
    let line = run.expect(&["captured: "]);
    assert!(line.contains("captured: myapp::job INFO"), "{line}");
    // The values of `message`, `context` and `context_id`.
    assert!(line.contains("job step from worker \"worker\" 1"), "{line}");
    let e = run.expect(&["log_to_file: "]);
    assert!(e.contains("another tracing subscriber"), "{e}");
    let lines = run.finish_after_calls();
    // Nothing in the default format on stderr: ours was never installed.
    assert!(
        !lines.iter().any(|l| has_time_and_level(l, 'I')),
        "{}",
        lines.join("\n")
    );
}
