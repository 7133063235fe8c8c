//! Our side of the side-by-side benchmarks: the mitogen-rs twin of every
//! workload in `bench/py/workloads.py`.
//!
//! The ssh workloads need the run's ssh target (`ssh::Target`, from the
//! runner's sshd); without one they return `None`, which the runner prints
//! as "n/a" with a null ratio.
//!
//! Rules that hold for all of them, so the figures compare one-for-one with
//! Python Mitogen's:
//!
//! * They run in a process of their own: the runner re-executes itself as
//!   `mitogen-bench __ours --quick|--full [--only a,b]`, which calls these
//!   functions in table order and prints one JSON object; the memory
//!   workloads (`Workload::isolated`) get a fresh process each on top.
//! * Every workload starts its own broker/router ("session") and shuts it
//!   down, children and all, before returning; shutdown is never timed.
//! * "Local child" means the library's equivalent of Python Mitogen's
//!   `router.local()`: a new process on this machine, connected over a
//!   socketpair/pipe to its parent and bootstrapped the way the library
//!   bootstraps any child.
//! * "noop" is a registered remote function taking no argument and returning
//!   unit; "call" means the blocking call of it on a context (issue, wait for
//!   and decode the result).
//! * Time with `std::time::Instant`; MB = 1e6 bytes; MiB = 2^20 bytes.
//! * Iteration counts come from [`Profile`], whose fields mirror Python's
//!   `PROFILES`.
//!
//! A panic or an error inside one of them should make it return `None`
//! (the runner then shows "n/a"), not abort the whole `__ours` process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen::{
    AsyncCall, Context, ForkOptions, LocalOptions, Member, Message, Receiver, Router, Select,
    SshOptions,
};
use serde_bytes::Bytes;

use crate::remote_fns::{
    length_borrowed, make_bytes, noop, peak_rss_kb, pid, send_many, stream_chunks,
};
use crate::ssh::{self, Target};
use crate::stats::median;
use crate::workloads::Profile;

/// The bulk payload: 64 MiB.
const BULK: usize = 64 << 20;
/// MB/s are 1e6 bytes a second.
const MB: f64 = 1e6;

/// `local_connect_first_call_ms`.
///
/// `p.connect_n` samples, each in a fresh session: start the clock, create
/// one local child, make one blocking noop call on it, stop the clock.
/// Report the median, in ms. Python: `router.local()` then
/// `ctx.call(noop)`. Limit: `raw_spawn_true_ms`.
pub fn local_connect_first_call_ms(p: &Profile) -> Option<f64> {
    let mut samples = Vec::with_capacity(p.connect_n);
    for _ in 0..p.connect_n {
        samples.push(session(|router| {
            let t0 = Instant::now();
            let ctx = local(router)?;
            ctx.call(noop::remote, ())?;
            Ok(ms(t0))
        })?);
    }
    median(&samples)
}

/// `fork_connect_first_call_ms`.
///
/// One session: an untimed fork (which starts the zygote) and call, then
/// `p.connect_n` samples of: start the clock, fork one child, make one
/// blocking noop call on it, stop the clock; shut it down, untimed. Report
/// the median, in ms. Python: `router.fork()` then `ctx.call(noop)`.
pub fn fork_connect_first_call_ms(p: &Profile) -> Option<f64> {
    session(|router| {
        router.fork(ForkOptions::new())?.call(noop::remote, ())?;
        let mut samples = Vec::with_capacity(p.connect_n);
        for _ in 0..p.connect_n {
            let t0 = Instant::now();
            let ctx = router.fork(ForkOptions::new())?;
            ctx.call(noop::remote, ())?;
            samples.push(ms(t0));
            ctx.shutdown(true)?;
        }
        Ok(median(&samples))
    })
    .flatten()
}

/// `call_roundtrip_us`.
///
/// One local child; `p.rt_warm` untimed noop calls, then `p.rt_n`
/// sequential blocking noop calls timed together. Report total time / `rt_n`
/// in µs. Limit: `raw_pingpong_us`.
pub fn call_roundtrip_us(p: &Profile) -> Option<f64> {
    roundtrip_us(p, false)
}

