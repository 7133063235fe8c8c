//! Policies: who may send to a handler.

use std::sync::Arc;

use super::Router;
use crate::message::Message;

/// Decides whether a message may reach a handler; refused messages get a
/// dead reply.
pub type Policy = Arc<dyn Fn(&Message, &Router) -> bool + Send + Sync>;

/// Accept only messages carrying the authority of this context or one of its
/// parents (Mitogen's `has_parent_authority`). The default for `CALL_FUNCTION`.
pub fn has_parent_authority(msg: &Message, router: &Router) -> bool {
    msg.auth_id == router.context_id() || router.is_parent(msg.auth_id)
}

/// Accept only messages sent by a direct child over its own stream
/// (Mitogen's `is_immediate_child`).
pub fn is_immediate_child(msg: &Message, router: &Router) -> bool {
    msg.from_stream != 0 && msg.from_stream == msg.src_id && !router.is_parent(msg.src_id)
}
