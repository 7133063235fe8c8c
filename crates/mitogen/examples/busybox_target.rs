//! This program, built as the workspace builds it (static: see
//! `.cargo/config.toml`) or with `scripts/build-static.sh`, runs on a target
//! that holds nothing but a shell: it connects to a running Docker container (by default one of
//! the `mitogen-test/busybox` image: busybox-static, no libc), calls a
//! function there, disconnects, connects again and reports how many binary
//! bytes each connection uploaded (the second finds the binary cached).
//!
//! ```text
//! docker run -d --name bb mitogen-test/busybox:latest /bin/sleep 1000000
//! cargo run --release --example busybox_target -- bb
//! ```
//!
//! The last lines it prints are `key=value` pairs that
//! `tests/static_target.rs` checks; when the first connection fails (a
//! dynamically linked build, say) it prints `failure_ms` and
//! `failure_kind` before the error.

use std::time::{Duration, Instant};

use mitogen::DockerOptions;

/// Runs on the target: what it sees of its own system.
#[mitogen::remote]
fn describe(numbers: Vec<u64>) -> (u64, bool, String) {
    let sum = numbers.iter().sum();
    // No glibc loader on a busybox-only target.
    let has_loader = std::path::Path::new("/lib64/ld-linux-x86-64.so.2").exists();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    (sum, has_loader, kernel)
}

fn main() {
    mitogen::main(|router| {
        let Some(container) = std::env::args().nth(1) else {
            eprintln!("usage: busybox_target <container>");
            std::process::exit(2);
        };
        let connect = || {
            let mut opts = DockerOptions::container(container.clone());
            opts.common.connect_timeout = Duration::from_secs(30);
            router.docker(opts)
        };

        let started = Instant::now();
        let cold = match connect() {
            Ok(c) => c,
            Err(e) => {
                // For tests/static_target.rs: a dynamic build must fail fast,
                // by kind.
                println!("failure_ms={}", started.elapsed().as_millis());
                println!("failure_kind={:?}", e.connect_failure());
                return Err(e);
            }
        };
        let (sum, has_loader, kernel) = cold.call(describe::remote, ((1..=100).collect(),))?;
        let cold_bytes = router.binary_bytes_sent();
        println!(
            "cold: answered in {:.1?}: sum {sum}, glibc loader present: {has_loader}, kernel {kernel}",
            started.elapsed()
        );
        cold.shutdown(true)?;

        let started = Instant::now();
        let warm = connect()?;
        let (warm_sum, _, _) = warm.call(describe::remote, (vec![7, 8],))?;
        let warm_bytes = router.binary_bytes_sent() - cold_bytes;
        println!("warm: answered in {:.1?}", started.elapsed());
        warm.shutdown(true)?;

        println!("sum={sum}");
        println!("warm_sum={warm_sum}");
        println!("target_has_glibc_loader={has_loader}");
        println!("cold_binary_bytes={cold_bytes}");
        println!("warm_binary_bytes={warm_bytes}");
        Ok(())
    })
}
