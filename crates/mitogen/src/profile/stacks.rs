//! A text dump of every thread's stack in this process, for a hung call.
//!
//! Each thread is listed from `/proc/self/task` and asked for its stack by
//! a signal (`sys::stacks`); the addresses are resolved here, outside the
//! signal handler. Binaries with symbols (test and debug builds, or a
//! release built with `strip = "debuginfo"` or `strip = false`) show
//! function names, files and lines; a binary built with
//! `strip = "symbols"` (our release profile) shows each frame as an offset
//! into the executable, to resolve offline with
//! `addr2line -f -e <the unstripped binary> <offset>`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::sys::stacks;

/// How long one thread may take to answer.
const PER_THREAD: Duration = Duration::from_secs(1);

/// The stacks of every thread of this process but the calling one, with
/// each thread's id and name.
pub(crate) fn dump() -> String {
    let me = stacks::gettid();
    let pid = std::process::id();
    let base = exe_base();
    let mut out = String::new();
    let mut tids: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    for tid in tids.into_iter().filter(|&t| t != me) {
        let name = if tid == pid {
            "main".to_string()
        } else {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_else(|_| "?".into())
        };
        let _ = writeln!(out, "thread '{name}' (tid {tid}):");
        match stacks::capture(tid, Instant::now() + PER_THREAD) {
            Ok(ips) => write_frames(&mut out, &ips, base),
            Err(e) => {
                let _ = writeln!(out, "    <no stack: {e}>");
            }
        }
        out.push('\n');
    }
    out
}

/// One line per frame (two with a file and line), skipping the frames of
/// the signal handler itself: everything up to the signal trampoline.
fn write_frames(out: &mut String, ips: &[usize], base: Option<usize>) {
    // A zero return address ends the stack (the unwinder reports it).
    let frames: Vec<(usize, Vec<(String, String)>)> = ips
        .iter()
        .filter(|&&ip| ip != 0)
        .map(|&ip| (ip, resolve(ip)))
        .collect();
    let named = |what: &str| {
        frames
            .iter()
            .position(|(_, syms)| syms.iter().any(|(n, _)| n.contains(what)))
    };
    // The trampoline follows the handler; without symbols, show them all.
    let start = match (named("__restore_rt"), named("stacks::on_signal")) {
        (Some(t), _) => t + 1,
        (None, Some(h)) => h + 2,
        (None, None) => 0,
    }
    .min(frames.len());
    for (n, (ip, syms)) in frames[start..].iter().enumerate() {
        if syms.is_empty() {
            let _ = match base {
                Some(b) if *ip >= b => writeln!(
                    out,
                    "  {n:>3}: <no symbol> at offset {:#x} in the executable",
                    ip - b
                ),
                _ => writeln!(out, "  {n:>3}: <no symbol> {ip:#x}"),
            };
        }
        for (name, place) in syms {
            let _ = writeln!(out, "  {n:>3}: {name}");
            if !place.is_empty() {
                let _ = writeln!(out, "             at {place}");
            }
        }
    }
}

/// The function names (inlined ones first) and `file:line` of a return
/// address.
fn resolve(ip: usize) -> Vec<(String, String)> {
    let mut syms = Vec::new();
    // A return address points after the call: look up the call itself.
    backtrace::resolve(ip.saturating_sub(1) as *mut std::ffi::c_void, |sym| {
        let Some(name) = sym.name() else { return };
        let place = match (sym.filename(), sym.lineno()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.display()),
            _ => String::new(),
        };
        syms.push((format!("{name:#}"), place));
    });
    syms
}

/// Where the executable is mapped (its first mapping), for offsets.
fn exe_base() -> Option<usize> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with(exe))?;
    usize::from_str_radix(line.split('-').next()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[inline(never)]
    fn parked_in_a_frame_of_its_own(ready: mpsc::Sender<()>, go: mpsc::Receiver<()>) {
        ready.send(()).unwrap();
        let _ = go.recv();
    }

    /// A thread blocked in a known function shows that function.
    #[test]
    fn a_blocked_thread_shows_its_function() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let t = std::thread::Builder::new()
            .name("stack-probe".into())
            .spawn(move || parked_in_a_frame_of_its_own(ready_tx, go_rx))
            .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let text = dump();
        go_tx.send(()).unwrap();
        t.join().unwrap();
        let section = text
            .split("\n\n")
            .find(|s| s.contains("thread 'stack-probe'"))
            .unwrap_or_else(|| panic!("no stack-probe thread in:\n{text}"));
        assert!(
            section.contains("parked_in_a_frame_of_its_own"),
            "the probe's frame is missing:\n{section}"
        );
        assert!(
            !section.contains("on_signal"),
            "the handler's frames are shown:\n{section}"
        );
    }
}
