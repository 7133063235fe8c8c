//! Signals: callbacks fired when something happens to an object (Mitogen's
//! `mitogen.core.listen`, `unlisten` and `fire`).
//!
//! Every object that fires signals ([`Router`], [`Context`], [`Broker`],
//! [`StreamRef`]) has typed methods for its own events, and the generic
//! [`listen`] / [`fire`] serve events of your own:
//!
//! | Object | Event | Typed method | Fired |
//! |---|---|---|---|
//! | [`Router`] | `disconnect` | [`Router::on_disconnect`] | once per lost context (also those behind a lost hop), with its [`Context`] and [`Loss`] |
//! | [`Router`] | `shutdown` | [`Router::on_shutdown`] | when its broker's shutdown begins (the broker's `shutdown`) |
//! | [`Context`] | `disconnect` | [`Context::on_disconnect`] | once, when that context is lost, with its [`Loss`] |
//! | [`StreamRef`] | `disconnect` | [`StreamRef::on_disconnect`] | when the stream closes, with its [`Loss`] |
//! | [`StreamRef`] | `shutdown` | [`StreamRef::on_shutdown`] | when broker shutdown begins, before the stream is asked to close |
//! | [`StreamRef`] | `exit` | [`StreamRef::on_exit`] | when the stream's process (one we started) has exited and was reaped |
//! | [`Broker`] | `before_shutdown` | [`Broker::on_before_shutdown`] | first, once [`Broker::shutdown`] was called |
//! | [`Broker`] | `shutdown` | [`Broker::on_shutdown`] | next, before any stream is asked to close |
//! | [`Broker`] | `exit` | [`Broker::on_exit`] | last, after every stream closed, just before the broker thread ends |
//!
//! Each `on_*` method and [`listen`] return a [`Subscription`]: dropping it
//! unsubscribes ([`unlisten`] says so explicitly), [`Subscription::detach`]
//! keeps the callback for the object's whole life.
//!
//! # The rules for callbacks
//! - Built-in events fire **on the broker thread**: a callback must not
//!   block (no calls, no `recv`, no [`Router::shutdown`]); to do real work,
//!   hand it to a thread of your own (a channel, a [`Latch`](crate::Latch)).
//!   Sending messages ([`Context::send`], [`Sender::send`](crate::Sender::send))
//!   does not block there.
//! - A callback that panics is caught: the panic is logged with the event's
//!   name and the object's, and the other callbacks still run. (Mitogen runs
//!   them without exception handling; here one bug cannot stop the broker.)
//! - [`fire`] runs the callbacks on the thread that calls it, in the order
//!   they subscribed; a callback may subscribe or unsubscribe others.
//! - After a [`Subscription`] is dropped no new delivery starts; one already
//!   running on another thread finishes.
//!
//! # Examples
//! ```no_run
//! # mitogen::Router::with(|router| {
//! let watch = router.on_disconnect(|context, loss| {
//!     eprintln!("lost {}: {loss}", context.name());
//! });
//! let child = router.local(Default::default()).unwrap();
//! child.shutdown(true).unwrap(); // prints "lost local.…: … shut down …"
//! drop(watch); // no more reports
//! # }).unwrap();
//! ```
//!
//! [`Router`]: crate::Router
//! [`Router::on_disconnect`]: crate::Router::on_disconnect
//! [`Router::on_shutdown`]: crate::Router::on_shutdown
//! [`Router::shutdown`]: crate::Router::shutdown
//! [`Context`]: crate::Context
//! [`Context::on_disconnect`]: crate::Context::on_disconnect
//! [`Context::send`]: crate::Context::send
//! [`Broker`]: crate::Broker
//! [`Broker::shutdown`]: crate::Broker::shutdown
//! [`Broker::on_before_shutdown`]: crate::Broker::on_before_shutdown
//! [`Broker::on_shutdown`]: crate::Broker::on_shutdown
//! [`Broker::on_exit`]: crate::Broker::on_exit
//! [`StreamRef`]: crate::StreamRef
//! [`StreamRef::on_disconnect`]: crate::StreamRef::on_disconnect
//! [`StreamRef::on_shutdown`]: crate::StreamRef::on_shutdown
//! [`StreamRef::on_exit`]: crate::StreamRef::on_exit
//! [`Loss`]: crate::Loss

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::broker::{lock, panic_text, FastMap};

/// Event name: a context, or a stream, was lost.
pub const DISCONNECT: &str = "disconnect";
/// Event name: broker shutdown begins (on a broker, a router or a stream).
pub const SHUTDOWN: &str = "shutdown";
/// Event name: [`Broker::shutdown`](crate::Broker::shutdown) was called;
/// fires before [`SHUTDOWN`].
pub const BEFORE_SHUTDOWN: &str = "before_shutdown";
/// Event name: the broker thread is about to end; or a stream's process
/// was reaped.
pub const EXIT: &str = "exit";

