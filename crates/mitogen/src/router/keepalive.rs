//! Optional keepalive: a link that stays silent is declared dead.
//!
//! TCP says nothing when a host is partitioned away or powered off: the
//! stream stays open and calls wait forever. With a [`Keepalive`] set, the
//! router checks each of its streams several times per interval; a stream
//! silent for an interval gets a heartbeat (`KEEPALIVE`, answered at once by
//! the peer's broker, whatever its own setting), and a stream silent for
//! `interval × misses` is closed with a reason naming the peer and the
//! silence, which wakes every waiter behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen_wire::handle::KEEPALIVE;

use super::Router;
use crate::broker::{lock, Stream, Timer};
use crate::error::{Loss, LossKind};
use crate::message::Message;

/// Heartbeat settings (see [`Router::set_keepalive`]).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let k = mitogen::Keepalive::new(Duration::from_secs(5), 3);
/// assert_eq!(k.silence(), Duration::from_secs(15));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// A stream silent this long gets a heartbeat.
    pub interval: Duration,
    /// Heartbeats missed in a row before the stream is declared dead.
    pub misses: u32,
}

impl Keepalive {
    /// Heartbeat after `interval` of silence; dead after `misses` of them.
    pub fn new(interval: Duration, misses: u32) -> Keepalive {
        Keepalive { interval, misses }
    }

    /// How long a stream may stay silent: `interval × misses`.
    pub fn silence(&self) -> Duration {
        self.interval * self.misses.max(1)
    }

    /// How often streams are checked: a quarter interval, at most 0.5 s, so
    /// a dead link is declared within `silence()` plus one second.
    fn period(&self) -> Duration {
        (self.interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(500))
    }
}

/// What is known of one stream's traffic.
struct Seen {
    bytes: u64,
    heard: Instant,
    pinged: Instant,
}

/// The running checker: its settings, its timer and what it saw.
#[derive(Default)]
pub(super) struct State {
    settings: Option<Keepalive>,
    timer: Option<Timer>,
    seen: HashMap<usize, Seen>,
}

impl Router {
    /// Declare a link dead when nothing arrives on it for
    /// `keepalive.silence()`, sending heartbeats meanwhile (`None`: never,
    /// the default). Each context answers heartbeats, so only the side that
    /// wants detection needs it set; children started afterwards inherit it
    /// so that they also notice a silent parent.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use std::time::Duration;
    /// router.set_keepalive(Some(mitogen::Keepalive::new(Duration::from_secs(10), 3)));
    /// assert_eq!(router.keepalive().unwrap().misses, 3);
    /// router.set_keepalive(None);
    /// # }).unwrap();
    /// ```
    pub fn set_keepalive(&self, keepalive: Option<Keepalive>) {
        let mut st = lock(&self.inner.keepalive);
        if let Some(t) = st.timer.take() {
            t.cancel();
        }
        st.seen.clear();
        st.settings = keepalive.filter(|k| !k.interval.is_zero());
        if let Some(k) = st.settings {
            st.timer = Some(self.schedule_check(k));
        }
    }

    /// The keepalive in force, if any.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::Keepalive;
    /// use std::time::Duration;
    /// assert_eq!(router.keepalive(), None);
    /// router.set_keepalive(Some(Keepalive::new(Duration::from_secs(30), 3)));
    /// assert_eq!(router.keepalive().unwrap().misses, 3);
    /// # }).unwrap();
    /// ```
    pub fn keepalive(&self) -> Option<Keepalive> {
        lock(&self.inner.keepalive).settings
    }

    fn schedule_check(&self, k: Keepalive) -> Timer {
        let r = self.clone();
        self.inner
            .broker
            .schedule(k.period(), move || r.check_links(k))
    }

    /// Broker thread: heartbeat silent streams, close dead ones, re-arm.
    fn check_links(&self, k: Keepalive) {
        let now = Instant::now();
        let streams = self.neighbour_streams();
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        {
            let mut st = lock(&self.inner.keepalive);
            if st.settings != Some(k) {
                return;
            }
            st.seen.retain(|t, _| streams.iter().any(|s| s.token == *t));
            for s in &streams {
                let bytes = s.bytes_received.load(std::sync::atomic::Ordering::Relaxed);
                let seen = st.seen.entry(s.token).or_insert(Seen {
                    bytes,
                    heard: now,
                    pinged: now,
                });
                if bytes != seen.bytes {
                    seen.bytes = bytes;
                    seen.heard = now;
                }
                let silent = now.duration_since(seen.heard);
                if silent >= k.silence() {
                    dead.push((s.clone(), silent));
                } else if silent >= k.interval && now.duration_since(seen.pinged) >= k.interval {
                    seen.pinged = now;
                    ping.push(s.clone());
                }
            }
            st.timer = Some(self.schedule_check(k));
        }
        for s in ping {
            self.heartbeat(s.remote_id(), true);
        }
        for (s, silent) in dead {
            let reason = format!(
                "keepalive: nothing heard from {} for {:.1}s ({} heartbeats of {:?} missed)",
                s.name,
                silent.as_secs_f64(),
                k.misses,
                k.interval
            );
            tracing::warn!("{reason}: closing the stream");
            let token = s.token;
            let loss = Loss::new(LossKind::KeepaliveTimeout, s.name.clone(), reason);
            self.inner
                .broker
                .defer_core(move |core| core.disconnect_with(token, loss));
        }
    }

    /// The streams to our parent and direct children, once each.
    pub(super) fn neighbour_streams(&self) -> Vec<Arc<Stream>> {
        let parent = self
            .inner
            .parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        parent.into_iter().chain(self.child_streams()).collect()
    }

    /// Send a heartbeat (`ask`) or its answer to the neighbour `dst`.
    fn heartbeat(&self, dst: u32, ask: bool) {
        let mut msg = Message::new(KEEPALIVE, Vec::new());
        msg.dst_id = dst;
        msg.reply_to = if ask { KEEPALIVE } else { 0 };
        self.route_control(msg);
    }

    /// A heartbeat from a neighbour (its source is the stream it came by):
    /// answer it, back down that stream.
    fn on_heartbeat(&self, msg: &Message) {
        if msg.reply_to != 0 && msg.src_id == msg.from_stream {
            self.heartbeat(msg.src_id, false);
        }
    }
}

/// Register the `KEEPALIVE` handler: every context answers heartbeats.
pub(super) fn install(router: &Router) {
    router.add_service(Router::own(|r, msg| r.on_heartbeat(&msg)), KEEPALIVE, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_link_is_declared_within_silence_plus_a_second() {
        for (ms, misses) in [(100, 3), (1000, 3), (4000, 2), (60_000, 5)] {
            let k = Keepalive::new(Duration::from_millis(ms), misses);
            // Heard at most one period late, declared at most one period late.
            assert!(k.period() * 2 <= Duration::from_secs(1), "{k:?}");
        }
    }
}