/// `call_roundtrip_profiled_us` (ours only): `call_roundtrip_us` with
/// profiling on in the master and the child (`Router::enable_profiling`),
/// to measure its overhead (target: at most 10 % over `call_roundtrip_us`).
pub fn call_roundtrip_profiled_us(p: &Profile) -> Option<f64> {
    roundtrip_us(p, true)
}

fn roundtrip_us(p: &Profile, profiled: bool) -> Option<f64> {
    session(|router| {
        // A process-wide switch: set it either way so no other row inherits it.
        router.set_profiling(profiled);
        let ctx = local(router)?;
        for _ in 0..p.rt_warm {
            ctx.call(noop::remote, ())?;
        }
        let t0 = Instant::now();
        for _ in 0..p.rt_n {
            ctx.call(noop::remote, ())?;
        }
        let per_call = us(t0) / p.rt_n as f64;
        router.set_profiling(false);
        Ok(per_call)
    })
}

/// `pipelined_calls_per_s`.
///
/// One local child; `p.rt_warm` untimed noop calls. Then, timed: issue noop
/// calls asynchronously keeping exactly 100 in flight (start 100; each time
/// any one completes and its result is decoded, issue the next) until
/// `p.pipe_n` have completed. Report `pipe_n` / elapsed, in calls/s. Python:
/// `ctx.call_async(noop)` + `mitogen.select.Select(oneshot=True)`.
pub fn pipelined_calls_per_s(p: &Profile) -> Option<f64> {
    const IN_FLIGHT: usize = 100;
    session(|router| {
        let ctx = local(router)?;
        for _ in 0..p.rt_warm {
            ctx.call(noop::remote, ())?;
        }
        let n = p.pipe_n;
        // Each call is both a member of the select and kept here, by reply
        // handle, to decode its reply with (Python's `sel.get()` unpickles).
        let mut pending: HashMap<u32, Arc<AsyncCall<()>>> = HashMap::with_capacity(IN_FLIGHT);
        let mut select = Select::new();
        let issue = |pending: &mut HashMap<_, _>, select: &mut Select| -> mitogen::Result<()> {
            let call = Arc::new(ctx.call_async(noop::remote, ())?);
            pending.insert(call.handle(), call.clone());
            select.add(Shared(call));
            Ok(())
        };
        let t0 = Instant::now();
        let mut issued = 0;
        while issued < n.min(IN_FLIGHT) {
            issue(&mut pending, &mut select)?;
            issued += 1;
        }
        let mut done = 0;
        while done < n {
            let msg = select.recv()?;
            let call = pending
                .remove(&msg.receiver_handle())
                .expect("a reply for a call in flight");
            call.decode(&msg)?;
            done += 1;
            if issued < n {
                issue(&mut pending, &mut select)?;
                issued += 1;
            }
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    })
}

/// `arg_64mib_mbps`.
///
/// One local child, one untimed noop call. Build a 64 MiB byte buffer
/// (untimed). Then `p.bulk_n` times, timed each: call a remote function
/// taking the bytes (`Vec<u8>` or the library's bytes type) and returning
/// their length as an integer; check the length. Report the median of
/// 64 MiB / 1e6 / seconds, in MB/s. Limit: `raw_socketpair_mbps`.
pub fn arg_64mib_mbps(p: &Profile) -> Option<f64> {
    session(|router| {
        let ctx = local(router)?;
        ctx.call(noop::remote, ())?;
        let data = vec![b'x'; BULK];
        let mut samples = Vec::with_capacity(p.bulk_n);
        for _ in 0..p.bulk_n {
            let t0 = Instant::now();
            let got = ctx.call(length_borrowed(), (Bytes::new(&data),))?;
            let dt = t0.elapsed().as_secs_f64();
            assert_eq!(got, BULK as u64);
            samples.push(BULK as f64 / MB / dt);
        }
        Ok(median(&samples))
    })
    .flatten()
}

/// `result_64mib_mbps`.
///
/// One local child, one untimed noop call. Then `p.bulk_n` times, timed
/// each: call a remote function taking `n = 64 MiB` and returning `n` bytes
/// of `b'x'` (built in the child); check the length received. Report the
/// median of 64 MiB / 1e6 / seconds, in MB/s. Limit: `raw_socketpair_mbps`.
pub fn result_64mib_mbps(p: &Profile) -> Option<f64> {
    session(|router| {
        let ctx = local(router)?;
        ctx.call(noop::remote, ())?;
        let mut samples = Vec::with_capacity(p.bulk_n);
        for _ in 0..p.bulk_n {
            let t0 = Instant::now();
            let got = ctx.call(make_bytes::remote, (BULK as u64,))?;
            let dt = t0.elapsed().as_secs_f64();
            assert_eq!(got.len(), BULK);
            drop(got);
            samples.push(BULK as f64 / MB / dt);
        }
        Ok(median(&samples))
    })
    .flatten()
}

/// `small_msgs_per_s`.
///
/// One local child, one untimed noop call. Open a receiver in the master
/// and make a sender for it (Python: `Receiver(router).to_sender()`). Start
/// the clock, issue an asynchronous call of a remote function taking the
/// sender and `n = p.msgs_n` that sends the integers `0..n` one message each
/// and then closes the sender; receive until the close is seen, counting
/// messages; stop the clock; then collect the call's result. Check the count
/// equals `n`. Report `n` / elapsed, in msgs/s (child → master).
pub fn small_msgs_per_s(p: &Profile) -> Option<f64> {
    let n = p.msgs_n;
    session(|router| {
        let ctx = local(router)?;
        ctx.call(noop::remote, ())?;
        let rx = Receiver::new(router);
        let sender = rx.to_sender();
        let t0 = Instant::now();
        let call = ctx.call_async(send_many::remote, (sender, n as u64))?;
        // Ends at the dead message `close()` sends.
        let got = rx.iter().count();
        let dt = t0.elapsed().as_secs_f64();
        call.get()?;
        assert_eq!(got, n);
        Ok(n as f64 / dt)
    })
}

/// `fanout_50_create_call_ms`: [`create_and_call_ms`] with 50 in one fresh
/// session, in ms.
pub fn fanout_50_create_call_ms(p: &Profile) -> Option<f64> {
    create_and_call_ms(p, 50)
}

/// `chain_5_connect_ms`.
///
/// `p.chain_n` samples, each in a fresh session: start the clock; create a
/// local child; create a local child *of that child* (Python:
/// `router.local(via=previous)`), and so on until the chain is 5 deep; make
/// one blocking noop call on the deepest; stop the clock. Report the median,
/// in ms.
pub fn chain_5_connect_ms(p: &Profile) -> Option<f64> {
    let mut samples = Vec::with_capacity(p.chain_n);
    for _ in 0..p.chain_n {
        samples.push(session(|router| {
            let t0 = Instant::now();
            let deepest = chain(router, 5)?;
            deepest.call(noop::remote, ())?;
            Ok(ms(t0))
        })?);
    }
    median(&samples)
}

/// `chain_5_roundtrip_us`: [`chain_roundtrip_us`] with depth 5.
pub fn chain_5_roundtrip_us(p: &Profile) -> Option<f64> {
    chain_roundtrip_us(p, 5)
}

/// `chain_10_roundtrip_us`: [`chain_roundtrip_us`] with depth 10.
pub fn chain_10_roundtrip_us(p: &Profile) -> Option<f64> {
    chain_roundtrip_us(p, 10)
}

/// Shared by `chain_{5,10}_roundtrip_us`.
///
/// Build a chain `depth` deep as in [`chain_5_connect_ms`] (untimed);
/// `p.rt_warm` untimed noop calls on the deepest; then `p.chain_rt_n`
/// sequential blocking noop calls on the deepest, timed together. Report
/// total time / `chain_rt_n`, in µs. The messages travel through every
/// intermediate context both ways.
pub fn chain_roundtrip_us(p: &Profile, depth: usize) -> Option<f64> {
    session(|router| {
        let deepest = chain(router, depth)?;
        for _ in 0..p.rt_warm {
            deepest.call(noop::remote, ())?;
        }
        let t0 = Instant::now();
        for _ in 0..p.chain_rt_n {
            deepest.call(noop::remote, ())?;
        }
        Ok(us(t0) / p.chain_rt_n as f64)
    })
}

/// `idle_child_rss_kb` (isolated: fresh `__ours` process).
///
/// One local child; call a remote function returning the child's pid
/// (Python: `ctx.call(os.getpid)`), then one noop call; sleep 0.2 s; read
/// `VmRSS` (kB) from `/proc/<pid>/status` of that pid, from the master.
/// Report it, in kB. The pid must be that of the process that runs the
/// calls (not a wrapper or a first-stage loader that exec'd it).
pub fn idle_child_rss_kb(p: &Profile) -> Option<f64> {
    let _ = p;
    session(|router| {
        let ctx = local(router)?;
        let pid = ctx.call(pid::remote, ())?;
        ctx.call(noop::remote, ())?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(vmrss_kb(&format!("/proc/{pid}/status")))
    })
    .flatten()
}

/// `master_rss_50_children_kb` (isolated: fresh `__ours` process).
///
/// In a fresh process, do [`create_and_call_ms`] with 50 (children still
/// alive afterwards); sleep 0.2 s; report `VmRSS` of the master process itself
/// (`/proc/self/status`), in kB. The figure includes the bench binary's own
/// baseline, like Python's includes the interpreter's.
pub fn master_rss_50_children_kb(p: &Profile) -> Option<f64> {
    let _ = p;
    session(|router| {
        let (_, ctxs) = create_and_call(router, 50)?;
        std::thread::sleep(Duration::from_millis(200));
        let rss = vmrss_kb("/proc/self/status");
        drop(ctxs);
        Ok(rss)
    })
    .flatten()
}

/// `ssh_connect_overhead_warm_ms` (the runner subtracts `raw_ssh_true_ms`
/// of the same round from what this returns).
///
/// One untimed session first: connect over ssh to the target and call noop,
/// which leaves our binary in the target user's cache. Then
/// `p.ssh_connect_n` samples, each in a fresh session: start the clock,
/// connect over ssh ([`ssh_options`]), make one blocking noop call, stop
/// the clock; a sample that uploaded the binary is an error. Report the
/// median, in ms.
/// Python: `router.ssh(**same options)` then `ctx.call(noop)`.
pub fn ssh_connect_overhead_warm_ms(p: &Profile, t: &Target) -> Option<f64> {
    session(|router| router.ssh(ssh_options(t))?.call(noop::remote, ()))?;
    let mut samples = Vec::with_capacity(p.ssh_connect_n);
    for _ in 0..p.ssh_connect_n {
        samples.push(session(|router| {
            let t0 = Instant::now();
            router.ssh(ssh_options(t))?.call(noop::remote, ())?;
            let dt = ms(t0);
            expect_upload(router, false)?;
            Ok(dt)
        })?);
    }
    median(&samples)
}

/// `ssh_connect_overhead_cold_ms` (the runner subtracts `raw_ssh_true_ms`).
///
/// As the warm variant without the untimed session, and with nothing cached
/// on the target: before each sample, our binary is deleted from every
/// standard cache directory of the target user
/// ([`ssh::evict_cached_binary`]), and the sample passes a fresh empty cache
/// directory owned by that user as `cache_dir`, so the whole binary crosses
/// the wire (checked). Python Mitogen has no cache: its twin is the warm
/// one.
pub fn ssh_connect_overhead_cold_ms(p: &Profile, t: &Target) -> Option<f64> {
    let mut samples = Vec::with_capacity(p.ssh_connect_n);
    for _ in 0..p.ssh_connect_n {
        let cache = cold_cache(t)?;
        samples.push(session(|router| {
            let mut o = ssh_options(t);
            o.common.cache_dir = Some(cache.path().to_owned());
            let t0 = Instant::now();
            router.ssh(o)?.call(noop::remote, ())?;
            let dt = ms(t0);
            expect_upload(router, true)?;
            Ok(dt)
        })?);
    }
    median(&samples)
}

/// `ssh_roundtrip_us`.
///
/// One ssh context (cache warm); `p.rt_warm` untimed noop calls, then
/// `p.rt_n` sequential blocking noop calls timed together. Report total
/// time / `rt_n` in µs. Limit: `raw_ssh_echo_roundtrip_us`.
pub fn ssh_roundtrip_us(p: &Profile, t: &Target) -> Option<f64> {
    session(|router| {
        let ctx = router.ssh(ssh_options(t))?;
        for _ in 0..p.rt_warm {
            ctx.call(noop::remote, ())?;
        }
        let t0 = Instant::now();
        for _ in 0..p.rt_n {
            ctx.call(noop::remote, ())?;
        }
        Ok(us(t0) / p.rt_n as f64)
    })
}

/// `ssh_bootstrap_bytes_warm`.
///
/// One untimed session leaves our binary in the target's cache. Then, in a
/// fresh session, connect over ssh with `ssh_path` = the run's `ssh-count`
/// wrapper and make one noop call; as soon as it returns, read what the
/// wrapper counted ([`ssh::read_counts`]): the bytes of the arguments given
/// to ssh plus the bytes written to ssh's stdin from its start until then.
/// Report that, in bytes.
pub fn ssh_bootstrap_bytes_warm(p: &Profile, t: &Target) -> Option<f64> {
    let _ = p;
    session(|router| router.ssh(ssh_options(t))?.call(noop::remote, ()))?;
    bootstrap_bytes(t, false).map(|(bytes, _)| bytes)
}

/// `ssh_bootstrap_bytes_cold`: as the warm variant with nothing cached on
/// the target: our binary is first deleted from every standard cache
/// directory of the target user ([`ssh::evict_cached_binary`]), and the
/// upload is checked. Unlike [`ssh_connect_overhead_cold_ms`] no `cache_dir`
/// is passed: it would put its path into the first stage twice, bytes a
/// normal connect does not send. Python Mitogen has no cache: its twin is
/// the warm one.
pub fn ssh_bootstrap_bytes_cold(p: &Profile, t: &Target) -> Option<f64> {
    let _ = p;
    evict(t)?;
    bootstrap_bytes(t, true).map(|(bytes, _)| bytes)
}

/// `quickstart_cold_bootstrap_bytes` (ours only).
///
/// What [`ssh_bootstrap_bytes_cold`] would be for the quickstart example
/// (`examples/quickstart` of the runner's build, made by `bench/run.sh`; found
/// next to the runner's build, [`crate::BUILD_DIR_ENV`]) instead
/// of this binary: measure a cold bootstrap of this binary as there, then
/// take away this binary's gzip stream (whose length the router reports)
/// and put in the quickstart's, compressed here exactly as the library does
/// (flate2, level 6), adjusting the upload's header line for the number of
/// digits of the two sizes it holds. Everything else (first stage,
/// markers, configuration, the call) is the same for any program. In
/// bytes.
pub fn quickstart_cold_bootstrap_bytes(p: &Profile, t: &Target) -> Option<f64> {
    let _ = p;
    let exe = std::env::current_exe().ok()?;
    let build_dir = match std::env::var_os(crate::BUILD_DIR_ENV) {
        Some(d) => d.into(),
        None => exe.parent()?.to_owned(),
    };
    let quickstart = build_dir.join("examples/quickstart");
    let qs = match std::fs::read(&quickstart) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "[ours] {}: {e} (cargo build --release --example quickstart -p mitogen)",
                quickstart.display()
            );
            return None;
        }
    };
    let ours_size = std::fs::metadata(&exe).ok()?.len();
    evict(t)?;
    let (bytes, gz_len) = bootstrap_bytes(t, true)?;
    // The upload is a header line holding the compressed and the real size
    // in decimal (and fields of fixed length), then the gzip stream.
    let upload =
        |gz: u64, size: u64| (gz.to_string().len() + size.to_string().len()) as f64 + gz as f64;
    let qs_gz = gzip6(&qs).ok()?.len() as u64;
    eprintln!(
        "[ours] quickstart: {} bytes, gzip -6 {} bytes; bench binary {} bytes, gzip -6 {} bytes",
        qs.len(),
        qs_gz,
        ours_size,
        gz_len
    );
    Some(bytes - upload(gz_len, ours_size) + upload(qs_gz, qs.len() as u64))
}

