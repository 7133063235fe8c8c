//! Getting a copy of this program running on the far side of a connection,
//! and switching the connection over to framed messages.
//!
//! 1. The parent starts a command: this binary directly (local fast path),
//!    or `sh -c '<first stage>'` through whatever the connection method runs.
//! 2. The first stage ([`first_stage`]) execs a cached copy if one exists,
//!    else prints a `MITOGEN-NEED` marker, reads exactly N bytes of (maybe
//!    gzip-compressed) binary from stdin, installs it atomically in a private
//!    cache directory and execs it.
//! 3. The child announces itself with a `MITOGEN-HELLO` line carrying the
//!    protocol version and the function-table hash; the parent checks both
//!    and sends a [`ChildConfig`] frame. From then on, both ends speak frames.
//!
//! `docs/protocol.md` has the byte-level details.

pub(crate) mod binary;
pub(crate) mod child;
pub(crate) mod first_stage;
pub(crate) mod forward;
pub(crate) mod parent;

use serde::{Deserialize, Serialize};

/// Environment variable that turns a process into a child context; its
/// value is the nonce the child echoes in its hello line.
pub(crate) const CHILD_ENV: &str = "MITOGEN_CHILD";
/// Prefix of the line a freshly started child writes on its stream.
pub(crate) const HELLO: &str = "MITOGEN-HELLO";
/// Prefix of the line the first stage prints when it needs the binary.
pub(crate) const NEED: &str = "MITOGEN-NEED";
/// Prefix of the line the first stage prints when it cannot continue.
pub(crate) const FAIL: &str = "MITOGEN-FAIL";
/// Bumped whenever the bootstrap or message protocol changes incompatibly.
pub(crate) const PROTOCOL: u32 = 1;

/// What the parent tells a new child, as the first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildConfig {
    pub context_id: u32,
    pub parent_ids: Vec<u32>,
    pub name: String,
    pub max_message_size: u32,
    pub debug: bool,
    pub unidirectional: bool,
    pub shutdown_timeout_ms: u64,
}
