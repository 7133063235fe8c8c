//! Quick start: this program copies itself into child processes on this
//! machine and calls functions in them.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::time::Instant;

use mitogen::{Bootstrap, LocalOptions, Receiver, Select};

/// Runs in a child: which process am I, and who is my parent?
#[mitogen::remote]
fn whoami() -> (u32, u32, Vec<u32>) {
    (
        std::process::id(),
        mitogen::context_id(),
        mitogen::parent_ids(),
    )
}

/// Runs in a child: add up a slice of numbers.
#[mitogen::remote]
fn sum(numbers: Vec<u64>) -> u64 {
    numbers.iter().sum()
}

/// Runs in a child: fail the way real code fails.
#[mitogen::remote]
fn read_file(path: String) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path)
}

/// Runs in a child: stream lines back to the master through a Sender.
#[mitogen::remote]
fn countdown(to: mitogen::Sender, from: u32) {
    for i in (1..=from).rev() {
        to.send(&format!("{i}...")).unwrap();
    }
    to.close().unwrap();
}

fn main() {
    mitogen::main(|router| {
        let started = Instant::now();
        let child = router.local(LocalOptions::new().remote_name("worker"))?;
        let (pid, id, parents) = child.call(whoami::remote, ())?;
        println!(
            "started context {:?} (id {id}, pid {pid}, parents {parents:?}) and called it in {:.1?}",
            child.name(),
            started.elapsed()
        );

        // The same program through `sh -c '<first stage>'` and the binary
        // cache, as every remote method runs it.
        let cache = std::env::temp_dir().join("mitogen-quickstart-cache");
        let shelled = router.local(
            LocalOptions::new()
                .remote_name("via-shell")
                .bootstrap(Bootstrap::Shell)
                .cache_dir(cache.clone()),
        )?;
        println!(
            "started {:?} through the shell first stage; binary bytes uploaded so far: {} (0 when {} was already warm)",
            shelled.name(),
            router.binary_bytes_sent(),
            cache.display()
        );

        // Fan out: one call per context, collected as they complete.
        let chunks: Vec<Vec<u64>> = (0..4).map(|i| (i * 250..(i + 1) * 250).collect()).collect();
        let calls = chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i % 2 == 0 { &child } else { &shelled }.call_async(sum::remote, (c,)))
            .collect::<Result<Vec<_>, _>>()?;
        let total: u64 = Select::all(calls)?.into_iter().sum();
        println!("sum of 0..1000 computed in two children: {total}");

        // Remote errors come back with their type and message.
        match child.call(read_file::remote, ("/nonexistent/file".into(),)) {
            Err(e) => println!("remote error, as expected: {e}"),
            Ok(text) => println!("unexpectedly read {} bytes", text.len()),
        }

        // Streaming from a child.
        let rx = Receiver::new(&router);
        child.call(countdown::remote, (rx.to_sender(), 3))?;
        let lines: Vec<String> = rx.iter().map(|m| m.unpickle().unwrap()).collect();
        println!("streamed from the child: {}", lines.join(" "));

        child.shutdown(true)?;
        shelled.shutdown(true)?;
        println!("both children shut down; done in {:.1?}", started.elapsed());
        Ok(())
    })
}
