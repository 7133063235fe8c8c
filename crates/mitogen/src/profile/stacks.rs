//! A text dump of every thread's stack in this process, for a hung call.
//!
//! Each thread is listed from `/proc/self/task` and asked for its stack by
//! a signal (`sys::stacks`); the addresses are resolved here, outside the
//! signal handler, with the ELF symbol table of the executable
//! (`symbols`): function names only, no files or lines. Binaries with
//! symbols (test and debug builds, or a release built with
//! `strip = "debuginfo"` or `strip = false`) show function names; a binary
//! built with `strip = "symbols"` (our release profile) shows each frame
//! as an offset into the executable, to resolve offline with
//! `addr2line -f -e <the unstripped binary> <offset>`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::symbols::{exe_base, Symbols};
use crate::sys::stacks;

/// How long one thread may take to answer.
const PER_THREAD: Duration = Duration::from_secs(1);

/// The stacks of every thread of this process but the calling one, with
/// each thread's id and name.
pub(crate) fn dump() -> String {
    let me = stacks::gettid();
    let pid = std::process::id();
    let base = exe_base();
    let symbols = Symbols::of_this_program();
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
            Ok(ips) => write_frames(&mut out, &ips, base, &symbols),
            Err(e) => {
                let _ = writeln!(out, "    <no stack: {e}>");
            }
        }
        out.push('\n');
    }
    out
}

/// One line per frame, skipping the frames of the signal handler itself:
/// everything up to the signal trampoline.
fn write_frames(out: &mut String, ips: &[usize], base: Option<usize>, symbols: &Symbols) {
    // A zero return address ends the stack (the unwinder reports it). A
    // return address points after the call: look up the call itself.
    let frames: Vec<(usize, Option<String>)> = ips
        .iter()
        .filter(|&&ip| ip != 0)
        .map(|&ip| {
            let offset = base.and_then(|b| ip.checked_sub(b));
            (
                ip,
                offset.and_then(|o| symbols.name_at(o.saturating_sub(1))),
            )
        })
        .collect();
    let named = |what: &str| {
        frames
            .iter()
            .position(|(_, name)| name.as_deref().is_some_and(|n| n.contains(what)))
    };
    // The trampoline follows the handler; without symbols, show them all.
    let start = match (named("__restore_rt"), named("stacks::on_signal")) {
        (Some(t), _) => t + 1,
        (None, Some(h)) => h + 2,
        (None, None) => 0,
    }
    .min(frames.len());
    for (n, (ip, name)) in frames[start..].iter().enumerate() {
        let _ = match (name, base) {
            (Some(name), _) => writeln!(out, "  {n:>3}: {name}"),
            (None, Some(b)) if *ip >= b => writeln!(
                out,
                "  {n:>3}: <no symbol> at offset {:#x} in the executable",
                ip - b
            ),
            (None, _) => writeln!(out, "  {n:>3}: <no symbol> {ip:#x}"),
        };
    }
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
