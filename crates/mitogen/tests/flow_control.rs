//! Flow control (issue 9): a stream larger than memory to a slow reader,
//! directly and through a relay, keeps every process's memory bounded and
//! loses nothing; a sender to a context that never reads blocks, or gets
//! its value back; a child that floods its parent with requests while never
//! reading the replies cannot make the parent queue them without bound.
//!
//! Own binary: it measures this process's peak memory, so its tests take
//! turns (`serial`).

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use mitogen::{Blob, Context, Error, Receiver, Router, SendTimeoutError, Sender, TrySendError};

/// One stream of `COUNT` messages of `SIZE` bytes: 1 GiB.
const SIZE: usize = 64 * 1024;
const COUNT: u32 = 16 * 1024;
/// Peak memory allowed to each process moving the stream.
const MAX_PEAK_KB: u64 = 64 * 1024;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reset this process's peak-memory mark (`VmHWM`) to its current size.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}

#[mitogen::remote]
fn reset_peak_remote() {
    reset_peak();
}

#[mitogen::remote]
fn peak_kb() -> u64 {
    status_kb("VmHWM:")
}

/// Message `i`: its number, then `SIZE - 4` bytes of `i % 251`.
fn block(i: u32) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; SIZE];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

/// Send `count` blocks to `to`, then close it; returns this process's peak
/// memory (kB) since the start of the call.
#[mitogen::remote]
fn stream_blocks(to: Sender, count: u32) -> u64 {
    reset_peak();
    for i in 0..count {
        to.send(&Blob::from(block(i))).expect("send a block");
    }
    to.close().expect("close the stream");
    status_kb("VmHWM:")
}

