//! Binaries for other architectures (Mitogen's module forwarder, for
//! executables). The master is given them with [`Router::add_binary`]; a
//! context that must start a child on another architecture asks its parent
//! for the binary by machine name (`FETCH_BINARY`) once, keeps it in memory
//! and serves its own children from that copy, so the master sends each
//! binary once per hop, never once per leaf. Concurrent requests for the
//! same machine share one fetch.
//!
//! Serving is bounded whatever a child sends: one worker thread, at most one
//! request in flight per child stream, each binary sent to a stream once, and
//! every queued reply references the same bytes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use mitogen_wire::handle::FETCH_BINARY;
use mitogen_wire::Header;

use super::binary::Binary;
use crate::broker::{lock, Stream};
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

/// What the binary with this SHA-256 needs from a target (its ELF
/// interpreter, its glibc version), if this process holds it: its own, or
/// one added or fetched here. Never fetches.
pub(crate) fn needs_of(sha256: &str) -> Option<super::binary::Needs> {
    if let Ok(own) = Binary::current() {
        if own.sha256 == sha256 {
            return Some(own.needs.clone());
        }
    }
    lock(&store().binaries)
        .values()
        .find(|b| b.sha256 == sha256)
        .map(|b| b.needs.clone())
}

/// What the binary for `machine` (`uname -m`) needs, if this process holds
/// it. Never fetches.
pub(crate) fn needs_for_machine(machine: &str) -> Option<super::binary::Needs> {
    if is_own_machine(machine) {
        return Binary::current().ok().map(|b| b.needs.clone());
    }
    lock(&store().binaries)
        .get(machine)
        .map(|b| b.needs.clone())
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
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert_eq!(router.binary_fetches(), 0); // the master has every binary it needs
    /// # }).unwrap();
    /// ```
    pub fn binary_fetches(&self) -> u64 {
        store().fetches.load(Ordering::Relaxed)
    }

    /// `(uname -m pattern, sha256, size)` of every binary this context can supply.
    pub(crate) fn known_binaries(&self) -> Vec<(String, String, u64)> {
        let mut v = Vec::new();
        if let Ok(own) = Binary::current() {
            v.push((
                own_machines().to_string(),
                own.sha256.clone(),
                own.bytes.len() as u64,
            ));
        }
        for (m, b) in lock(&store().binaries).iter() {
            if !is_own_machine(m) {
                v.push((m.clone(), b.sha256.clone(), b.bytes.len() as u64));
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

/// Longest machine name a child may ask for (`uname -m` names are short).
const MAX_MACHINE_LEN: usize = 64;

/// What one child stream has asked of us.
struct Served {
    stream: Weak<Stream>,
    /// A request from this stream is being resolved.
    in_flight: bool,
    /// Machines whose binary this stream was sent.
    sent: HashSet<String>,
}

/// The `FETCH_BINARY` server: requests admitted on the broker thread, at
/// most one in flight per child stream, resolved in order by one worker
/// thread (resolving may wait for our own parent's fetch).
struct Server {
    served: Mutex<HashMap<u32, Served>>,
    worker: OnceLock<mpsc::Sender<Job>>,
}

/// An admitted request: the message, the machine it names, the stream to answer on.
struct Job {
    msg: Message,
    machine: String,
    stream: Weak<Stream>,
}

impl Server {
    /// Broker thread: admit `msg` or refuse it with a logged reason.
    fn admit(self: &Arc<Self>, msg: Message) {
        let Some(router) = msg.router.clone() else {
            return;
        };
        let stream = router.stream_to(msg.from_stream);
        let name = stream.as_ref().map_or_else(
            || format!("context {}", msg.from_stream),
            |s| s.name.clone(),
        );
        let refuse = |reason: &str| {
            tracing::error!("refused FETCH_BINARY from stream {name}: {reason}");
            router.refuse(&msg, reason);
        };
        let (Some(stream), false) = (stream.as_ref(), msg.reply_to == 0) else {
            return refuse("no stream or reply handle to answer on");
        };
        if msg.data.len() > MAX_MACHINE_LEN {
            return refuse(&format!(
                "the machine name is {} bytes long (at most {MAX_MACHINE_LEN})",
                msg.data.len()
            ));
        }
        let machine = String::from_utf8_lossy(&msg.data).into_owned();
        {
            let mut served = lock(&self.served);
            served.retain(|_, s| s.stream.strong_count() > 0);
            let entry = served.entry(msg.from_stream).or_insert_with(|| Served {
                stream: Arc::downgrade(stream),
                in_flight: false,
                sent: HashSet::new(),
            });
            if entry.in_flight {
                drop(served);
                return refuse(&format!(
                    "a fetch from this stream is already in flight (asked for {machine:?})"
                ));
            }
            if entry.sent.contains(&machine) {
                drop(served);
                return refuse(&format!(
                    "the {machine} binary was already sent to this stream"
                ));
            }
            entry.in_flight = true;
        }
        let job = Job {
            stream: Arc::downgrade(stream),
            machine,
            msg,
        };
        let queued = match self.worker() {
            Ok(worker) => worker.send(job).map_err(|e| e.0),
            Err(e) => {
                tracing::error!("cannot start the binary server thread: {e}");
                Err(job)
            }
        };
        if let Err(job) = queued {
            self.finish(&job, false);
            router.refuse(&job.msg, "the binary server is not running");
        }
    }

    /// The worker's queue, starting the worker on first use.
    fn worker(self: &Arc<Self>) -> std::io::Result<&mpsc::Sender<Job>> {
        if let Some(w) = self.worker.get() {
            return Ok(w);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let server = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("mitogen-binary".into())
            .spawn(move || {
                // Ends when the handler, and with it the server, is dropped.
                for job in rx {
                    let Some(server) = server.upgrade() else {
                        return;
                    };
                    let sent = serve(&job);
                    server.finish(&job, sent);
                }
            })?;
        Ok(self.worker.get_or_init(|| tx))
    }

    /// The request of `job` is answered; remember whether the binary went out.
    fn finish(&self, job: &Job, sent: bool) {
        if let Some(entry) = lock(&self.served).get_mut(&job.msg.from_stream) {
            entry.in_flight = false;
            if sent {
                entry.sent.insert(job.machine.clone());
            }
        }
    }
}

/// Worker thread: resolve one request and queue the reply on the child's
/// stream, sharing the binary's bytes. `true` when the binary was sent.
fn serve(job: &Job) -> bool {
    let (msg, machine) = (&job.msg, &job.machine);
    let Some(r) = msg.router.as_ref() else {
        return false;
    };
    let b = match r.binary_for(machine) {
        Ok(b) if b.bytes.len() <= r.max_message_size() => b,
        Ok(b) => {
            r.refuse(
                msg,
                &format!(
                    "the {machine} binary ({} bytes) exceeds the maximum message size",
                    b.bytes.len()
                ),
            );
            return false;
        }
        Err(e) => {
            r.refuse(msg, &e);
            return false;
        }
    };
    let Some(stream) = job.stream.upgrade() else {
        return false;
    };
    let me = r.context_id();
    let header = Header {
        flags: 0,
        dst_id: msg.src_id,
        src_id: me,
        auth_id: me,
        handle: msg.reply_to,
        reply_to: 0,
        length: b.bytes.len() as u32,
    };
    if r.is_unidirectional() {
        stream.note_sender(me);
    }
    if stream
        .send_shared(header.to_bytes(), b.bytes.clone())
        .is_err()
    {
        tracing::debug!(
            "stream {} closed; the {machine} binary was not sent",
            stream.name
        );
        return false;
    }
    r.inner
        .binary_bytes_sent
        .fetch_add(b.bytes.len() as u64, Ordering::Relaxed);
    true
}

/// Answer children's `FETCH_BINARY` requests (policy: direct children
/// only). A child stream gets each binary once and has at most one request
/// in flight; anything else is refused with a logged reason, so a hostile
/// child cannot make us hold many copies or start many threads.
pub(crate) fn serve_binaries(router: &Router) {
    let server = Arc::new(Server {
        served: Mutex::new(HashMap::new()),
        worker: OnceLock::new(),
    });
    router.add_service(
        move |msg: Message| server.admit(msg),
        FETCH_BINARY,
        Some(Arc::new(is_immediate_child)),
    );
}
