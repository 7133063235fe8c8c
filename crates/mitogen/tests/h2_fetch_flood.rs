//! H2: a child that floods its parent with `FETCH_BINARY` requests while
//! never reading the replies must not make the parent hold one copy of the
//! binary, or one thread, per request. Own binary: installs a global log
//! capture and measures this process's peak memory.

mod common;
mod logs;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use mitogen::{handle, LocalOptions, Message, Router};

/// Size of the foreign binary the master serves.
const BINARY_LEN: usize = 8 << 20;
/// Requests the hostile child sends.
const REQUESTS: u32 = 100;

/// Hostile: stall this context's own broker (so nothing it is sent gets
/// read), then ask the parent for `machine` `n` times.
#[mitogen::remote]
fn flood_fetch(router: &Router, machine: String, n: u32, stall_ms: u64) -> u32 {
    stall_broker(router, stall_ms);
    let parent = router.parent_ids()[0];
    let reply_to = router.add_handler(|_| {}, None, true, None, None).unwrap();
    for _ in 0..n {
        let mut m = Message::new(handle::FETCH_BINARY, machine.as_bytes().to_vec());
        m.dst_id = parent;
        m.reply_to = reply_to;
        router.route(m).unwrap();
        // Space the sends past the stream's burst window so each is written
        // at once by this thread, not queued for the stalled broker.
        std::thread::sleep(Duration::from_micros(100));
    }
    n
}

#[test]
fn h2_fetch_binary_flood_bounded() {
    let errors = logs::capture(tracing::Level::ERROR);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    // Incompressible bytes of a binary for another architecture.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..BINARY_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    drop(bytes);

    Router::with(|router| {
        router.add_binary("aarch64", &path).unwrap();
        let victim_caller = router.local(LocalOptions::default()).unwrap();
        let attacker = router.local(LocalOptions::default()).unwrap();
        assert_eq!(victim_caller.call(add::remote, (1, 2)).unwrap(), 3);

        // Peak memory from here on: reset VmHWM to the current RSS.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let rss_before = status_kb("VmRSS:");
        let threads_before = mitogen_testkit::thread_count();

        let sent = attacker
            .call(flood_fetch::remote, ("aarch64".into(), REQUESTS, 2000))
            .unwrap();
        assert_eq!(sent, REQUESTS);

        // Every request but the first is refused, with a logged reason
        // naming the stream; meanwhile the thread count stays small.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut refusals = 0;
        let mut max_threads = threads_before;
        while refusals < REQUESTS - 1 {
            max_threads = max_threads.max(mitogen_testkit::thread_count());
            let line = errors.get_deadline(deadline).unwrap_or_else(|e| {
                panic!(
                    "{refusals} refusals logged, then {e}; peak memory +{} kB, threads {threads_before} -> {max_threads}, {} bytes of binary sent",
                    status_kb("VmHWM:").saturating_sub(rss_before),
                    router.binary_bytes_sent()
                )
            });
            if line.contains("refused FETCH_BINARY") {
                assert!(line.contains(attacker.name()), "{line}");
                assert!(
                    line.contains("already in flight") || line.contains("already sent"),
                    "{line}"
                );
                refusals += 1;
            }
        }
        max_threads = max_threads.max(mitogen_testkit::thread_count());
        assert!(
            max_threads <= threads_before + 2,
            "threads rose from {threads_before} to {max_threads}"
        );
        assert_eq!(
            router.binary_bytes_sent(),
            BINARY_LEN as u64,
            "the binary was sent to the flooding child exactly once"
        );
        let grown_kb = status_kb("VmHWM:").saturating_sub(rss_before);
        let limit_kb = 2 * BINARY_LEN as u64 / 1024;
        eprintln!(
            "{REQUESTS} requests: peak memory +{grown_kb} kB, threads {threads_before} -> at most {max_threads}"
        );
        assert!(
            grown_kb < limit_kb,
            "peak memory grew by {grown_kb} kB (limit {limit_kb} kB, one binary is {} kB)",
            BINARY_LEN / 1024
        );

        // The master still answers its real caller, at once.
        let start = Instant::now();
        assert_eq!(victim_caller.call(add::remote, (2, 3)).unwrap(), 5);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a call took {:?} during the flood",
            start.elapsed()
        );
    })
    .unwrap();
}
