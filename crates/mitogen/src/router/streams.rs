//! [`StreamRef`]: the public face of one stream (a link to a neighbouring
//! context), its signals, and disconnecting streams on request
//! ([`Router::disconnect`], [`Router::disconnect_stream`],
//! [`Router::disconnect_all`]) while the broker keeps running.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use super::Router;
use crate::broker::{lock, Stream};
use crate::context::Context;
use crate::error::{Loss, LossKind, Result, StreamError, TimeoutError};
use crate::signal::{self, Emitter, Subject, Subscription, Table};
use crate::sync::Latch;

/// How long [`Router::disconnect`] waits, beyond the broker's shutdown
/// timeout, for the loss to be reported (it waits for the child's exit).
const DISCONNECT_SLACK: Duration = Duration::from_secs(5);

/// A stream: this context's link to one neighbour, its parent or a child
/// it started, through which that neighbour's whole subtree is reached
/// (Mitogen's `Stream`). Cheap to clone; holding one keeps no descriptor
/// open. Get them from [`Router::streams`] or [`Router::stream_of`].
///
/// # Examples
/// ```no_run
/// # mitogen::Router::with(|router| {
/// let child = router.local(Default::default()).unwrap();
/// let stream = router.stream_of(&child).unwrap();
/// println!("{} leads to context {}", stream.name(), stream.remote_id());
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct StreamRef {
    stream: Arc<Stream>,
    router: Router,
}

impl std::fmt::Debug for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StreamRef({:?}, to {})",
            self.stream.name,
            self.remote_id()
        )
    }
}

impl PartialEq for StreamRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.stream, &other.stream)
    }
}

impl StreamRef {
    /// The stream's name: the name of the context at its far end.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(mitogen::LocalOptions::new().remote_name("w1")).unwrap();
    /// assert_eq!(router.stream_of(&child).unwrap().name(), "w1");
    /// # }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.stream.name
    }

    /// Context id of the neighbour at the far end.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// assert_eq!(router.stream_of(&child).unwrap().remote_id(), child.context_id());
    /// # }).unwrap();
    /// ```
    pub fn remote_id(&self) -> u32 {
        self.stream.remote_id()
    }

    /// Process id of the program this context started for the stream (the
    /// child itself, or `ssh`, `sudo`, …); `None` for the parent stream
    /// and forked children, which are not ours to reap.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// assert!(router.stream_of(&child).unwrap().pid().is_some());
    /// # }).unwrap();
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.stream.pid
    }

    /// `true` for the stream to this context's parent.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert!(router.streams().iter().all(|s| !s.is_parent())); // the master has none
    /// # }).unwrap();
    /// ```
    pub fn is_parent(&self) -> bool {
        self.router.is_parent_stream(Some(&self.stream))
    }

    /// Call `f` when the stream closes, with why (Mitogen's Stream
    /// `disconnect`); after the router has handled the loss of the
    /// contexts behind it. On the broker thread: must not block.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// let stream = router.stream_of(&child).unwrap();
    /// stream.on_disconnect(|loss| eprintln!("stream closed: {loss}")).detach();
    /// # }).unwrap();
    /// ```
    pub fn on_disconnect(&self, f: impl Fn(&Loss) + Send + Sync + 'static) -> Subscription {
        self.stream
            .signals
            .listen(Subject::Own, signal::DISCONNECT, f)
    }

    /// Call `f` when broker shutdown begins, before this stream is asked
    /// to close (Mitogen's Stream `shutdown`). On the broker thread.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// let stream = router.stream_of(&child).unwrap();
    /// stream.on_shutdown(|| eprintln!("closing soon")).detach();
    /// # }).unwrap();
    /// ```
    pub fn on_shutdown(&self, f: impl Fn() + Send + Sync + 'static) -> Subscription {
        self.stream
            .signals
            .listen(Subject::Own, signal::SHUTDOWN, move |_: &()| f())
    }

    /// Call `f` with the exit status of the stream's process once it has
    /// exited and was reaped (Mitogen's Process `exit`); never for a stream
    /// without a process of ours ([`StreamRef::pid`] is `None`).
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// let stream = router.stream_of(&child).unwrap();
    /// stream.on_exit(|status| eprintln!("child {status}")).detach();
    /// child.shutdown(true).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn on_exit(&self, f: impl Fn(&ExitStatus) + Send + Sync + 'static) -> Subscription {
        self.stream.signals.listen(Subject::Own, signal::EXIT, f)
    }
}

impl Emitter for StreamRef {}

impl signal::sealed::Sealed for StreamRef {
    fn signals_of(&self) -> (Table, Subject, String) {
        let name = format!("stream {}", self.stream.name);
        (self.stream.signals.clone(), Subject::Own, name)
    }
}

/// Fire a stream's `exit` with its process's wait `status`.
pub(crate) fn fire_exit(stream: &Stream, status: i32) {
    use std::os::unix::process::ExitStatusExt;
    let owner = format!("stream {}", stream.name);
    let status = ExitStatus::from_raw(status);
    stream
        .signals
        .fire(Subject::Own, signal::EXIT, &status, &owner);
}