/// gzip level 6 with flate2, as the library compresses the binary it
/// uploads (release builds).
fn gzip6(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data)?;
    enc.finish()
}

/// One session through the `ssh-count` wrapper: connect, one noop call,
/// then the bytes counted so far and the binary bytes the router uploaded.
/// A `cold` session must upload, a warm one must not.
fn bootstrap_bytes(t: &Target, cold: bool) -> Option<(f64, u64)> {
    session(|router| {
        ssh::clear_counts(&t.count_dir).map_err(io_err)?;
        let mut o = ssh_options(t);
        o.ssh_path = t.wrapper.to_string_lossy().into_owned();
        let ctx = router.ssh(o)?;
        ctx.call(noop::remote, ())?;
        let bytes = ssh::read_counts(&t.count_dir).map_err(io_err)?;
        expect_upload(router, cold)?;
        Ok(bytes.map(|b| (b as f64, router.binary_bytes_sent())))
    })
    .flatten()
}

/// The options every ssh workload connects with; the Python twin passes the
/// same (`ssh_kwargs` in `bench/py/workloads.py`). Defaults otherwise: host
/// keys enforced (against the fixture's known_hosts file, through
/// `ssh_args`), compression on, batch mode.
fn ssh_options(t: &Target) -> SshOptions {
    let mut o = SshOptions::new(t.host.clone());
    o.username = Some(t.user.clone());
    o.port = Some(t.port);
    o.identity_file = Some(t.key.clone());
    o.ssh_args = t.extra_args();
    o.common.connect_timeout = Duration::from_secs(30);
    o
}

