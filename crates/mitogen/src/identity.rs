//! Process-wide identity: Mitogen's `mitogen.is_master`, `context_id`,
//! `parent_id` and `parent_ids`.
//!
//! Which to use: these free functions anywhere in the process (one
//! process is one context); [`Router::context_id`](crate::Router::context_id)
//! and [`Router::parent_ids`](crate::Router::parent_ids) when you hold a
//! router; [`ExternalContext`](crate::ExternalContext)'s `context_id`,
//! `parent_ids` and `name` inside a remote function. All three agree; the
//! name and pid of another context come from its
//! [`Context`](crate::Context) (`name`, `pid`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::RwLock;

use crate::bootstrap::ChildConfig;

static IS_CHILD: AtomicBool = AtomicBool::new(false);
static CONTEXT_ID: AtomicU32 = AtomicU32::new(0);
static PARENT_IDS: RwLock<Vec<u32>> = RwLock::new(Vec::new());

pub(crate) fn set(config: &ChildConfig) {
    IS_CHILD.store(true, Ordering::Relaxed);
    CONTEXT_ID.store(config.context_id, Ordering::Relaxed);
    *PARENT_IDS.write().unwrap_or_else(|p| p.into_inner()) = config.parent_ids.clone();
}

/// `true` in the process that started the tree, `false` in every child context.
///
/// # Examples
/// ```
/// assert!(mitogen::is_master());
/// ```
pub fn is_master() -> bool {
    !IS_CHILD.load(Ordering::Relaxed)
}

/// This process's context id: 0 in the master.
pub fn context_id() -> u32 {
    CONTEXT_ID.load(Ordering::Relaxed)
}

/// The parent's context id; `None` in the master.
pub fn parent_id() -> Option<u32> {
    parent_ids().first().copied()
}

/// Context ids of every parent, nearest first; empty in the master.
pub fn parent_ids() -> Vec<u32> {
    PARENT_IDS.read().unwrap_or_else(|p| p.into_inner()).clone()
}
