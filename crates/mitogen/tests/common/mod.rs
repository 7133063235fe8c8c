//! Remote functions shared by the integration tests. Every test binary that
//! includes this module can serve them as a child context.
#![allow(dead_code)]

use std::fmt;
use std::sync::Mutex;

use mitogen::{ExternalContext, Router, Sender};

#[mitogen::remote]
pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[mitogen::remote]
pub fn pid() -> u32 {
    std::process::id()
}

#[derive(Debug)]
pub struct DiskFull(pub String);

impl fmt::Display for DiskFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no space left on {}", self.0)
    }
}

#[mitogen::remote]
pub fn fails(device: String) -> Result<u32, DiskFull> {
    Err(DiskFull(device))
}

#[mitogen::remote]
pub fn panics(what: String) -> u32 {
    panic!("boom: {what}")
}

#[mitogen::remote]
pub fn echo_bytes(b: Vec<u8>) -> usize {
    b.len()
}

#[mitogen::remote]
pub fn make_bytes(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

#[mitogen::remote]
pub fn identity(
    ec: &ExternalContext,
    router: &Router,
) -> (bool, u32, Option<u32>, Vec<u32>, u32, u32) {
    (
        mitogen::is_master(),
        mitogen::context_id(),
        mitogen::parent_id(),
        mitogen::parent_ids(),
        ec.context_id(),
        router.context_id(),
    )
}

#[mitogen::remote]
pub fn stream_numbers(to: Sender, n: u32) -> u32 {
    for i in 0..n {
        to.send(&i).expect("send");
    }
    to.close().expect("close");
    n
}

#[mitogen::remote]
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

static JOURNAL: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[mitogen::remote]
pub fn record(n: u32) {
    JOURNAL.lock().unwrap().push(n);
}

#[mitogen::remote]
pub fn journal() -> Vec<u32> {
    JOURNAL.lock().unwrap().clone()
}

#[mitogen::remote]
pub fn print_and_log(text: String) {
    println!("stdout says {text}");
    eprintln!("stderr says {text}");
    tracing::warn!("tracing says {text}");
}

/// Block on a receiver of our own until the master sends to it: proves the
/// child's broker routes while its main thread is busy in a call.
#[mitogen::remote]
pub fn wait_for_poke(router: &Router, tell: Sender) -> String {
    let rx = mitogen::Receiver::new(router);
    tell.send(&rx.handle()).unwrap();
    rx.recv().unwrap().unpickle::<String>().unwrap()
}

/// Open an inbox in this context that answers every message with "got it";
/// returns a Sender to it.
#[mitogen::remote]
pub fn open_inbox(router: &Router) -> Sender {
    let handle = router
        .add_handler(
            |msg: mitogen::Message| {
                let _ = msg.reply(&"got it");
            },
            None,
            true,
            None,
            None,
        )
        .expect("a fresh handle is never refused");
    Sender::new(mitogen::Context::local(router), handle)
}

/// Send one message to `to` and wait for its reply: shows whether the tree
/// lets this context start traffic there.
#[mitogen::remote]
pub fn poke(to: Sender) -> Result<String, mitogen::Error> {
    let msg = mitogen::Message::pickled(&"poke", to.dst_handle())?;
    let reply = to
        .context()
        .send_await(msg, Some(std::time::Duration::from_secs(10)))?;
    reply.unpickle::<String>()
}

/// Receive `n` numbers on a new receiver whose Sender is first handed to `tell`.
#[mitogen::remote]
pub fn collect(router: &Router, tell: Sender, n: u32) -> Vec<u32> {
    let rx = mitogen::Receiver::new(router);
    tell.send(&rx.to_sender()).unwrap();
    (0..n)
        .map(|_| rx.recv().unwrap().unpickle::<u32>().unwrap())
        .collect()
}

/// Send `to` one message claiming another context's authority, then an
/// honest one.
#[mitogen::remote]
pub fn forge(router: &Router, to: Sender, claimed_auth: u32) {
    let mut forged = mitogen::Message::pickled(&"forged", to.dst_handle()).unwrap();
    forged.dst_id = to.context().context_id();
    forged.src_id = router.context_id();
    forged.auth_id = claimed_auth;
    router.__route_unstamped(forged);
    to.send(&"honest").unwrap();
}

/// The user this context runs as, from the system's user database.
#[mitogen::remote]
pub fn whoami() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.as_str())).then(|| f[0].to_string())
        })
        .unwrap_or(uid)
}

/// This process's command line, as `ps` shows it.
#[mitogen::remote]
pub fn cmdline() -> String {
    std::fs::read("/proc/self/cmdline")
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Try to call `add` in another context directly (not through the master).
#[mitogen::remote]
pub fn call_other(router: &Router, id: u32) -> Result<i32, mitogen::Error> {
    router.context_by_id(id).call(add::remote, (1, 1))
}

/// How many binaries this context fetched from its parent.
#[mitogen::remote]
pub fn binary_fetches(router: &Router) -> u64 {
    router.binary_fetches()
}

/// An inbox that never answers; returns a Sender to it.
#[mitogen::remote]
pub fn open_silent_inbox(router: &Router) -> Sender {
    let handle = router
        .add_handler(|_msg: mitogen::Message| {}, None, true, None, None)
        .expect("a fresh handle is never refused");
    Sender::new(mitogen::Context::local(router), handle)
}

#[mitogen::remote]
pub fn blob_len(b: mitogen::Blob) -> usize {
    b.len()
}

#[mitogen::remote]
pub fn make_blob(n: usize) -> mitogen::Blob {
    mitogen::Blob::from(vec![3u8; n])
}

/// A local child named `name`.
pub fn named(router: &Router, name: &str) -> mitogen::Context {
    router
        .local(mitogen::LocalOptions::new().remote_name(name))
        .unwrap()
}

/// A local child named `name`, started by `parent`.
pub fn via(
    router: &Router,
    parent: &mitogen::Context,
    name: &str,
) -> mitogen::Result<mitogen::Context> {
    router.local(mitogen::LocalOptions::new().remote_name(name).via(parent))
}

/// The id of the context this runs in.
#[mitogen::remote]
pub fn my_id(ec: &ExternalContext) -> u32 {
    ec.context_id()
}

/// A `kB` field of this process's `/proc/self/status` (`VmRSS`, `VmHWM`, …).
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field.trim_end_matches(':'))?
                .strip_prefix(':')
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Stall this context's broker for `ms`: it is stalled when this returns.
pub fn stall_broker(router: &Router, ms: u64) {
    let stalled = mitogen::Latch::new();
    let s = stalled.clone();
    router
        .broker()
        .defer(move || {
            let _ = s.put(());
            std::thread::sleep(std::time::Duration::from_millis(ms));
        })
        .expect("the broker is running");
    stalled.get().unwrap();
}

/// SIGKILL process `pid` (with the system's `kill`, as a user would).
pub fn sigkill(pid: u32) {
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success(),
        "kill -9 {pid} failed"
    );
}

/// Options to reach `user` on the test `sshd` with its client key, checking
/// its host key, ignoring every ssh configuration file.
pub fn ssh_options(sshd: &mitogen_testkit::sshd::Sshd, user: &str) -> mitogen::SshOptions {
    let mut o = mitogen::SshOptions::new(sshd.host().to_string());
    o.username = Some(user.into());
    o.port = Some(sshd.port());
    o.identity_file = Some(sshd.client_key());
    o.ssh_args = vec![
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", sshd.known_hosts_file().display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
    ];
    o.common.connect_timeout = std::time::Duration::from_secs(20);
    o
}