/// Evicts our binary from the target user's caches and makes a fresh cache
/// directory for one cold sample.
fn cold_cache(t: &Target) -> Option<ssh::ColdCache> {
    evict(t)?;
    ssh::ColdCache::new(&t.user)
        .map_err(|e| eprintln!("[ours] making a cold cache directory: {e}"))
        .ok()
}

/// Deletes our binary from the target user's standard cache directories.
fn evict(t: &Target) -> Option<()> {
    ssh::evict_cached_binary(&t.user)
        .map_err(|e| eprintln!("[ours] evicting the cached binary: {e}"))
        .ok()
}

/// An error unless this session uploaded the binary (`cold`) or did not.
fn expect_upload(router: &Router, cold: bool) -> mitogen::Result<()> {
    let sent = router.binary_bytes_sent();
    if cold == (sent > 0) {
        Ok(())
    } else {
        Err(io_err(std::io::Error::other(format!(
            "expected a {} cache, but {sent} binary bytes were uploaded",
            if cold { "cold" } else { "warm" }
        ))))
    }
}

fn io_err(e: std::io::Error) -> mitogen::Error {
    mitogen::Error::from(mitogen::StreamError::Io {
        what: "bench".into(),
        source: e,
    })
}

/// Shared by `fanout_50_create_call_ms` and `scale_N_create_call_ms`.
///
/// In one fresh session, timed as a whole: create `n` local children one
/// after the other (each creation returns before the next starts), then make
/// one blocking noop call on each, one after the other. Report the elapsed
/// time, in ms. Python: `[router.local() for _ in range(n)]`, then
/// `ctx.call(noop)` for each.
pub fn create_and_call_ms(p: &Profile, n: usize) -> Option<f64> {
    let _ = p;
    session(|router| Ok(create_and_call(router, n)?.0))
}

