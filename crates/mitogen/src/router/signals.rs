//! The router's signals: `disconnect` for every lost context (on the
//! router and on the context), and dead messages to every handler when the
//! broker stops. The mechanism and the rules are in `signal.rs`.

use std::sync::Arc;

use super::Router;
use crate::broker::lock;
use crate::context::Context;
use crate::error::{Loss, LossKind};
use crate::message::Message;
use crate::signal::{self, Emitter, Subject, Subscription, Table};

/// What a router's `disconnect` signal carries (for [`signal::listen`];
/// [`Router::on_disconnect`] hands over its two fields).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Disconnected {
    /// The context that was lost.
    pub context: Context,
    /// Why.
    pub loss: Loss,
}

impl Router {
    /// Call `f` once for every context this router loses: a direct child,
    /// every context behind a lost hop, a parent, or one a parent reports
    /// lost. Runs on the broker thread after the context's waiters were
    /// woken; it must not block (the rules: [`mitogen::signal`](crate::signal)).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let _watch = router.on_disconnect(|context, loss| {
    ///     eprintln!("{} is gone: {loss}", context.name());
    /// });
    /// # }).unwrap();
    /// ```
    pub fn on_disconnect(
        &self,
        f: impl Fn(&Context, &Loss) + Send + Sync + 'static,
    ) -> Subscription {
        self.inner
            .signals
            .listen(Subject::Own, signal::DISCONNECT, move |d: &Disconnected| {
                f(&d.context, &d.loss)
            })
    }

    /// Call `f` when this router's broker begins to shut down, before any
    /// stream is asked to close (the same event as
    /// [`Broker::on_shutdown`](crate::Broker::on_shutdown)).
    ///
    /// # Examples
    /// ```
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// mitogen::Router::with(|router| {
    ///     router.on_shutdown(move || tx.send(()).unwrap()).detach();
    /// })
    /// .unwrap();
    /// assert!(rx.try_recv().is_ok());
    /// ```
    pub fn on_shutdown(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.broker().on_shutdown(f)
    }

    /// Context `id` is lost: fire `disconnect` on the router and on the
    /// context, once; the context's listeners are dropped afterwards.
    pub(super) fn announce_lost(&self, id: u32, loss: &Loss) {
        if id == self.context_id() {
            return;
        }
        if lock(&self.inner.announced)
            .insert(id, loss.clone())
            .is_some()
        {
            return;
        }
        let owner = format!("router of {}", self.name_of(self.context_id()));
        let event = Disconnected {
            context: Context::new(self, id, None),
            loss: loss.clone(),
        };
        let table = &self.inner.signals;
        table.fire(Subject::Own, signal::DISCONNECT, &event, &owner);
        let owner = format!("context {}", self.name_of(id));
        table.fire(Subject::Context(id), signal::DISCONNECT, loss, &owner);
        table.forget(Subject::Context(id));
    }

    /// When the broker stops, hand every handler still registered a dead
    /// message (Mitogen's `_on_broker_exit`); the router's own services
    /// are dropped quietly. Holds no `Router`, so it never keeps one alive.
    pub(super) fn hook_broker_exit(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.broker()
            .signals()
            .listen(Subject::Own, signal::EXIT, move |_: &()| {
                if let Some(inner) = weak.upgrade() {
                    Router { inner }.on_broker_exit();
                }
            })
            .detach();
    }

    fn on_broker_exit(&self) {
        let me = self.name_of(self.context_id());
        let loss = Loss::new(
            LossKind::Shutdown,
            me.clone(),
            format!("router of {me} shut down: its broker stopped"),
        );
        for (handle, handler) in self.inner.handlers.take_all() {
            if handler.service {
                continue;
            }
            let mut dead = Message::dead_with(loss.clone(), handle);
            dead.dst_id = self.context_id();
            dead.src_id = self.context_id();
            dead.router = Some(self.clone());
            let f = handler.f.clone();
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(dead)))
            {
                tracing::error!(
                    "handler of handle {handle} panicked on the shutdown's dead message: {}",
                    crate::broker::panic_text(p.as_ref())
                );
            }
        }
    }
}

impl Context {
    /// Call `f` once, when this context is lost (its own link broke, a hop
    /// before it was lost, or it shut down). Runs on the broker thread and
    /// must not block ([`mitogen::signal`](crate::signal)). For a context
    /// already lost, `f` runs at once on this thread with its loss.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _watch = child.on_disconnect(move |loss| tx.send(loss.to_string()).unwrap());
    /// child.shutdown(true).unwrap();
    /// println!("{}", rx.recv().unwrap());
    /// # }).unwrap();
    /// ```
    pub fn on_disconnect(&self, f: impl Fn(&Loss) + Send + Sync + 'static) -> Subscription {
        let router = self.router();
        let id = self.context_id();
        // Under `announced`'s lock: either the loss is recorded already
        // (and `f` runs here), or `f` is listening before it is recorded.
        let announced = lock(&router.inner.announced);
        if let Some(loss) = announced.get(&id).cloned() {
            drop(announced);
            f(&loss);
            return Subscription::none();
        }
        router
            .inner
            .signals
            .listen(Subject::Context(id), signal::DISCONNECT, f)
    }
}

impl Emitter for Router {}

impl signal::sealed::Sealed for Router {
    fn signals_of(&self) -> (Table, Subject, String) {
        let name = format!("router of {}", self.name_of(self.context_id()));
        (self.inner.signals.clone(), Subject::Own, name)
    }
}

impl Emitter for Context {}

impl signal::sealed::Sealed for Context {
    fn signals_of(&self) -> (Table, Subject, String) {
        let table = self.router().inner.signals.clone();
        let name = format!("context {}", self.name());
        (table, Subject::Context(self.context_id()), name)
    }
}