impl Router {
    /// Every stream of this context: its parent's first (in a child), then
    /// one per child it started.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let _a = router.local(Default::default()).unwrap();
    /// let _b = router.local(Default::default()).unwrap();
    /// assert_eq!(router.streams().len(), 2);
    /// # }).unwrap();
    /// ```
    pub fn streams(&self) -> Vec<StreamRef> {
        self.neighbour_streams()
            .into_iter()
            .map(|stream| self.stream_ref(stream))
            .collect()
    }

    /// The stream messages to `context` leave on: its own when it is a
    /// direct child, else the one of the hop it is behind, or the parent's.
    /// `None` for this context itself and for contexts no longer routed.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let hop = router.local(Default::default()).unwrap();
    /// let mut opts = mitogen::LocalOptions::new();
    /// opts.common.via = Some(hop.clone());
    /// let leaf = router.local(opts).unwrap();
    /// assert_eq!(router.stream_of(&leaf), router.stream_of(&hop));
    /// # }).unwrap();
    /// ```
    pub fn stream_of(&self, context: &Context) -> Option<StreamRef> {
        let id = context.context_id();
        if id == self.context_id() || self.loss_known(id) {
            return None;
        }
        self.stream_to(id).map(|s| self.stream_ref(s))
    }

    fn stream_ref(&self, stream: Arc<Stream>) -> StreamRef {
        StreamRef {
            stream,
            router: self.clone(),
        }
    }

    fn loss_known(&self, id: u32) -> bool {
        lock(&self.inner.announced).contains_key(&id)
    }

    /// Disconnect `context`, a child this context started, and wait until
    /// its loss was handled: the stream to it closes (the child exits, and
    /// the contexts behind it go too), every waiter on it wakes with a
    /// [`Loss`] of kind [`LossKind::Disconnected`] saying "disconnected by
    /// the master" (by this context's name elsewhere), and its `disconnect`
    /// signals fire. The broker and every other stream keep running
    /// (Mitogen's `Router.disconnect`). A context already lost returns `Ok`.
    ///
    /// # Errors
    /// [`StreamError::InvalidOptions`] when `context` is not a direct child
    /// (it names the stream it is reached through: disconnect that with
    /// [`Router::disconnect_stream`], or use
    /// [`Context::shutdown`](crate::Context::shutdown));
    /// [`Error::Timeout`](crate::Error::Timeout) when the loss was not
    /// reported within the broker's shutdown timeout plus 5 s.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// router.disconnect(&child).unwrap();
    /// assert!(child.call_chain().reset().is_err()); // gone
    /// # }).unwrap();
    /// ```
    pub fn disconnect(&self, context: &Context) -> Result<()> {
        let id = context.context_id();
        if self.loss_known(id) {
            return Ok(());
        }
        let stream = self.routes_get(id).filter(|s| s.remote_id() == id);
        let Some(stream) = stream else {
            let via = match self.stream_to(id) {
                Some(s) if id != self.context_id() => {
                    format!("it is reached through stream {}", s.name)
                }
                _ => "it is not routed here".into(),
            };
            return Err(StreamError::InvalidOptions(format!(
                "cannot disconnect {} from {}: it is not a child this context started ({via}); \
                 disconnect that stream (Router::disconnect_stream) or shut it down (Context::shutdown)",
                context.name(),
                self.name_of(self.context_id()),
            ))
            .into());
        };
        let latch: Latch<()> = Latch::new();
        let l2 = latch.clone();
        let _watch = context.on_disconnect(move |_| {
            let _ = l2.put(());
        });
        self.close_stream(&stream);
        let wait = self.broker().shutdown_timeout() + DISCONNECT_SLACK;
        latch.get_timeout(wait).map_err(|_| {
            TimeoutError {
                waited: wait,
                what: format!("for the disconnect of {} to be reported", context.name()),
            }
            .into()
        })
    }

    /// Close `stream` now, without waiting (Mitogen's
    /// `Router.disconnect_stream`): every context behind it is lost, its
    /// waiters woken with a [`Loss`] of kind [`LossKind::Disconnected`].
    /// The broker keeps running. Closing the parent stream of a child
    /// context ends that context, as losing its parent always does.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let child = router.local(Default::default()).unwrap();
    /// let stream = router.stream_of(&child).unwrap();
    /// router.disconnect_stream(&stream);
    /// # }).unwrap();
    /// ```
    pub fn disconnect_stream(&self, stream: &StreamRef) {
        self.close_stream(&stream.stream);
    }

    /// Close every stream to a child (Mitogen's `Router.disconnect_all`),
    /// without waiting; the broker keeps running, and so does the link to
    /// this context's parent.
    ///
    /// # Examples
    /// ```no_run
    /// # mitogen::Router::with(|router| {
    /// let _a = router.local(Default::default()).unwrap();
    /// router.disconnect_all();
    /// # }).unwrap();
    /// ```
    pub fn disconnect_all(&self) {
        for stream in self.child_streams() {
            self.close_stream(&stream);
        }
    }

    fn close_stream(&self, stream: &Arc<Stream>) {
        let by = self.name_of(self.context_id());
        let cause = Loss::new(
            LossKind::Disconnected,
            stream.name.clone(),
            format!("disconnected by the {by}"),
        );
        let cause = if self.context_id() == 0 {
            cause
        } else {
            Loss {
                text: format!("disconnected by context {by}"),
                ..cause
            }
        };
        let token = stream.token;
        self.broker()
            .defer_core(move |core| core.disconnect_with(token, cause));
    }
}