/// `tree_500_master_rss_kb` / `tree_500_leaf_rss_kb` (ours only; Python
/// Mitogen would need ~10 GB for this tree).
///
/// 5 local relays, 99 leaves under each created `via=` its relay, one noop
/// call on each of the 500 collected with `Select::all`; then `VmRSS` of the
/// master (this process) or of one leaf (pid from a call).
pub fn tree_500_rss_kb(p: &Profile, leaf: bool) -> Option<f64> {
    let _ = p;
    session(|router| {
        let relays = (0..5)
            .map(|_| local(router))
            .collect::<mitogen::Result<Vec<_>>>()?;
        let mut all = relays.clone();
        for relay in &relays {
            for _ in 0..99 {
                all.push(router.local(LocalOptions::new().via(relay))?);
            }
        }
        mitogen::Select::all(
            all.iter()
                .map(|c| c.call_async(noop::remote, ()))
                .collect::<mitogen::Result<Vec<_>>>()?,
        )?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(if leaf {
            let pid = all.last().expect("500 contexts").call(pid::remote, ())?;
            vmrss_kb(&format!("/proc/{pid}/status"))
        } else {
            vmrss_kb("/proc/self/status")
        })
    })
    .flatten()
}

/// Messages and message size of the 1 GiB stream: 16384 x 64 KiB.
const STREAM_MSGS: u64 = 16384;
const STREAM_CHUNK: usize = 64 << 10;

