//! Profiling: per-function counts across a tree of 50 contexts, stream
//! bytes, the JSON dump each context writes on exit, and a stack dump of a
//! context stuck in a call.
//!
//! Profiling is a process-wide switch: every test here turns it on.

use std::sync::mpsc;
use std::time::Duration;

use mitogen::{Context, LocalOptions, Receiver, Router, Sender, Stats};

#[mitogen::remote]
fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[mitogen::remote]
fn fail_once() -> Result<(), String> {
    Err("expected failure".into())
}

/// Tell the caller it runs, then never return: a hung call.
#[mitogen::remote]
fn stuck_in_a_call(started: Sender) {
    started.send(&()).unwrap();
    park_forever();
}

#[inline(never)]
fn park_forever() {
    loop {
        std::thread::park();
    }
}

/// Run `f` on a thread of its own and wait at most `limit` for it.
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Calls made to context number `i` of the tree.
fn calls_for(i: usize) -> u64 {
    1 + (i % 4) as u64
}

#[test]
fn fifty_contexts_count_their_calls_and_dump_them_on_exit() {
    let mut dumps: Vec<(String, u32, u64)> = Vec::new();
    Router::with(|router| {
        router.enable_profiling();
        // 5 relays under the master, 9 leaves under each: 50 contexts.
        let mut tree: Vec<Context> = Vec::new();
        for r in 0..5 {
            let relay = router
                .local(LocalOptions::new().remote_name(format!("relay{r}")))
                .unwrap();
            tree.push(relay.clone());
            for l in 0..9 {
                let leaf = router
                    .local(
                        LocalOptions::new()
                            .via(&relay)
                            .remote_name(format!("leaf{r}.{l}")),
                    )
                    .unwrap();
                tree.push(leaf);
            }
        }
        assert_eq!(tree.len(), 50);
        for (i, ctx) in tree.iter().enumerate() {
            for n in 0..calls_for(i) {
                assert_eq!(ctx.call(add::remote, (n as i32, 1)).unwrap(), n as i32 + 1);
            }
        }
        // One failure, counted as such.
        assert!(tree[0].call(fail_once::remote, ()).is_err());
        for (i, ctx) in tree.iter().enumerate() {
            let stats: Stats = ctx.stats().unwrap();
            assert!(stats.profiling, "{}: profiling is inherited", ctx.name());
            assert_eq!(stats.context_id, ctx.context_id());
            assert_eq!(stats.name, ctx.name());
            let f = stats
                .function("add")
                .unwrap_or_else(|| panic!("{}: no stats for add: {stats:?}", ctx.name()));
            assert_eq!(f.function, "profiling::add");
            assert_eq!(f.calls, calls_for(i), "{}: calls of add", ctx.name());
            assert_eq!(f.failed, 0);
            assert!(
                0 < f.p50_ns && f.p50_ns <= f.p99_ns && f.p99_ns <= f.max_ns,
                "{}: quantiles out of order: {f:?}",
                ctx.name()
            );
            assert!(f.total_ns >= f.max_ns);
            let is_relay = i % 10 == 0;
            let ours: u64 = stats
                .functions
                .iter()
                .filter(|f| f.function.starts_with("profiling::"))
                .map(|f| f.calls)
                .sum();
            assert_eq!(ours, calls_for(i) + u64::from(i == 0), "{}", ctx.name());
            // Relays also served the built-in calls that started their leaves.
            assert!(stats.calls() >= ours + if is_relay { 9 } else { 0 });
            assert_eq!(
                stats.streams.len(),
                if is_relay { 10 } else { 1 },
                "{}: the parent stream and one per child: {:?}",
                ctx.name(),
                stats.streams
            );
            let up = &stats.streams[0];
            assert!(
                up.bytes_in > 0 && up.bytes_out > 0,
                "{}: parent stream traffic: {up:?}",
                ctx.name()
            );
            assert!(stats.broker_wakeups > 0, "{}: broker wake-ups", ctx.name());
            assert!(stats.max_call_queue >= 1);
            let path = stats
                .dump_path
                .clone()
                .unwrap_or_else(|| panic!("{}: no dump path", ctx.name()));
            dumps.push((path, ctx.context_id(), calls_for(i)));
        }
        let failed = tree[0].stats().unwrap();
        assert_eq!(
            failed.function("fail_once").map(|f| (f.calls, f.failed)),
            Some((1, 1))
        );
        let master = router.stats();
        assert!(master.functions.is_empty(), "the master serves no calls");
        assert_eq!(
            master.streams.len(),
            5,
            "one stream per relay: {:?}",
            master.streams
        );
        assert!(master
            .streams
            .iter()
            .all(|s| s.bytes_out > 0 && s.bytes_in > 0));
    })
    .unwrap();
    // Every context has exited (the router waited): each wrote its dump.
    let mut paths: Vec<&String> = dumps.iter().map(|d| &d.0).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 50, "one dump file per context");
    for (path, id, calls) in &dumps {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let stats: Stats =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}:\n{text}"));
        assert_eq!(stats.context_id, *id, "{path}");
        assert_eq!(
            stats.function("add").map(|f| f.calls),
            Some(*calls),
            "{path}"
        );
        let up = stats.streams.first().expect("the parent stream");
        assert!(up.bytes_in > 0 && up.bytes_out > 0, "{path}: {up:?}");
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn stack_dump_of_a_stuck_call_shows_the_remote_function() {
    Router::with(|router| {
        router.enable_profiling();
        // The stuck child is killed this long after the router shuts down.
        router
            .broker()
            .set_shutdown_timeout(Duration::from_millis(300));
        let child = router
            .local(LocalOptions::new().remote_name("stuck"))
            .unwrap();
        let started = Receiver::new(&router);
        let _call = child
            .call_async(stuck_in_a_call::remote, (started.to_sender(),))
            .unwrap();
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the stuck call did not start within 30 s");
        let c2 = child.clone();
        let text = bounded("dump_stacks", Duration::from_secs(60), move || {
            c2.dump_stacks()
        })
        .unwrap();
        let main = text
            .split("\n\n")
            .find(|s| s.starts_with("thread 'main'"))
            .unwrap_or_else(|| panic!("no main thread in the dump:\n{text}"));
        for frame in ["park_forever", "stuck_in_a_call"] {
            assert!(
                main.contains(frame),
                "the dispatcher's stack lacks {frame}:\n{main}"
            );
        }
        assert!(
            text.contains("thread 'mitogen-broker'"),
            "the broker thread is listed:\n{text}"
        );
        assert!(
            !text.contains("thread 'mitogen-stacks'"),
            "the dumping thread leaves itself out:\n{text}"
        );
        // Stats are served by the broker while the dispatcher is busy.
        let c3 = child.clone();
        let stats = bounded("stats", Duration::from_secs(30), move || c3.stats()).unwrap();
        assert!(
            stats.function("stuck_in_a_call").is_none(),
            "a call is counted when it returns: {stats:?}"
        );
    })
    .unwrap();
}
