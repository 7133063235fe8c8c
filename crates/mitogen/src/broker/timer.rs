//! Timers run on the broker thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A scheduled call; [`Timer::cancel`] stops it from running.
///
/// # Examples
/// ```
/// # let broker = mitogen::Broker::new().unwrap();
/// let timer = broker.schedule(std::time::Duration::from_secs(60), || unreachable!());
/// timer.cancel();
/// # broker.shutdown(); broker.join();
/// ```
#[derive(Clone, Debug, Default)]
pub struct Timer {
    cancelled: Arc<AtomicBool>,
}

impl Timer {
    pub(crate) fn new() -> Timer {
        Timer::default()
    }

    /// Stop the call from running, if it has not run yet.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// `true` once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}