/// `stream_1gib_slow_reader_peak_rss_kb` (`child` false) and
/// `stream_1gib_slow_reader_child_peak_rss_kb` (`child` true); isolated.
///
/// One local child, one untimed noop call. Open a receiver in the master,
/// start the clock and issue an asynchronous call of a remote function
/// taking its sender that sends [`STREAM_MSGS`] messages of
/// [`STREAM_CHUNK`] bytes (1 GiB; message `i` is `i` as 8 little-endian
/// bytes then `i % 256` repeated), then closes. The master receives until
/// the close, sleeping 1 ms after each message while less than 1 s has
/// passed (a slow reader; the workload, not synchronisation), and checks
/// every message's sequence number and bytes. It collects the call's
/// result, then calls a function returning the child's `VmHWM`. Report the
/// master's own `VmHWM` or the child's, in kB; the wall time and both
/// peaks go to stderr. Python: the same with `mitogen.core.Sender`/`Receiver`.
pub fn stream_1gib_slow_reader_peak_rss_kb(p: &Profile, child: bool) -> Option<f64> {
    let _ = p;
    session(|router| {
        let ctx = local(router)?;
        ctx.call(noop::remote, ())?;
        let rx = Receiver::new(router);
        let t0 = Instant::now();
        let call = ctx.call_async(
            stream_chunks::remote,
            (rx.to_sender(), STREAM_MSGS, STREAM_CHUNK as u64),
        )?;
        let mut seq = 0u64;
        for msg in rx.iter() {
            let data: serde_bytes::ByteBuf = msg.unpickle()?;
            let ok = data.len() == STREAM_CHUNK
                && data[..8] == seq.to_le_bytes()
                && data[8..].iter().all(|&b| b == seq as u8);
            assert!(ok, "stream message {seq} is not what was sent");
            seq += 1;
            if t0.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(call.get()?, STREAM_MSGS);
        assert_eq!(seq, STREAM_MSGS, "messages received");
        let child_kb = ctx.call(peak_rss_kb::remote, ())? as f64;
        let master_kb = vmhwm_kb("/proc/self/status");
        eprintln!(
            "[ours] stream_1gib_slow_reader: {secs:.2} s, peak RSS master {} kB, child {child_kb} kB",
            master_kb.unwrap_or(f64::NAN)
        );
        Ok(if child { Some(child_kb) } else { master_kb })
    })
    .flatten()
}

/// Creates `n` local children one after the other, then calls noop once on
/// each, one after the other: (elapsed ms, the children).
fn create_and_call(router: &Router, n: usize) -> mitogen::Result<(f64, Vec<Context>)> {
    let t0 = Instant::now();
    let ctxs = (0..n)
        .map(|_| local(router))
        .collect::<mitogen::Result<Vec<_>>>()?;
    for ctx in &ctxs {
        ctx.call(noop::remote, ())?;
    }
    Ok((ms(t0), ctxs))
}

/// A chain of `depth` local contexts, each created via the previous one
/// (Python: `router.local(via=ctx)`); returns the deepest.
fn chain(router: &Router, depth: usize) -> mitogen::Result<Context> {
    let mut ctx = local(router)?;
    for _ in 1..depth {
        ctx = router.local(LocalOptions::new().via(&ctx))?;
    }
    Ok(ctx)
}

/// Runs `f` in a fresh session (router and broker), shut down with its
/// children after `f` returns, untimed. An error is reported on stderr and
/// gives `None`.
pub(crate) fn session<T>(f: impl FnOnce(&Router) -> mitogen::Result<T>) -> Option<T> {
    match Router::with(|router| f(&router)) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) | Err(e) => {
            eprintln!("[ours] error: {e}");
            None
        }
    }
}

