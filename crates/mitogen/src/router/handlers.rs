//! The handler table: handle → callback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use mitogen_wire::handle::FIRST_DYNAMIC;

use super::Policy;
use crate::broker::lock;
use crate::message::Message;

pub(super) struct Handler {
    pub(super) f: Arc<dyn Fn(Message) + Send + Sync>,
    pub(super) persist: bool,
    pub(super) respondent: Option<u32>,
    pub(super) policy: Option<Policy>,
}

impl Clone for Handler {
    fn clone(&self) -> Self {
        Handler {
            f: self.f.clone(),
            persist: self.persist,
            respondent: self.respondent,
            policy: self.policy.clone(),
        }
    }
}

pub(super) struct Handlers {
    table: Mutex<HashMap<u32, Handler>>,
    next: AtomicU32,
}

impl Handlers {
    pub(super) fn new() -> Handlers {
        Handlers {
            table: Mutex::new(HashMap::new()),
            next: AtomicU32::new(FIRST_DYNAMIC),
        }
    }

    pub(super) fn add(&self, handle: Option<u32>, h: Handler) -> u32 {
        let handle = handle.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed));
        lock(&self.table).insert(handle, h);
        handle
    }

    pub(super) fn remove(&self, handle: u32) -> Option<Handler> {
        lock(&self.table).remove(&handle)
    }

    /// The handler for `handle`, removed from the table unless it persists.
    pub(super) fn take_for(&self, handle: u32) -> Option<Handler> {
        let mut t = lock(&self.table);
        let persist = t.get(&handle)?.persist;
        if persist {
            t.get(&handle).cloned()
        } else {
            t.remove(&handle)
        }
    }

    /// Remove and return every handler waiting on `context`.
    pub(super) fn take_respondent(&self, context: u32) -> Vec<(u32, Handler)> {
        let mut t = lock(&self.table);
        let handles: Vec<u32> = t
            .iter()
            .filter(|(_, h)| h.respondent == Some(context))
            .map(|(k, _)| *k)
            .collect();
        handles
            .into_iter()
            .filter_map(|k| t.remove(&k).map(|h| (k, h)))
            .collect()
    }
}
