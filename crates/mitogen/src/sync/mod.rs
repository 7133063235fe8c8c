//! Blocking primitives user threads wait on: [`Latch`], [`Receiver`],
//! [`Sender`], [`Channel`] and [`Select`].

mod channel;
mod latch;
mod receiver;
mod select;
mod sender;

pub use channel::Channel;
pub use latch::Latch;
pub use receiver::{Receiver, ReceiverOptions};
pub use select::Select;
pub use sender::Sender;

pub use select::Member;

use std::time::{Duration, Instant};

/// Deadline `timeout` from now; `None` (wait forever) when it overflows.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
