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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use mitogen_wire::handle::FLOW_CONTROL;

use super::Router;
use crate::broker::{lock, wait_on, Wait};
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
    Lost(String),
}

#[derive(Default)]
struct Window {
    in_flight: u64,
    /// An `ASK` is outstanding.
    asked: bool,
    waiters: u32,
    lost: Option<String>,
}

#[derive(Default)]
struct Pending {
    bytes: u64,
    /// The sender asked: credit the next consumed bytes at once.
    eager: bool,
}

/// One router's flow-control state.
pub(crate) struct Flow {
    window: AtomicU64,
    out: Mutex<HashMap<(u32, u32), Window>>,
    credited: Condvar,
    pending: Mutex<HashMap<(u32, u32), Pending>>,
}

impl Flow {
    pub(crate) fn new() -> Flow {
        Flow {
            window: AtomicU64::new(DEFAULT_FLOW_WINDOW),
            out: Mutex::new(HashMap::new()),
            credited: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn window(&self) -> u64 {
        self.window.load(Ordering::Relaxed)
    }

    pub(crate) fn set_window(&self, bytes: u64) {
        self.window.store(bytes.max(1), Ordering::Relaxed);
        self.credited.notify_all();
    }

    /// Take room for `n` bytes to `(dst, handle)`.
    pub(crate) fn acquire(
        &self,
        router: &Router,
        dst: u32,
        handle: u32,
        n: u64,
        wait: Wait,
    ) -> Result<(), Blocked> {
        let mut out = lock(&self.out);
        let mut waiting = false;
        let result = loop {
            let window = self.window();
            let w = out.entry((dst, handle)).or_default();
            if let Some(reason) = w.lost.clone() {
                if waiting {
                    break Err(Blocked::Lost(reason));
                }
                // Lost before this send began: the route decides its fate.
                *w = Window::default();
            }
            if w.in_flight == 0 || w.in_flight + n <= window || matches!(wait, Wait::Force) {
                w.in_flight += n;
                break Ok(());
            }
            let deadline = match wait {
                // The broker thread must not block: it goes over the window.
                Wait::Forever | Wait::Until(_) if router.inner.broker.on_broker_thread() => {
                    w.in_flight += n;
                    break Ok(());
                }
                Wait::Never => break Err(Blocked::Full),
                Wait::Until(d) if Instant::now() >= d => break Err(Blocked::Full),
                Wait::Until(d) => Some(d),
                _ => None,
            };
            if !w.asked {
                w.asked = true;
                drop(out);
                send(router, dst, ASK, handle, 0);
                out = lock(&self.out);
                continue;
            }
            if !waiting {
                w.waiters += 1;
                waiting = true;
            }
            out = wait_on(&self.credited, out, deadline);
        };
        if waiting {
            if let Some(w) = out.get_mut(&(dst, handle)) {
                w.waiters -= 1;
            }
        }
        forget_if_idle(&mut out, (dst, handle));
        result
    }

    /// Give back room taken for a message that was not sent after all.
    pub(crate) fn release(&self, dst: u32, handle: u32, n: u64) {
        let mut out = lock(&self.out);
        if let Some(w) = out.get_mut(&(dst, handle)) {
            w.in_flight = w.in_flight.saturating_sub(n);
        }
        forget_if_idle(&mut out, (dst, handle));
        drop(out);
        self.credited.notify_all();
    }

    /// Bytes of a flow message from `src` to our `handle` were consumed.
    pub(crate) fn consumed(&self, router: &Router, src: u32, handle: u32, n: u64) {
        let threshold = (self.window() / 4).max(1);
        let mut pending = lock(&self.pending);
        let full = pending.len() >= MAX_PENDING && !pending.contains_key(&(src, handle));
        let p = pending.entry((src, handle)).or_default();
        p.bytes += n;
        if full || p.eager || p.bytes >= threshold {
            let bytes = p.bytes;
            pending.remove(&(src, handle));
            drop(pending);
            send(router, src, CREDIT, handle, bytes);
        }
    }

    /// Credit every sender of `handle` now (its receiver is going away).
    pub(crate) fn flush_handle(&self, router: &Router, handle: u32) {
        let due: Vec<(u32, u64)> = {
            let mut pending = lock(&self.pending);
            let keys: Vec<(u32, u32)> = pending.keys().filter(|k| k.1 == handle).copied().collect();
            keys.into_iter()
                .filter_map(|k| pending.remove(&k).map(|p| (k.0, p.bytes)))
                .filter(|(_, b)| *b > 0)
                .collect()
        };
        for (src, bytes) in due {
            send(router, src, CREDIT, handle, bytes);
        }
    }

    /// `id` is gone: wake whoever waits for its credit, forget what it owed
    /// us and what we owed it.
    pub(crate) fn lost(&self, id: u32, reason: &str) {
        {
            let mut out = lock(&self.out);
            out.retain(|&(dst, _), w| {
                if dst != id {
                    return true;
                }
                w.lost = Some(reason.to_string());
                w.waiters > 0
            });
        }
        self.credited.notify_all();
        lock(&self.pending).retain(|&(src, _), _| src != id);
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
                if let Some(w) = out.get_mut(&(src, handle)) {
                    w.in_flight = w.in_flight.saturating_sub(bytes);
                    w.asked = false;
                }
                forget_if_idle(&mut out, (src, handle));
                drop(out);
                self.credited.notify_all();
            }
            ASK => {
                let mut pending = lock(&self.pending);
                let room = pending.len() < MAX_PENDING;
                match pending.get_mut(&(src, handle)) {
                    Some(p) if p.bytes > 0 => {
                        let bytes = p.bytes;
                        pending.remove(&(src, handle));
                        drop(pending);
                        send(router, src, CREDIT, handle, bytes);
                    }
                    Some(p) => p.eager = true,
                    None if room => {
                        pending.insert(
                            (src, handle),
                            Pending {
                                bytes: 0,
                                eager: true,
                            },
                        );
                    }
                    // Too many entries: every consumption credits at once anyway.
                    None => {}
                }
            }
            _ => tracing::debug!("ignored FLOW_CONTROL kind {kind} from {src}"),
        }
    }

