//! Flow control: per-receiver credit windows, counted in body bytes.
//!
//! A message sent with [`FLAG_FLOW`](mitogen_wire::FLAG_FLOW) (every
//! [`Sender`](crate::Sender) value and every call request) to another
//! context counts against the *window* of its destination `(context,
//! handle)`: at most [`Router::flow_window`] bytes may be sent and not yet
//! consumed. A message may always go when nothing is in flight, so one larger
//! than the window is never stuck. Past the window the sender waits (or
//! `try_send` / `send_timeout` give the value back).
//!
//! The receiving context returns credit on the `FLOW_CONTROL` handle once
//! the bytes are *consumed*: taken out of a [`Receiver`](crate::Receiver)
//! by its user, or handed to any other handler, or refused. Credit is batched
//! (one message per quarter window consumed); a sender that finds its
//! window exhausted asks once (`ASK`), and the receiver then returns what it
//! has at once, or the next bytes it consumes. So a fast stream costs one
//! small message per quarter window, and a blocked sender always wakes.
//!
//! Both tables are bounded: a sender's entry exists only while bytes are in
//! flight to that receiver, a receiver's only while consumed bytes wait to
//! be credited (at most [`MAX_PENDING`] of them; past that, credit goes at
//! once). Credit never raises a window above its size, so a peer that
//! sends credit it does not owe only hurts its own inbound flows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use mitogen_wire::handle::FLOW_CONTROL;

use super::Router;
use crate::broker::{lock, wait_on, FastMap, Wait};
use crate::error::{Loss, LossKind};
use crate::message::Message;

/// Default window: large enough that one stream over a fast link never
/// waits for credit, small enough that a stalled reader pins little memory.
pub const DEFAULT_FLOW_WINDOW: u64 = 8 << 20;

/// Receiver-side entries (consumed bytes not yet credited) kept at most.
const MAX_PENDING: usize = 16 * 1024;

const CREDIT: u8 = 0;
const ASK: u8 = 1;

/// Why a sender could not take room in a window.
#[derive(Debug)]
pub(crate) enum Blocked {
    /// No room before the deadline.
    Full,
    /// The destination was lost while waiting.
    Lost(Loss),
}

/// A sender's view of one receiver's window. Shared (and cached by
/// [`Sender`](crate::Sender)s) so the common case is one compare-and-swap.
#[derive(Default)]
pub(crate) struct Window {
    in_flight: AtomicU64,
    /// An `ASK` is outstanding.
    asked: AtomicBool,
    /// The destination is gone; `lost_reason` says why.
    lost: AtomicBool,
    lost_reason: Mutex<Option<Loss>>,
}

/// What a receiving context owes one sender for one handle. Shared (and
/// cached by [`Receiver`](crate::Receiver)s) so consuming is one atomic add.
#[derive(Default)]
pub(crate) struct Owed {
    bytes: AtomicU64,
    /// The sender asked: credit the next consumed bytes at once.
    eager: AtomicBool,
}

/// One router's flow-control state.
pub(crate) struct Flow {
    window: AtomicU64,
    out: Mutex<FastMap<(u32, u32), Arc<Window>>>,
    /// Blocked senders wait here for credit (or a loss).
    gate: Mutex<()>,
    credited: Condvar,
    owed: Mutex<FastMap<(u32, u32), Arc<Owed>>>,
}

impl Flow {
    pub(crate) fn new() -> Flow {
        Flow {
            window: AtomicU64::new(DEFAULT_FLOW_WINDOW),
            out: Mutex::new(FastMap::default()),
            gate: Mutex::new(()),
            credited: Condvar::new(),
            owed: Mutex::new(FastMap::default()),
        }
    }

    pub(crate) fn window(&self) -> u64 {
        self.window.load(SeqCst)
    }

