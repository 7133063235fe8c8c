//! Well-known handles, as in Mitogen. Handles below [`FIRST_DYNAMIC`] are
//! reserved; [`FIRST_DYNAMIC`] and up are allocated per router for replies
//! and receivers.

/// Run a registered function; body is a call request.
pub const CALL_FUNCTION: u32 = 101;
/// A log record or output line forwarded towards the master.
pub const FORWARD_LOG: u32 = 102;
/// A context became reachable through the sender.
pub const ADD_ROUTE: u32 = 103;
/// A context stopped being reachable.
pub const DEL_ROUTE: u32 = 104;
/// Ask the master for a block of context ids.
pub const ALLOCATE_ID: u32 = 105;
/// Ask a context to shut down.
pub const SHUTDOWN: u32 = 106;
/// Request a binary (by content hash) from the parent.
pub const FETCH_BINARY: u32 = 107;
/// Binary bytes pushed to a child.
pub const FORWARD_BINARY: u32 = 108;
/// A context announces it is detaching from its parent.
pub const DETACHING: u32 = 109;
/// Call into a service.
pub const CALL_SERVICE: u32 = 110;
/// Ask a context to create a child of its own (`via=`).
pub const CONNECT: u32 = 111;
/// Flow control: credit returned by a receiving context, or a blocked
/// sender asking for it (see `docs/protocol.md`).
pub const FLOW_CONTROL: u32 = 112;
/// A heartbeat between neighbours (`reply_to` set: answer it; 0: the answer).
pub const KEEPALIVE: u32 = 113;
/// Profiling: ask a context for its statistics (body `0u8`) or for a stack
/// dump of all its threads (body `1u8`); answered by the broker thread (or
/// a thread it starts), never by the dispatcher, so a stuck call does not
/// delay it.
pub const PROFILE: u32 = 114;
/// First handle handed out dynamically.
pub const FIRST_DYNAMIC: u32 = 1000;

/// The name of a well-known handle, for logs.
pub fn name(handle: u32) -> Option<&'static str> {
    Some(match handle {
        CALL_FUNCTION => "CALL_FUNCTION",
        FORWARD_LOG => "FORWARD_LOG",
        ADD_ROUTE => "ADD_ROUTE",
        DEL_ROUTE => "DEL_ROUTE",
        ALLOCATE_ID => "ALLOCATE_ID",
        SHUTDOWN => "SHUTDOWN",
        FETCH_BINARY => "FETCH_BINARY",
        FORWARD_BINARY => "FORWARD_BINARY",
        DETACHING => "DETACHING",
        CALL_SERVICE => "CALL_SERVICE",
        CONNECT => "CONNECT",
        FLOW_CONTROL => "FLOW_CONTROL",
        KEEPALIVE => "KEEPALIVE",
        PROFILE => "PROFILE",
        _ => return None,
    })
}