    /// Window entries (tests: bounded state).
    #[cfg(test)]
    fn entries(&self) -> (usize, usize) {
        (lock(&self.out).len(), lock(&self.pending).len())
    }
}

fn forget_if_idle(out: &mut HashMap<(u32, u32), Window>, key: (u32, u32)) {
    if out
        .get(&key)
        .is_some_and(|w| w.waiters == 0 && (w.lost.is_some() || (w.in_flight == 0 && !w.asked)))
    {
        out.remove(&key);
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
    let r = router.clone();
    router.add_handler(
        move |msg: Message| r.inner.flow.on_message(&r, &msg),
        Some(FLOW_CONTROL),
        true,
        None,
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

    #[test]
    fn window_fills_then_credit_reopens_it_and_idle_entries_go() {
        crate::Router::with(|router| {
            let flow = Flow::new();
            flow.set_window(100);
            // Nothing in flight: even an oversized message goes.
            flow.acquire(&router, 7, 1000, 250, Wait::Never).unwrap();
            assert!(matches!(
                flow.acquire(&router, 7, 1000, 1, Wait::Never),
                Err(Blocked::Full)
            ));
            flow.on_message(&router, &credit(7, 1000, 200));
            assert!(matches!(
                flow.acquire(&router, 7, 1000, 60, Wait::Never),
                Err(Blocked::Full)
            ));
            flow.acquire(&router, 7, 1000, 50, Wait::Never).unwrap();
            // Credit beyond what is in flight does not bank.
            flow.on_message(&router, &credit(7, 1000, 10_000));
            assert_eq!(flow.entries().0, 0, "idle windows are forgotten");
            flow.acquire(&router, 7, 1000, 100, Wait::Never).unwrap();
            assert!(matches!(
                flow.acquire(&router, 7, 1000, 1, Wait::Never),
                Err(Blocked::Full)
            ));
        })
        .unwrap();
    }

    #[test]
    fn a_lost_destination_wakes_its_waiters() {
        crate::Router::with(|router| {
            let flow = std::sync::Arc::new(Flow::new());
            flow.set_window(10);
            flow.acquire(&router, 9, 1000, 10, Wait::Never).unwrap();
            let f2 = flow.clone();
            let r2 = router.clone();
            let t = std::thread::spawn(move || f2.acquire(&r2, 9, 1000, 5, Wait::Forever));
            // Bounded wait for the waiter to register.
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while lock(&flow.out).get(&(9, 1000)).map_or(0, |w| w.waiters) == 0 {
                assert!(Instant::now() < deadline, "waiter never blocked");
                std::thread::yield_now();
            }
            flow.lost(9, "gone");
            assert!(matches!(t.join().unwrap(), Err(Blocked::Lost(r)) if r == "gone"));
            assert_eq!(flow.entries(), (0, 0));
        })
        .unwrap();
    }

    #[test]
    fn consumed_bytes_are_credited_per_quarter_window_and_bounded() {
        crate::Router::with(|router| {
            let flow = Flow::new();
            flow.set_window(400);
            flow.consumed(&router, 5, 1000, 99);
            assert_eq!(flow.entries().1, 1);
            flow.consumed(&router, 5, 1000, 1);
            assert_eq!(flow.entries().1, 0, "a quarter window is credited at once");
            for src in 0..(MAX_PENDING as u32 + 10) {
                flow.consumed(&router, 100 + src, 1000, 1);
            }
            assert_eq!(flow.entries().1, MAX_PENDING);
        })
        .unwrap();
    }
}