    pub(crate) fn set_window(&self, bytes: u64) {
        self.window.store(bytes.max(1), SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let _gate = lock(&self.gate);
        self.credited.notify_all();
    }

    /// The window of `(dst, handle)`, created if need be.
    pub(crate) fn window_for(&self, dst: u32, handle: u32) -> Arc<Window> {
        lock(&self.out).entry((dst, handle)).or_default().clone()
    }

    /// Take room for `n` bytes in `w`, the window of `(dst, handle)`.
    #[inline]
    pub(crate) fn acquire(
        &self,
        router: &Router,
        w: &Window,
        key: (u32, u32),
        n: u64,
        wait: Wait,
    ) -> Result<(), Blocked> {
        if !w.lost.load(SeqCst) && self.try_take(w, n) {
            return Ok(());
        }
        self.acquire_slow(router, w, key, n, wait)
    }

    #[inline(never)]
    fn acquire_slow(
        &self,
        router: &Router,
        w: &Window,
        (dst, handle): (u32, u32),
        n: u64,
        wait: Wait,
    ) -> Result<(), Blocked> {
        if w.lost.load(SeqCst) {
            // Lost before this send began: the route decides its fate.
            w.in_flight.store(0, SeqCst);
            w.asked.store(false, SeqCst);
            w.lost.store(false, SeqCst);
        }
        if self.try_take(w, n) {
            return Ok(());
        }
        let mut gate = lock(&self.gate);
        loop {
            if w.lost.load(SeqCst) {
                let loss = lock(&w.lost_reason).clone();
                return Err(Blocked::Lost(loss.unwrap_or_else(|| {
                    Loss::new(LossKind::Other, "", "the destination was lost")
                })));
            }
            if self.try_take(w, n) {
                return Ok(());
            }
            let deadline = match wait {
                Wait::Force => {
                    w.in_flight.fetch_add(n, SeqCst);
                    return Ok(());
                }
                // The broker thread must not block: it goes over the window.
                Wait::Forever | Wait::Until(_) if router.inner.broker.on_broker_thread() => {
                    w.in_flight.fetch_add(n, SeqCst);
                    return Ok(());
                }
                Wait::Never => return Err(Blocked::Full),
                Wait::Until(d) if Instant::now() >= d => return Err(Blocked::Full),
                Wait::Until(d) => Some(d),
                Wait::Forever => None,
            };
            if !w.asked.swap(true, SeqCst) {
                drop(gate);
                send(router, dst, ASK, handle, 0);
                gate = lock(&self.gate);
                continue;
            }
            gate = wait_on(&self.credited, gate, deadline);
        }
    }

    /// Room for `n` more bytes: always when nothing is in flight.
    #[inline]
    fn try_take(&self, w: &Window, n: u64) -> bool {
        let window = self.window();
        w.in_flight
            .fetch_update(SeqCst, SeqCst, |cur| {
                (cur == 0 || cur + n <= window).then_some(cur + n)
            })
            .is_ok()
    }

    /// Give back room taken for a message that was not sent after all.
    pub(crate) fn release(&self, w: &Window, n: u64) {
        let _ = w
            .in_flight
            .fetch_update(SeqCst, SeqCst, |cur| Some(cur.saturating_sub(n)));
        self.wake();
    }

    /// What we owe `src` for `handle`; `None` when too many are owed
    /// already (then credit goes at once).
    pub(crate) fn owed_for(&self, src: u32, handle: u32) -> Option<Arc<Owed>> {
        let mut owed = lock(&self.owed);
        if owed.len() >= MAX_PENDING && !owed.contains_key(&(src, handle)) {
            return None;
        }
        Some(owed.entry((src, handle)).or_default().clone())
    }

    /// Credit `n` bytes to `src` for `handle` at once (a refused message:
    /// no flow to batch for).
    pub(crate) fn credit_now(&self, router: &Router, (src, handle): (u32, u32), n: u64) {
        send(router, src, CREDIT, handle, n);
    }

    /// `n` bytes of a flow message from `src` to our `handle` were consumed;
    /// `owed` is its entry when the caller has it at hand.
    pub(crate) fn consumed(
        &self,
        router: &Router,
        (src, handle): (u32, u32),
        n: u64,
        owed: Option<&Owed>,
    ) {
        let looked_up;
        let owed = match owed {
            Some(o) => o,
            None => match self.owed_for(src, handle) {
                Some(o) => {
                    looked_up = o;
                    &looked_up
                }
                None => return send(router, src, CREDIT, handle, n),
            },
        };
        let total = owed.bytes.fetch_add(n, SeqCst) + n;
        if total >= (self.window() / 4).max(1) || owed.eager.load(SeqCst) {
            owed.eager.store(false, SeqCst);
            let bytes = owed.bytes.swap(0, SeqCst);
            if bytes > 0 {
                send(router, src, CREDIT, handle, bytes);
            }
        }
    }

    /// Credit every sender of `handle` now and forget them (its receiver
    /// is going away).
    pub(crate) fn flush_handle(&self, router: &Router, handle: u32) {
        let due: Vec<(u32, Arc<Owed>)> = {
            let mut owed = lock(&self.owed);
            let keys: Vec<(u32, u32)> = owed.keys().filter(|k| k.1 == handle).copied().collect();
            keys.into_iter()
                .filter_map(|k| owed.remove(&k).map(|o| (k.0, o)))
                .collect()
        };
        for (src, o) in due {
            let bytes = o.bytes.swap(0, SeqCst);
            if bytes > 0 {
                send(router, src, CREDIT, handle, bytes);
            }
        }
    }

    /// `id` is gone: wake whoever waits for its credit, forget what it owed
    /// us and what we owed it. Windows still cached by senders stay, marked
    /// lost.
    pub(crate) fn lost(&self, id: u32, loss: &Loss) {
        lock(&self.out).retain(|&(dst, _), w| {
            if dst != id {
                return true;
            }
            *lock(&w.lost_reason) = Some(loss.clone());
            w.lost.store(true, SeqCst);
            Arc::strong_count(w) > 1
        });
        self.wake();
        lock(&self.owed).retain(|&(src, _), _| src != id);
    }

    /// A `FLOW_CONTROL` message arrived (its source is checked by the router).
    fn on_message(&self, router: &Router, msg: &Message) {
        let Ok((kind, handle, bytes)) = msg.unpickle::<(u8, u32, u64)>() else {
            tracing::debug!("ignored a malformed FLOW_CONTROL message: {msg:?}");
            return;
        };
        let src = msg.src_id;
        match kind {
            CREDIT => {
                let mut out = lock(&self.out);
                let Some(w) = out.get(&(src, handle)) else {
                    return;
                };
                let _ = w
                    .in_flight
                    .fetch_update(SeqCst, SeqCst, |cur| Some(cur.saturating_sub(bytes)));
                w.asked.store(false, SeqCst);
                // Idle and cached by nobody: forget it.
                if w.in_flight.load(SeqCst) == 0 && Arc::strong_count(w) == 1 {
                    out.remove(&(src, handle));
                }
                drop(out);
                self.wake();
            }
            ASK => {
                let Some(owed) = self.owed_for(src, handle) else {
                    // Too many entries: every consumption credits at once.
                    return;
                };
                // Credit what is owed; owing nothing, credit the next bytes
                // consumed. The second look closes the race with a consumer
                // that added bytes before it saw `eager`.
                let mut bytes = owed.bytes.swap(0, SeqCst);
                if bytes == 0 {
                    owed.eager.store(true, SeqCst);
                    bytes = owed.bytes.swap(0, SeqCst);
                    if bytes > 0 {
                        owed.eager.store(false, SeqCst);
                    }
                }
                if bytes > 0 {
                    send(router, src, CREDIT, handle, bytes);
                }
            }
            _ => tracing::debug!("ignored FLOW_CONTROL kind {kind} from {src}"),
        }
    }

    /// Window and owed entries (tests: bounded state).
    #[cfg(test)]
    fn entries(&self) -> (usize, usize) {
        (lock(&self.out).len(), lock(&self.owed).len())
    }
}

/// Send a `FLOW_CONTROL` message; never waits for room in the stream.
fn send(router: &Router, dst: u32, kind: u8, handle: u32, bytes: u64) {
    match Message::pickled(&(kind, handle, bytes), FLOW_CONTROL) {
        Ok(mut msg) => {
            msg.dst_id = dst;
            router.route_control(msg);
        }
        Err(e) => tracing::error!("cannot encode FLOW_CONTROL: {e}"),
    }
}

/// Register the `FLOW_CONTROL` handler.
pub(super) fn install(router: &Router) {
    router.add_service(
        Router::own(|r, msg| r.inner.flow.on_message(r, &msg)),
        FLOW_CONTROL,
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(src: u32, handle: u32, bytes: u64) -> Message {
        let mut m = Message::pickled(&(CREDIT, handle, bytes), FLOW_CONTROL).unwrap();
        m.src_id = src;
        m
    }

    fn take(flow: &Flow, router: &Router, n: u64) -> Result<(), Blocked> {
        let w = flow.window_for(7, 1000);
        flow.acquire(router, &w, (7, 1000), n, Wait::Never)
    }

    #[test]
    fn window_fills_then_credit_reopens_it_and_idle_entries_go() {
        crate::Router::with(|router| {
            let flow = Flow::new();
            flow.set_window(100);
            // Nothing in flight: even an oversized message goes.
            take(&flow, &router, 250).unwrap();
            assert!(matches!(take(&flow, &router, 1), Err(Blocked::Full)));
            // Credit from a context we did not send to opens nothing.
            flow.on_message(&router, &credit(8, 1000, 1000));
            assert!(matches!(take(&flow, &router, 1), Err(Blocked::Full)));
            flow.on_message(&router, &credit(7, 1000, 200));
            assert!(matches!(take(&flow, &router, 60), Err(Blocked::Full)));
            take(&flow, &router, 50).unwrap();
            // Credit beyond what is in flight does not bank.
            flow.on_message(&router, &credit(7, 1000, 10_000));
            assert_eq!(flow.entries().0, 0, "idle windows are forgotten");
            take(&flow, &router, 100).unwrap();
            assert!(matches!(take(&flow, &router, 1), Err(Blocked::Full)));
        })
        .unwrap();
    }

    #[test]
    fn a_lost_destination_wakes_its_waiters() {
        crate::Router::with(|router| {
            let flow = Arc::new(Flow::new());
            flow.set_window(10);
            let w = flow.window_for(9, 1000);
            flow.acquire(&router, &w, (9, 1000), 10, Wait::Never)
                .unwrap();
            let (f2, r2, w2) = (flow.clone(), router.clone(), w.clone());
            let t = std::thread::spawn(move || f2.acquire(&r2, &w2, (9, 1000), 5, Wait::Forever));
            // Bounded wait for the waiter to have asked (it then blocks).
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while !w.asked.load(SeqCst) {
                assert!(Instant::now() < deadline, "waiter never blocked");
                std::thread::yield_now();
            }
            flow.lost(9, &Loss::new(LossKind::Closed, "nine", "gone"));
            assert!(matches!(t.join().unwrap(), Err(Blocked::Lost(l)) if l.text == "gone"));
            drop(w);
            // A new send to a lost destination starts afresh.
            let w = flow.window_for(9, 1000);
            flow.acquire(&router, &w, (9, 1000), 10, Wait::Never)
                .unwrap();
        })
        .unwrap();
    }

    #[test]
    fn consumed_bytes_are_credited_per_quarter_window_and_bounded() {
        crate::Router::with(|router| {
            let flow = Flow::new();
            flow.set_window(400);
            flow.consumed(&router, (5, 1000), 99, None);
            let o = flow.owed_for(5, 1000).unwrap();
            assert_eq!(o.bytes.load(SeqCst), 99);
            flow.consumed(&router, (5, 1000), 1, Some(&o));
            assert_eq!(
                o.bytes.load(SeqCst),
                0,
                "a quarter window is credited at once"
            );
            for src in 0..(MAX_PENDING as u32 + 10) {
                flow.consumed(&router, (100 + src, 1000), 1, None);
            }
            assert_eq!(flow.entries().1, MAX_PENDING);
        })
        .unwrap();
    }

    #[test]
    fn an_ask_is_answered_now_or_with_the_next_bytes() {
        crate::Router::with(|router| {
            let flow = Flow::new();
            let mut ask = Message::pickled(&(ASK, 1000u32, 0u64), FLOW_CONTROL).unwrap();
            ask.src_id = 5;
            flow.consumed(&router, (5, 1000), 10, None);
            flow.on_message(&router, &ask);
            let o = flow.owed_for(5, 1000).unwrap();
            assert_eq!(o.bytes.load(SeqCst), 0, "owed bytes credited on ASK");
            flow.on_message(&router, &ask);
            assert!(o.eager.load(SeqCst));
            flow.consumed(&router, (5, 1000), 3, Some(&o));
            assert_eq!(o.bytes.load(SeqCst), 0, "eager: credited at once");
            assert!(!o.eager.load(SeqCst));
        })
        .unwrap();
    }
}