/// The tables: public types in a private module, so the sealed
/// [`Emitter`] can name them while users cannot.
mod imp {
    use super::*;

    /// What a listener is registered on within its object's table: the object
    /// itself, or one context of a router (contexts are cheap handles, so
    /// their listeners live in their router).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Subject {
        Own,
        Context(u32),
    }

    pub(super) type Key = (Subject, Box<str>);
    type Callback = Arc<dyn Fn(&dyn Any) + Send + Sync>;

    #[derive(Default)]
    pub(super) struct Listeners {
        next_id: AtomicU64,
        pub(super) map: Mutex<FastMap<Key, Vec<(u64, Callback)>>>,
    }

    /// The listeners of one object. Cheap to clone; clones are the same table.
    #[derive(Clone, Default)]
    pub struct Table(Arc<Listeners>);

    impl Table {
        /// Call `f` with each value fired as `name` on `subject` that is a `T`.
        pub(crate) fn listen<T: Any>(
            &self,
            subject: Subject,
            name: &str,
            f: impl Fn(&T) + Send + Sync + 'static,
        ) -> Subscription {
            let event = name.to_string();
            let callback: Callback = Arc::new(move |value: &dyn Any| {
                match value.downcast_ref::<T>() {
                Some(v) => f(v),
                None => tracing::warn!(
                    "a listener of `{event}` expects a {}, but the event carries another type: skipped",
                    short_type::<T>()
                ),
            }
            });
            let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
            let key: Key = (subject, name.into());
            lock(&self.0.map)
                .entry(key.clone())
                .or_default()
                .push((id, callback));
            Subscription {
                slot: Some((Arc::downgrade(&self.0), key, id)),
            }
        }

        /// Run every listener of `name` on `subject` with `value`, on this
        /// thread; a panicking listener is logged (naming `owner`) and the
        /// rest still run. Returns how many listeners ran.
        pub(crate) fn fire<T: Any>(
            &self,
            subject: Subject,
            name: &str,
            value: &T,
            owner: &str,
        ) -> usize {
            let key: Key = (subject, name.into());
            let callbacks: Vec<Callback> = match lock(&self.0.map).get(&key) {
                Some(v) => v.iter().map(|(_, f)| f.clone()).collect(),
                None => return 0,
            };
            for f in &callbacks {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(value))) {
                    tracing::error!(
                        "a listener of `{name}` on {owner} panicked: {}; the other listeners still run",
                        panic_text(p.as_ref())
                    );
                }
            }
            callbacks.len()
        }

        /// Drop every listener of `subject` (a context that is gone for good).
        pub(crate) fn forget(&self, subject: Subject) {
            lock(&self.0.map).retain(|(s, _), _| *s != subject);
        }
    }
}

use imp::{Key, Listeners};
pub(crate) use imp::{Subject, Table};

/// A registered callback; dropping it unsubscribes (Mitogen's `unlisten`).
///
/// # Examples
/// ```
/// let broker = mitogen::Broker::new().unwrap();
/// let sub = broker.on_exit(|| println!("broker exiting"));
/// sub.detach(); // keep it for the broker's whole life
/// broker.shutdown();
/// broker.join();
/// ```
#[must_use = "dropping a Subscription unsubscribes at once; call .detach() to keep it"]
pub struct Subscription {
    slot: Option<(Weak<Listeners>, Key, u64)>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.slot {
            Some((_, (_, name), id)) => write!(f, "Subscription({name:?}, #{id})"),
            None => f.write_str("Subscription(detached)"),
        }
    }
}

impl Subscription {
    /// A subscription to nothing (the event already happened).
    pub(crate) fn none() -> Subscription {
        Subscription { slot: None }
    }

    /// Keep the callback for as long as its object lives, without holding
    /// this handle.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router
    ///     .on_disconnect(|context, loss| eprintln!("lost {}: {loss}", context.name()))
    ///     .detach();
    /// # }).unwrap();
    /// ```
    pub fn detach(mut self) {
        self.slot = None;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some((table, key, id)) = self.slot.take() else {
            return;
        };
        let Some(table) = table.upgrade() else {
            return;
        };
        let mut map = lock(&table.map);
        if let Some(v) = map.get_mut(&key) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                map.remove(&key);
            }
        }
    }
}

/// An object that fires signals: [`Router`](crate::Router),
/// [`Context`](crate::Context), [`Broker`](crate::Broker),
/// [`StreamRef`](crate::StreamRef). Sealed: the crate implements it.
pub trait Emitter: sealed::Sealed {}

pub(crate) mod sealed {
    /// What [`Emitter`](super::Emitter) needs, out of users' reach.
    pub trait Sealed {
        /// Its table of listeners, which part of it is this object, and a
        /// name for logs.
        fn signals_of(&self) -> (super::Table, super::Subject, String);
    }
}