/// Read the stream on `rx`: slowly (1 ms a message) for the first second,
/// then at full speed; check every block arrived whole and in order.
fn read_slowly(rx: &Receiver) -> u32 {
    let start = Instant::now();
    let mut next = 0u32;
    while let Ok(msg) = rx.recv() {
        let b: Blob = msg.unpickle().expect("a block");
        assert_eq!(b.len(), SIZE, "block {next} has the wrong size");
        let got = u32::from_le_bytes(b[..4].try_into().unwrap());
        assert_eq!(got, next, "blocks out of order");
        assert!(
            b[4..] == block(next)[4..],
            "block {next} arrived with the wrong bytes"
        );
        next += 1;
        if start.elapsed() < Duration::from_secs(1) {
            // The workload: a slow consumer, not a wait for anything.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    next
}

/// Stream 1 GiB from `source` to this process; return (our peak, the
/// source's peak) in kB.
fn stream_gib(router: &Router, source: &Context) -> (u64, u64) {
    let rx = Receiver::new(router);
    let call = source
        .call_async(stream_blocks::remote, (rx.to_sender(), COUNT))
        .unwrap();
    reset_peak();
    let t = Instant::now();
    let got = read_slowly(&rx);
    let ours = status_kb("VmHWM:");
    let theirs = call.get().expect("the streaming call");
    println!(
        "1 GiB in {:?}: peak {ours} kB here, {theirs} kB in {}",
        t.elapsed(),
        source.name()
    );
    assert_eq!(got, COUNT, "every block arrives");
    (ours, theirs)
}

/// Run `test`, an ignored test of this binary, alone in a fresh process:
/// its peak memory is then its own, not what earlier tests left in this
/// process's allocator.
fn alone(test: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("run the test binary");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its own process");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{test} did not run"
    );
}

#[test]
fn one_gib_to_a_slow_reader_keeps_both_sides_bounded() {
    alone("one_gib_to_a_slow_reader_alone");
}

#[test]
fn one_gib_through_a_relay_keeps_the_relay_bounded_too() {
    alone("one_gib_through_a_relay_alone");
}

#[test]
#[ignore = "run in its own process by one_gib_to_a_slow_reader_keeps_both_sides_bounded"]
fn one_gib_to_a_slow_reader_alone() {
    Router::with(|router| {
        let child = named(&router, "streamer");
        let (ours, theirs) = stream_gib(&router, &child);
        assert!(ours < MAX_PEAK_KB, "the master peaked at {ours} kB");
        assert!(theirs < MAX_PEAK_KB, "the child peaked at {theirs} kB");
    })
    .unwrap();
}

#[test]
#[ignore = "run in its own process by one_gib_through_a_relay_keeps_the_relay_bounded_too"]
fn one_gib_through_a_relay_alone() {
    Router::with(|router| {
        let relay = named(&router, "relay");
        let leaf = via(&router, &relay, "leaf").unwrap();
        relay.call(reset_peak_remote::remote, ()).unwrap();
        let (ours, theirs) = stream_gib(&router, &leaf);
        let relay_peak = relay.call(peak_kb::remote, ()).unwrap();
        println!("relay peak {relay_peak} kB");
        assert!(ours < MAX_PEAK_KB, "the master peaked at {ours} kB");
        assert!(theirs < MAX_PEAK_KB, "the leaf peaked at {theirs} kB");
        assert!(
            relay_peak < MAX_PEAK_KB,
            "the relay peaked at {relay_peak} kB"
        );
    })
    .unwrap();
}

/// Stall this context's broker for `ms` (it is stalled on return): it
/// reads nothing from its parent meanwhile.
#[mitogen::remote]
fn stall(router: &Router, ms: u64) -> u32 {
    stall_broker(router, ms);
    std::process::id()
}

#[test]
fn a_sender_to_a_context_that_never_reads_blocks_and_gets_its_value_back() {
    let _serial = serial();
    // A router made and gone before this test's: the process's first.
    Router::with(|_| ()).unwrap();
    Router::with(|router| {
        let child = named(&router, "never-reads");
        // Decoded on this test's router, not on the process's first one
        // (another test's, or the one made and shut down above): sends
        // through a dead router would fail.
        let tx: Sender = child.call(open_silent_inbox::remote, ()).unwrap();
        let pid = child.call(stall::remote, (60_000u64,)).unwrap();
        reset_peak();
        let before = status_kb("VmRSS:");
        // Try to send it 1 GiB.
        let mut sent = 0usize;
        let returned = loop {
            assert!(sent < 1 << 30, "sent 1 GiB to a context that reads nothing");
            match tx.send_timeout(Blob::from(block(7)), Duration::from_millis(500)) {
                Ok(()) => sent += SIZE,
                Err(SendTimeoutError::Timeout { value, waited }) => {
                    assert!(waited >= Duration::from_millis(500), "gave up early: {waited:?}");
                    break value;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        };
        assert_eq!(&returned[..], &block(7)[..], "the value comes back intact");
        let window = router.flow_window() as usize;
        assert!(
            sent <= window + SIZE,
            "{sent} bytes accepted for a reader that reads nothing (window {window})"
        );
        assert!(
            matches!(tx.try_send(Blob::from(block(8))), Err(TrySendError::Full(v)) if v.len() == SIZE),
            "try_send reports full and hands the value back"
        );
        let grew = status_kb("VmHWM:").saturating_sub(before);
        println!("accepted {sent} bytes; memory +{grew} kB");
        assert!(grew < 32 * 1024, "memory rose by {grew} kB");

        // A sender blocked without a deadline wakes with the loss.
        let tx2 = tx.clone();
        let done = mitogen::Latch::new();
        let d2 = done.clone();
        let t = std::thread::spawn(move || {
            let r = tx2.send(&Blob::from(block(9)));
            let _ = d2.put(());
            r
        });
        sigkill(pid);
        done.get_timeout(Duration::from_secs(20))
            .expect("the blocked sender wakes when its receiver's context dies");
        match t.join().unwrap() {
            Err(Error::Channel(e)) => {
                assert!(e.to_string().contains("never-reads"), "{e}")
            }
            other => panic!("expected a lost-context error, got {other:?}"),
        }
    })
    .unwrap();
}

/// Hostile (M6): stall our broker (it reads nothing), then write `n`
/// requests for a handle nobody serves in the master, each asking for a
/// reply, straight to our stream socket: every refusal comes back to a
/// context that is not reading. Returns once all are written, which a
/// parent that stops reading us delays until our broker reads again.
#[mitogen::remote]
fn reflect_flood(router: &Router, n: u32, stall_ms: u64) -> u32 {
    use std::io::Write;
    stall_broker(router, stall_ms);
    let fd = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target
                .to_string_lossy()
                .starts_with("socket:")
                .then_some(e.file_name())
        })
        .filter_map(|n| n.to_str()?.parse::<i32>().ok())
        .min()
        .expect("the stream socket");
    // SAFETY: `fd` is this process's stream socket, open for its whole life
    // (the broker owns it); the duplicate made here is closed on return.
    let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .unwrap();
    let mut sock = std::os::unix::net::UnixStream::from(owned);
    let me = router.context_id();
    let frame = mitogen_wire::Header {
        src_id: me,
        auth_id: me,
        handle: 9999,
        reply_to: 4242,
        ..Default::default()
    }
    .to_bytes();
    let all = frame.repeat(n as usize);
    let mut pos = 0;
    while pos < all.len() {
        match sock.write(&all[pos..]) {
            Ok(k) => pos += k,
            // The descriptor is non-blocking (shared with the broker).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => panic!("write to the stream: {e}"),
        }
    }
    n
}

#[test]
fn m6_refusals_to_a_child_that_does_not_read_are_bounded() {
    let _serial = serial();
    Router::with(|router| {
        let attacker = named(&router, "reflector");
        let victim = named(&router, "bystander");
        reset_peak();
        let before = status_kb("VmRSS:");
        // 400 k refusals of ~70 bytes: ~28 MB if the master queued them all.
        let n = attacker
            .call(reflect_flood::remote, (400_000u32, 3000u64))
            .expect("the flood call ends once the attacker reads again");
        assert_eq!(n, 400_000);
        let grew = status_kb("VmHWM:").saturating_sub(before);
        println!("master memory +{grew} kB during the reflected flood");
        assert!(grew < 16 * 1024, "memory rose by {grew} kB");
        assert_eq!(victim.call(add::remote, (2, 3)).unwrap(), 5);
        assert_eq!(attacker.call(add::remote, (2, 3)).unwrap(), 5);
    })
    .unwrap();
}
