//! A queue that threads block on: the bottom of every receive path.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Member;
use crate::error::{GetTimeoutError, LatchError, TimeoutError, TryGetError, TryRecvError};
use crate::message::Message;

type Notify = Arc<dyn Fn() + Send + Sync>;

/// A thread-safe queue with blocking gets and close, like Mitogen's `Latch`.
///
/// Cloning gives another handle on the same queue. A `Latch<Message>` can
/// be a member of a [`Select`](crate::Select), as in Mitogen.
///
/// # Examples
/// ```
/// use mitogen::Latch;
/// let latch = Latch::new();
/// let l2 = latch.clone();
/// std::thread::spawn(move || l2.put(5).unwrap());
/// assert_eq!(latch.get(), Ok(5));
/// latch.close();
/// assert!(latch.get().is_err());
/// ```
pub struct Latch<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
    /// Key as a member of a `Select`, given on first use.
    key: std::sync::OnceLock<u32>,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    /// Threads blocked in `wait`.
    sleeping: usize,
    /// Wake-ups sent and not yet taken: a burst of puts wakes a sleeper
    /// once, not once per put.
    woken: usize,
    notify: Option<Notify>,
}

impl<T> Clone for Latch<T> {
    fn clone(&self) -> Self {
        Latch {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Latch<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Latch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Latch")
            .field("len", &s.queue.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl<T> Latch<T> {
    /// An empty, open latch.
    ///
    /// # Examples
    /// ```
    /// let latch: mitogen::Latch<u32> = mitogen::Latch::new();
    /// assert!(latch.is_empty() && !latch.is_closed());
    /// ```
    pub fn new() -> Latch<T> {
        Latch {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    closed: false,
                    sleeping: 0,
                    woken: 0,
                    notify: None,
                }),
                cond: Condvar::new(),
                key: std::sync::OnceLock::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `value` and wake one waiter.
    ///
    /// # Errors
    /// [`LatchError`] when the latch is closed; the value is dropped.
    ///
    /// # Examples
    /// ```
    /// let latch = mitogen::Latch::new();
    /// latch.put("job 1").unwrap();
    /// assert_eq!(latch.get(), Ok("job 1"));
    /// latch.close();
    /// assert_eq!(latch.put("job 2"), Err(mitogen::LatchError));
    /// ```
    pub fn put(&self, value: T) -> Result<(), LatchError> {
        let notify = {
            let mut s = self.lock();
            if s.closed {
                return Err(LatchError);
            }
            s.queue.push_back(value);
            if s.sleeping > s.woken {
                s.woken += 1;
                self.inner.cond.notify_one();
            }
            s.notify.clone()
        };
        if let Some(n) = notify {
            n();
        }
        Ok(())
    }

    /// Take the oldest value without blocking.
    ///
    /// # Errors
    /// [`TryGetError::Empty`] or [`TryGetError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use mitogen::{Latch, TryGetError};
    /// let latch = Latch::new();
    /// assert_eq!(latch.try_get(), Err(TryGetError::Empty));
    /// latch.put(1).unwrap();
    /// assert_eq!(latch.try_get(), Ok(1));
    /// latch.close();
    /// assert_eq!(latch.try_get(), Err(TryGetError::Closed));
    /// ```
    pub fn try_get(&self) -> Result<T, TryGetError> {
        let mut s = self.lock();
        match s.queue.pop_front() {
            Some(v) => Ok(v),
            None if s.closed => Err(TryGetError::Closed),
            None => Err(TryGetError::Empty),
        }
    }

    /// Block until a value arrives.
    ///
    /// # Errors
    /// [`LatchError`] when the latch is closed and empty.
    ///
    /// # Examples
    /// ```
    /// let latch = mitogen::Latch::new();
    /// let worker = latch.clone();
    /// let t = std::thread::spawn(move || worker.put(42).unwrap());
    /// assert_eq!(latch.get(), Ok(42)); // blocks until the thread puts
    /// t.join().unwrap();
    /// ```
    pub fn get(&self) -> Result<T, LatchError> {
        self.wait(None).map_err(|_| LatchError)
    }

    /// Block for at most `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] (with the same [`TimeoutError`] as every
    /// other bounded wait) or [`GetTimeoutError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let latch: mitogen::Latch<u8> = mitogen::Latch::new();
    /// match latch.get_timeout(Duration::from_millis(10)) {
    ///     Err(mitogen::GetTimeoutError::Timeout(t)) => {
    ///         assert!(t.waited >= Duration::from_millis(10));
    ///         assert_eq!(t.to_string(), format!("timed out after {} ms waiting on a latch", t.waited.as_millis()));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.wait(super::deadline_after(timeout))
    }

    /// Block until `deadline`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] or [`GetTimeoutError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    /// let latch = mitogen::Latch::new();
    /// latch.put('a').unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(10);
    /// assert_eq!(latch.get_deadline(deadline), Ok('a'));
    /// assert!(matches!(
    ///     latch.get_deadline(deadline),
    ///     Err(mitogen::GetTimeoutError::Timeout(_))
    /// ));
    /// ```
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.wait(Some(deadline))
    }

    /// Block until a value arrives or `deadline` (if any) passes.
    pub(crate) fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetTimeoutError> {
        self.wait(deadline)
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<T, GetTimeoutError> {
        let started = Instant::now();
        let mut s = self.lock();
        loop {
            if let Some(v) = s.queue.pop_front() {
                return Ok(v);
            }
            if s.closed {
                return Err(GetTimeoutError::Closed);
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Err(GetTimeoutError::Timeout(TimeoutError {
                        waited: started.elapsed(),
                        what: "waiting on a latch".into(),
                    }));
                }
            }
            s.sleeping += 1;
            s = match deadline {
                None => self.inner.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    self.inner
                        .cond
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.sleeping -= 1;
            s.woken = s.woken.saturating_sub(1).min(s.sleeping);
        }
    }

    /// Close the latch: waiters wake with an error once the queue is drained,
    /// later puts fail.
    ///
    /// # Examples
    /// ```
    /// let latch = mitogen::Latch::new();
    /// latch.put(1).unwrap();
    /// latch.close();
    /// assert_eq!(latch.get(), Ok(1)); // queued values are still taken
    /// assert_eq!(latch.get(), Err(mitogen::LatchError));
    /// ```
    pub fn close(&self) {
        let notify = {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            s.closed = true;
            self.inner.cond.notify_all();
            s.notify.clone()
        };
        if let Some(n) = notify {
            n();
        }
    }

    /// `true` once [`Latch::close`] was called.
    ///
    /// # Examples
    /// ```
    /// let latch: mitogen::Latch<()> = mitogen::Latch::new();
    /// latch.close();
    /// assert!(latch.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Number of queued values.
    ///
    /// # Examples
    /// ```
    /// let latch = mitogen::Latch::new();
    /// latch.put(1).unwrap();
    /// latch.put(2).unwrap();
    /// assert_eq!(latch.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// `true` when nothing is queued (Mitogen's `empty()`).
    ///
    /// # Examples
    /// ```
    /// let latch = mitogen::Latch::new();
    /// assert!(latch.is_empty());
    /// latch.put(1).unwrap();
    /// assert!(!latch.is_empty());
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Call `notify` after every put and on close (used by `Select`).
    /// Returns how many values were already queued and whether closed.
    pub(crate) fn set_notify(&self, notify: Option<Notify>) -> (usize, bool) {
        let mut s = self.lock();
        s.notify = notify;
        (s.queue.len(), s.closed)
    }
}

impl Member for Latch<Message> {
    fn key(&self) -> u32 {
        *self.inner.key.get_or_init(super::select::member_key)
    }
    fn set_notify(&self, f: Option<Notify>) -> usize {
        let (n, closed) = Latch::set_notify(self, f);
        n + usize::from(closed)
    }
    fn try_recv(&self) -> Result<Message, TryRecvError> {
        match self.try_get() {
            Ok(mut m) => {
                // Tells which member it came from, as for a receiver.
                m.receiver = Member::key(self);
                Ok(m)
            }
            Err(TryGetError::Empty) => Err(TryRecvError::Empty),
            Err(TryGetError::Closed) => {
                Err(TryRecvError::Channel(crate::error::ChannelError::Closed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_then_value() {
        let l = Latch::new();
        match l.get_timeout(Duration::from_millis(10)) {
            Err(GetTimeoutError::Timeout(t)) => {
                assert!(t.waited >= Duration::from_millis(10), "{t}");
                assert!(t.to_string().ends_with("waiting on a latch"), "{t}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        l.put(1).unwrap();
        assert_eq!(l.try_get(), Ok(1));
        assert_eq!(l.try_get(), Err(TryGetError::Empty));
    }

    #[test]
    fn close_wakes_blocked_waiter() {
        let l: Latch<u8> = Latch::new();
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.get());
        while l.lock().sleeping == 0 {
            std::thread::yield_now();
        }
        l.close();
        assert_eq!(t.join().unwrap(), Err(LatchError));
        assert_eq!(l.put(1), Err(LatchError));
    }

    #[test]
    fn drains_before_reporting_closed() {
        let l = Latch::new();
        l.put(1).unwrap();
        l.close();
        assert_eq!(l.get(), Ok(1));
        assert_eq!(l.try_get(), Err(TryGetError::Closed));
    }
}
