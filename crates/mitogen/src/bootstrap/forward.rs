//! Binaries for other architectures (Mitogen's module forwarder, for
//! executables). The master is given them with [`Router::add_binary`]; a
//! context that must start a child on another architecture asks its parent
//! for the binary by machine name (`FETCH_BINARY`) once, keeps it in memory
//! and serves its own children from that copy, so the master sends each
//! binary once per hop, never once per leaf. Concurrent requests for the
//! same machine share one fetch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mitogen_wire::handle::FETCH_BINARY;

use super::binary::Binary;
use crate::broker::lock;
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::message::Message;
use crate::router::{is_immediate_child, Router};
use crate::sync::Latch;

/// How long a context waits for its parent to send a binary.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

type Outcome = std::result::Result<Arc<Binary>, String>;

struct Pending {
    result: OnceLock<Outcome>,
    /// Closed when `result` is set: wakes every waiter.
    done: Latch<()>,
}

#[derive(Default)]
struct Store {
    binaries: Mutex<HashMap<String, Arc<Binary>>>,
    fetching: Mutex<HashMap<String, Arc<Pending>>>,
    /// Fetches sent to the parent (merged requests count once).
    fetches: std::sync::atomic::AtomicU64,
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(Store::default)
}

/// `uname -m` names of the architecture this program was built for.
pub(crate) fn own_machines() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64|amd64",
        "aarch64" => "aarch64|arm64",
        "x86" => "i386|i486|i586|i686|x86",
        "arm" => "armv6l|armv7l|arm",
        "powerpc64" => "ppc64le|ppc64",
        other => other,
    }
}

/// `true` when `machine` (from `uname -m`) runs this very binary.
pub(crate) fn is_own_machine(machine: &str) -> bool {
    own_machines().split('|').any(|m| m == machine)
}

impl Router {
    /// Make a build of this program for another architecture available to
    /// targets whose `uname -m` is `machine` (e.g. `aarch64`). Contexts
    /// below fetch it from here on demand, once each.
    ///
    /// # Errors
    /// The file cannot be read.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// router
    ///     .add_binary("aarch64", "target/aarch64-unknown-linux-musl/release/myprog")
    ///     .unwrap();
    /// # }).unwrap();
    /// ```
    pub fn add_binary(&self, machine: &str, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| StreamError::Io {
            what: format!("reading the {machine} binary {}", path.display()),
            source: e,
        })?;
        lock(&store().binaries).insert(machine.to_string(), Binary::from_bytes(bytes));
        Ok(())
    }

    /// Binaries this process has asked its parent for so far (requests made
    /// at the same time count once).
    pub fn binary_fetches(&self) -> u64 {
        store().fetches.load(Ordering::Relaxed)
    }

    /// `(uname -m pattern, sha256)` of every binary this context can supply.
    pub(crate) fn known_binaries(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Ok(own) = Binary::current() {
            v.push((own_machines().to_string(), own.sha256.clone()));
        }
        for (m, b) in lock(&store().binaries).iter() {
            if !is_own_machine(m) {
                v.push((m.clone(), b.sha256.clone()));
            }
        }
        v
    }

    /// The binary for `machine`: ours, one added here, or one fetched from
    /// the parent (once; concurrent callers share the fetch).
    pub(crate) fn binary_for(&self, machine: &str) -> Outcome {
        if is_own_machine(machine) {
            return Binary::current().map_err(|e| format!("reading this program's binary: {e}"));
        }
        if let Some(b) = lock(&store().binaries).get(machine) {
            return Ok(b.clone());
        }
        let (pending, leader) = {
            let mut f = lock(&store().fetching);
            match f.get(machine) {
                Some(p) => (p.clone(), false),
                None => {
                    let p = Arc::new(Pending {
                        result: OnceLock::new(),
                        done: Latch::new(),
                    });
                    f.insert(machine.to_string(), p.clone());
                    (p, true)
                }
            }
        };
        if leader {
            let outcome = self.fetch_binary(machine);
            if let Ok(b) = &outcome {
                lock(&store().binaries).insert(machine.to_string(), b.clone());
            }
            let _ = pending.result.set(outcome);
            lock(&store().fetching).remove(machine);
            pending.done.close();
        } else {
            let _ = pending.done.get();
        }
        pending
            .result
            .get()
            .cloned()
            .unwrap_or_else(|| Err("the fetch was abandoned".into()))
    }

    fn fetch_binary(&self, machine: &str) -> Outcome {
        let Some(&parent) = self.parent_ids().first() else {
            return Err(format!(
                "no binary for {machine} was added (Router::add_binary)"
            ));
        };
        store().fetches.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("fetching the {machine} binary from context {parent}");
        let msg = Message::new(FETCH_BINARY, machine.as_bytes().to_vec());
        match Context::new(self, parent, None).send_await(msg, Some(FETCH_TIMEOUT)) {
            Ok(reply) => Ok(Binary::from_bytes(reply.data)),
            Err(e) => Err(format!(
                "fetching the {machine} binary from the parent: {e}"
            )),
        }
    }
}

/// Answer children's `FETCH_BINARY` requests. Resolving may itself need a
/// fetch from our parent, so it runs on its own thread, not the broker's.
pub(crate) fn serve_binaries(router: &Router) {
    let r = router.clone();
    router.add_handler(
        move |msg: Message| {
            let r = r.clone();
            let _ = std::thread::Builder::new()
                .name("mitogen-binary".into())
                .spawn(move || {
                    let machine = String::from_utf8_lossy(&msg.data).into_owned();
                    match r.binary_for(&machine) {
                        Ok(b) if b.bytes.len() <= r.max_message_size() => {
                            r.inner
                                .binary_bytes_sent
                                .fetch_add(b.bytes.len() as u64, Ordering::Relaxed);
                            let _ = msg.reply_message(Message::new(0, b.bytes.clone()));
                        }
                        Ok(b) => r.refuse(
                            &msg,
                            &format!(
                                "the {machine} binary ({} bytes) exceeds the maximum message size",
                                b.bytes.len()
                            ),
                        ),
                        Err(e) => r.refuse(&msg, &e),
                    }
                });
        },
        Some(FETCH_BINARY),
        true,
        None,
        Some(Arc::new(is_immediate_child)),
    );
}
