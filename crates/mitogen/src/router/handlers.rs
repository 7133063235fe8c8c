//! The handler table: handle → callback.
//!
//! Dynamic handles (replies, receivers) are drawn at random from
//! `[FIRST_DYNAMIC, DYNAMIC_END)`, skipping live ones: another context can't
//! guess a pending reply's handle from the last one it saw, and a
//! long-running process never wraps onto a well-known or live handle.
//! Keys of [`Select`](crate::Select)s live above `DYNAMIC_END`.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mitogen_wire::handle::FIRST_DYNAMIC;

use super::Policy;
use crate::broker::{lock, FastMap};
use crate::message::Message;

/// End (exclusive) of the dynamic handle range; `Select` keys use the rest.
pub(crate) const DYNAMIC_END: u32 = 1 << 31;

pub(super) struct Handler {
    pub(super) f: Arc<dyn Fn(Message) + Send + Sync>,
    pub(super) persist: bool,
    pub(super) respondent: Option<u32>,
    pub(super) policy: Option<Policy>,
    /// Queues messages for a user thread, which returns flow-control credit.
    pub(super) queues: bool,
    /// One of the router's own services: removed without a dead message
    /// when the router shuts down.
    pub(super) service: bool,
}

impl Clone for Handler {
    fn clone(&self) -> Self {
        Handler {
            f: self.f.clone(),
            persist: self.persist,
            respondent: self.respondent,
            policy: self.policy.clone(),
            queues: self.queues,
            service: self.service,
        }
    }
}

/// What [`Handlers::take_for`] found.
pub(super) enum Lookup {
    Found(Handler),
    Missing,
    /// The handler waits for a reply from `expected`, and this message may
    /// not be one.
    WrongSender {
        expected: u32,
    },
}

pub(super) struct Handlers {
    table: Mutex<FastMap<u32, Handler>>,
    /// Keyed hash of a counter: unpredictable, cheap, never repeats a
    /// sequence between processes.
    keys: std::collections::hash_map::RandomState,
    counter: AtomicU64,
    /// Size of the dynamic range (smaller only in tests).
    span: u32,
}

impl Handlers {
    pub(super) fn new() -> Handlers {
        Handlers::with_span(DYNAMIC_END - FIRST_DYNAMIC)
    }

    fn with_span(span: u32) -> Handlers {
        Handlers {
            table: Mutex::new(FastMap::default()),
            keys: std::collections::hash_map::RandomState::new(),
            counter: AtomicU64::new(0),
            span,
        }
    }

    /// Register `h` on `handle`, or on a fresh dynamic handle; `Err(handle)`
    /// when `handle` already has a handler (it is left in place).
    ///
    /// # Panics
    /// When every dynamic handle is in use (2³¹ live receivers).
    pub(super) fn add(&self, handle: Option<u32>, h: Handler) -> Result<u32, u32> {
        let mut t = lock(&self.table);
        let handle = match handle {
            Some(h) if t.contains_key(&h) => return Err(h),
            Some(h) => h,
            None => self.fresh(&t),
        };
        t.insert(handle, h);
        Ok(handle)
    }

    /// Remove and return every handler (the router shuts down).
    pub(super) fn take_all(&self) -> Vec<(u32, Handler)> {
        lock(&self.table).drain().collect()
    }

    /// A dynamic handle not in `t`.
    fn fresh(&self, t: &FastMap<u32, Handler>) -> u32 {
        for _ in 0..64 {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let h = FIRST_DYNAMIC + (self.keys.hash_one(n) % u64::from(self.span)) as u32;
            if !t.contains_key(&h) {
                return h;
            }
        }
        // Nearly full (only reachable with a tiny test span): scan.
        (FIRST_DYNAMIC..FIRST_DYNAMIC + self.span)
            .find(|h| !t.contains_key(h))
            .expect("every dynamic handle is in use")
    }

    pub(super) fn remove(&self, handle: u32) -> Option<Handler> {
        lock(&self.table).remove(&handle)
    }

    /// The handler for `handle`, removed from the table unless it persists.
    /// A handler with a respondent is only handed messages `accepts(respondent)`
    /// allows; otherwise it stays in place.
    pub(super) fn take_for(&self, handle: u32, accepts: impl FnOnce(u32) -> bool) -> Lookup {
        let mut t = lock(&self.table);
        let Some(h) = t.get(&handle) else {
            return Lookup::Missing;
        };
        if let Some(expected) = h.respondent {
            if !accepts(expected) {
                return Lookup::WrongSender { expected };
            }
        }
        if h.persist {
            Lookup::Found(h.clone())
        } else {
            t.remove(&handle).map_or(Lookup::Missing, Lookup::Found)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_handle_is_refused_and_kept() {
        let hs = Handlers::new();
        let h = hs.add(Some(5000), nop()).unwrap();
        assert_eq!(
            hs.add(
                Some(h),
                Handler {
                    persist: false,
                    ..nop()
                }
            ),
            Err(h)
        );
        assert!(matches!(hs.take_for(h, |_| true), Lookup::Found(k) if k.persist));
    }

    fn nop() -> Handler {
        Handler {
            f: Arc::new(|_| {}),
            persist: true,
            respondent: None,
            policy: None,
            queues: false,
            service: false,
        }
    }

    /// L3: allocation never returns a reserved or live handle, however long
    /// the process runs (the counter is past `u32::MAX` here) and however
    /// full the range is.
    #[test]
    fn l3_handle_allocation_skips_reserved_and_live_handles() {
        let hs = Handlers::with_span(16);
        hs.counter.store(u64::from(u32::MAX) - 3, Ordering::Relaxed);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..16 {
            let h = hs.add(None, nop()).unwrap();
            assert!((FIRST_DYNAMIC..FIRST_DYNAMIC + 16).contains(&h), "{h}");
            assert!(seen.insert(h), "handle {h} handed out twice while live");
        }
        hs.remove(FIRST_DYNAMIC + 5);
        assert_eq!(hs.add(None, nop()), Ok(FIRST_DYNAMIC + 5));
    }

    #[test]
    fn handles_are_not_sequential() {
        let hs = Handlers::new();
        let a: Vec<u32> = (0..8).map(|_| hs.add(None, nop()).unwrap()).collect();
        assert!(a.iter().all(|h| (FIRST_DYNAMIC..DYNAMIC_END).contains(h)));
        assert!(a.windows(2).any(|w| w[1] != w[0] + 1), "{a:?}");
    }

    #[test]
    fn wrong_sender_keeps_a_oneshot_handler() {
        let hs = Handlers::new();
        let h = hs
            .add(
                None,
                Handler {
                    persist: false,
                    respondent: Some(7),
                    ..nop()
                },
            )
            .unwrap();
        assert!(matches!(
            hs.take_for(h, |r| r == 8),
            Lookup::WrongSender { expected: 7 }
        ));
        assert!(matches!(hs.take_for(h, |r| r == 7), Lookup::Found(_)));
        assert!(matches!(hs.take_for(h, |_| true), Lookup::Missing));
    }
}