/// Call `f` with the value each time `name` is fired on `obj` with a value
/// of type `T` (Mitogen's `listen(obj, name, func)`). Built-in events and
/// their value types are listed in the [module docs](self); the typed
/// methods (`router.on_disconnect(…)`) are easier to use for those.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
///
/// # mitogen::Router::with(|router| {
/// let seen = Arc::new(AtomicU32::new(0));
/// let s2 = seen.clone();
/// let sub = mitogen::signal::listen(&router, "job-done", move |n: &u32| {
///     s2.fetch_add(*n, Ordering::Relaxed);
/// });
/// mitogen::signal::fire(&router, "job-done", &5u32);
/// mitogen::signal::unlisten(sub);
/// mitogen::signal::fire(&router, "job-done", &7u32); // nobody listens now
/// assert_eq!(seen.load(Ordering::Relaxed), 5);
/// # }).unwrap();
/// ```
pub fn listen<T: Any, O: Emitter + ?Sized>(
    obj: &O,
    name: &str,
    f: impl Fn(&T) + Send + Sync + 'static,
) -> Subscription {
    let (table, subject, _) = obj.signals_of();
    table.listen(subject, name, f)
}

/// Stop the callback `subscription` registered (Mitogen's `unlisten`); the
/// same as dropping it.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// let sub = mitogen::signal::listen(&router, "tick", |_: &()| {});
/// mitogen::signal::unlisten(sub);
/// assert_eq!(mitogen::signal::fire(&router, "tick", &()), 0);
/// # }).unwrap();
/// ```
pub fn unlisten(subscription: Subscription) {
    drop(subscription);
}

/// Run, on this thread, every callback listening for `name` on `obj` with
/// `value` (Mitogen's `fire(obj, name, *args)`); returns how many ran.
/// Callbacks that expect another type than `T` are skipped with a warning.
/// A panicking callback is logged and the others still run.
///
/// # Examples
/// ```
/// # mitogen::Router::with(|router| {
/// let me = mitogen::Context::local(&router);
/// let _sub = mitogen::signal::listen(&me, "progress", |p: &f32| println!("{p:.0}%"));
/// assert_eq!(mitogen::signal::fire(&me, "progress", &50.0f32), 1);
/// # }).unwrap();
/// ```
pub fn fire<T: Any, O: Emitter + ?Sized>(obj: &O, name: &str, value: &T) -> usize {
    let (table, subject, owner) = obj.signals_of();
    table.fire(subject, name, value, &owner)
}

/// `T`'s name without its module path, for messages.
fn short_type<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn drop_unsubscribes_and_detach_keeps() {
        let t = Table::default();
        let n = Arc::new(AtomicUsize::new(0));
        let (a, b) = (n.clone(), n.clone());
        let sub = t.listen(Subject::Own, "e", move |_: &()| {
            a.fetch_add(1, Ordering::Relaxed);
        });
        t.listen(Subject::Own, "e", move |_: &()| {
            b.fetch_add(10, Ordering::Relaxed);
        })
        .detach();
        assert_eq!(t.fire(Subject::Own, "e", &(), "test"), 2);
        drop(sub);
        assert_eq!(t.fire(Subject::Own, "e", &(), "test"), 1);
        assert_eq!(n.load(Ordering::Relaxed), 21);
    }

    #[test]
    fn a_panicking_listener_does_not_stop_the_others() {
        let t = Table::default();
        let n = Arc::new(AtomicUsize::new(0));
        let a = n.clone();
        let _p = t.listen(Subject::Own, "e", |_: &u8| panic!("listener bug"));
        let _q = t.listen(Subject::Own, "e", move |_: &u8| {
            a.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(t.fire(Subject::Own, "e", &1u8, "test"), 2);
        assert_eq!(n.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn wrong_type_and_other_subjects_are_skipped() {
        let t = Table::default();
        let n = Arc::new(AtomicUsize::new(0));
        let a = n.clone();
        let _s = t.listen(Subject::Context(3), "e", move |v: &u32| {
            a.fetch_add(*v as usize, Ordering::Relaxed);
        });
        t.fire(Subject::Context(3), "e", &"text", "test");
        t.fire(Subject::Context(4), "e", &5u32, "test");
        t.fire(Subject::Context(3), "e", &7u32, "test");
        assert_eq!(n.load(Ordering::Relaxed), 7);
        t.forget(Subject::Context(3));
        assert_eq!(t.fire(Subject::Context(3), "e", &7u32, "test"), 0);
    }

    #[test]
    fn a_listener_may_unsubscribe_itself() {
        let t = Table::default();
        let slot: Arc<Mutex<Option<Subscription>>> = Arc::default();
        let s2 = slot.clone();
        let sub = t.listen(Subject::Own, "e", move |_: &()| {
            lock(&s2).take();
        });
        *lock(&slot) = Some(sub);
        assert_eq!(t.fire(Subject::Own, "e", &(), "test"), 1);
        assert_eq!(t.fire(Subject::Own, "e", &(), "test"), 0);
    }
}