/// A local child, the library's `router.local()`.
fn local(router: &Router) -> mitogen::Result<Context> {
    router.local(LocalOptions::default())
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

fn us(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}

/// `VmRSS` in kB from a `/proc/<pid>/status` file.
fn vmrss_kb(status: &str) -> Option<f64> {
    status_kb(status, "VmRSS:")
}

/// `VmHWM` (peak RSS) in kB from a `/proc/<pid>/status` file.
fn vmhwm_kb(status: &str) -> Option<f64> {
    status_kb(status, "VmHWM:")
}

/// The kB figure of the `field` line of a `/proc/<pid>/status` file.
fn status_kb(status: &str, field: &str) -> Option<f64> {
    std::fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An [`AsyncCall`] shared between a [`Select`] (which owns its members)
/// and the map the pipelined workload decodes replies with.
struct Shared(Arc<AsyncCall<()>>);

impl Member for Shared {
    fn key(&self) -> u32 {
        self.0.key()
    }
    fn set_notify(&self, f: Option<Arc<dyn Fn() + Send + Sync>>) -> usize {
        self.0.set_notify(f)
    }
    fn try_recv(&self) -> Result<Message, mitogen::TryRecvError> {
        self.0.try_recv()
    }
}

/// Runs the workload called `name`; `None` if unknown or not measured (an
/// ssh workload without a `target`, too).
pub fn run(name: &str, p: &Profile, target: Option<&Target>) -> Option<f64> {
    if let Some(f) = ssh_workload(name) {
        return target.and_then(|t| f(p, t)).filter(|x| x.is_finite());
    }
    let v = match name {
        "local_connect_first_call_ms" => local_connect_first_call_ms(p),
        "fork_connect_first_call_ms" => fork_connect_first_call_ms(p),
        "call_roundtrip_us" => call_roundtrip_us(p),
        "call_roundtrip_profiled_us" => call_roundtrip_profiled_us(p),
        "pipelined_calls_per_s" => pipelined_calls_per_s(p),
        "arg_64mib_mbps" => arg_64mib_mbps(p),
        "result_64mib_mbps" => result_64mib_mbps(p),
        "small_msgs_per_s" => small_msgs_per_s(p),
        "fanout_50_create_call_ms" => fanout_50_create_call_ms(p),
        "chain_5_connect_ms" => chain_5_connect_ms(p),
        "chain_5_roundtrip_us" => chain_5_roundtrip_us(p),
        "chain_10_roundtrip_us" => chain_10_roundtrip_us(p),
        "idle_child_rss_kb" => idle_child_rss_kb(p),
        "master_rss_50_children_kb" => master_rss_50_children_kb(p),
        "setns_connect_first_call_ms" => crate::setns::setns_connect_first_call_ms(p),
        "tree_500_master_rss_kb" => tree_500_rss_kb(p, false),
        "tree_500_leaf_rss_kb" => tree_500_rss_kb(p, true),
        "docker_connect_first_call_ms" => crate::docker::connect_first_call_ms(p),
        "stream_1gib_slow_reader_peak_rss_kb" => stream_1gib_slow_reader_peak_rss_kb(p, false),
        "stream_1gib_slow_reader_child_peak_rss_kb" => stream_1gib_slow_reader_peak_rss_kb(p, true),
        other => match Profile::scale_n(other) {
            Some(n) if p.runs(other) => create_and_call_ms(p, n),
            _ => None,
        },
    };
    v.filter(|x| x.is_finite())
}

type SshWorkload = fn(&Profile, &Target) -> Option<f64>;

fn ssh_workload(name: &str) -> Option<SshWorkload> {
    Some(match name {
        "ssh_connect_overhead_warm_ms" => ssh_connect_overhead_warm_ms,
        "ssh_connect_overhead_cold_ms" => ssh_connect_overhead_cold_ms,
        "ssh_roundtrip_us" => ssh_roundtrip_us,
        "ssh_bootstrap_bytes_warm" => ssh_bootstrap_bytes_warm,
        "ssh_bootstrap_bytes_cold" => ssh_bootstrap_bytes_cold,
        "quickstart_cold_bootstrap_bytes" => quickstart_cold_bootstrap_bytes,
        _ => return None,
    })
}
