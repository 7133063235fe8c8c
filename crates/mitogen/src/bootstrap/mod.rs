//! Getting a copy of this program running on the far side of a connection,
//! and switching the connection over to framed messages.
//!
//! 1. The parent starts a command: this binary directly (local fast path),
//!    or `sh -c '<first stage>'` through whatever the connection method runs.
//! 2. The first stage ([`first_stage`]) execs a cached copy if one exists in
//!    a private directory, else prints a `MITOGEN-NEED` marker, reads exactly
//!    N bytes of (maybe gzip-compressed) binary from stdin, verifies and
//!    installs it atomically in a private cache directory, prints
//!    `MITOGEN-EXEC` and execs it.
//! 3. The parent sends a [`ChildConfig`] frame carrying the connection's
//!    nonce: right after the spawn (direct exec) or on `MITOGEN-EXEC`. The
//!    child writes nothing until that frame has arrived with the nonce of
//!    its `MITOGEN_CHILD`; then it announces itself with a `MITOGEN-HELLO`
//!    line (protocol version, function-table hash), which the parent checks
//!    before it uses the stream. From then on, both ends speak frames.
//!
//! 4. A child started by the first stage tidies its cache directory
//!    ([`housekeeping`]: the newest five binaries stay, others go after a
//!    week unused, never one that is running).
//!
//! `docs/protocol.md` has the byte-level details.

pub(crate) mod binary;
pub(crate) mod child;
pub(crate) mod first_stage;
pub(crate) mod forward;
pub(crate) mod housekeeping;
pub(crate) mod marker;
pub(crate) mod parent;

use serde::{Deserialize, Serialize};

/// Environment variable that turns a process into a child context; its
/// value is `<nonce>:<ms>`: the nonce the configuration frame must carry
/// (32 lowercase hex digits) and how long to wait for that frame.
pub(crate) const CHILD_ENV: &str = "MITOGEN_CHILD";
/// Environment variable naming the working directory the first stage
/// started in: the child returns there (it was exec'd from its cache
/// directory).
pub(crate) const CWD_ENV: &str = "MITOGEN_CWD";
/// Prefix of the line a freshly started child writes on its stream.
pub(crate) const HELLO: &str = "MITOGEN-HELLO";
/// Prefix of the line the first stage prints when it needs the binary.
pub(crate) const NEED: &str = "MITOGEN-NEED";
/// Prefix of the line the first stage prints just before it execs the
/// binary: the parent sends the configuration frame when it sees it.
pub(crate) const EXEC: &str = "MITOGEN-EXEC";
/// Prefix of the line the first stage prints when it cannot continue.
pub(crate) const FAIL: &str = "MITOGEN-FAIL";
/// First word of a `MITOGEN-FAIL` reason: the binary's ELF interpreter
/// is missing on the target; `dynamic <uname -m> <interpreter> [<ELF
/// interpreters the target has>...]`.
pub(crate) const DYNAMIC: &str = "dynamic";
/// The value of [`CHILD_ENV`] that makes the program exit at once with
/// status 0 (the first stage's check that a new binary starts); also the
/// first word of a `MITOGEN-FAIL` reason when it did not: `probe <uname
/// -m> <what it printed>`.
pub(crate) const PROBE: &str = "probe";
/// First word of a `MITOGEN-FAIL` reason: no candidate directory is
/// usable. Alone, it asks the parent for the diagnosis
/// ([`first_stage::diagnose_script`]), which prints it again followed by
/// `; <directory>: <why>` for each candidate.
pub(crate) const NODIR: &str = "nodir";
/// First word of a `MITOGEN-FAIL` reason: writing the new binary failed;
/// `full <bytes needed> <KiB free there, or ?> <directory>`.
pub(crate) const FULL: &str = "full";
/// Bumped whenever the bootstrap or message protocol changes
/// incompatibly (4: the hello names the crate version; 5: the
/// configuration carries `forward_level`).
pub(crate) const PROTOCOL: u32 = 5;
/// This build's version of the mitogen crate, named in the hello so that
/// version skew names both builds.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the parent tells a new child, as the first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildConfig {
    /// The connection's nonce, first so that a child of another protocol
    /// version can still read it (and answer with a hello naming its
    /// version) when the rest does not decode.
    pub nonce: String,
    pub context_id: u32,
    pub parent_ids: Vec<u32>,
    pub name: String,
    pub max_message_size: u32,
    pub debug: bool,
    /// Most verbose level of events forwarded to the master (1 = error …
    /// 5 = trace; `Router::set_forward_level`).
    pub forward_level: u8,
    pub unidirectional: bool,
    pub shutdown_timeout_ms: u64,
    /// The parent's flow-control window (`Router::flow_window`).
    pub flow_window: u64,
    /// The parent's keepalive: heartbeat interval (ms) and misses.
    pub keepalive_ms: Option<(u64, u32)>,
    /// Profile the new context (and so its subtree).
    pub profiling: bool,
}
