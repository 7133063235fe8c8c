//! The [`Router`]: delivers each [`Message`] to a local handler or down the
//! stream that leads to its destination, checks where messages come from,
//! and wakes waiters with a reason when a context is lost.

mod flow;
mod grants;
mod handlers;
mod keepalive;
mod policy;
mod signals;
mod streams;
mod tree;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use mitogen_wire::handle;

use crate::broker::{lock, Broker, FastMap, SendError, Stream, StreamEvents, Wait};
use crate::error::{Loss, LossKind, Result, StreamError};
use crate::message::Message;

pub use policy::{has_parent_authority, is_immediate_child, Policy};

pub(crate) use flow::{Blocked, Window};

/// A receiver's cached entry of what it owes its last sender.
/// (`None` when the table was full: such credit goes at once).
pub(crate) type OwedCache = (u32, Option<Arc<flow::Owed>>);
pub use flow::DEFAULT_FLOW_WINDOW;
pub(crate) use handlers::DYNAMIC_END;
pub use keepalive::Keepalive;
pub(crate) use streams::fire_exit;
pub use streams::StreamRef;
pub(crate) use tree::{check_name, check_user_name};

use handlers::{Handler, Handlers, Lookup};

/// Routes messages between this context, its parent and its children
/// (Mitogen's `Router`). Cheap to clone; all clones are the same router.
///
/// A master gets one from [`mitogen::main`](crate::main) or
/// [`Router::with`](crate::Router::with); a child context gets one from its
/// bootstrap.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<RouterInner>,
}

pub(crate) struct RouterInner {
    pub(crate) broker: Broker,
    pub(crate) context_id: AtomicU32,
    pub(crate) parent_ids: RwLock<Vec<u32>>,
    pub(crate) name: RwLock<String>,
    handlers: Handlers,
    /// Context id → stream leading to it.
    routes: RwLock<FastMap<u32, Arc<Stream>>>,
    parent: RwLock<Option<Arc<Stream>>>,
    pub(crate) max_message_size: AtomicUsize,
    pub(crate) unidirectional: AtomicBool,
    pub(crate) debug: AtomicBool,
    /// Default forwarding level of new children (`log.rs`), 1 = error … 5 = trace.
    pub(crate) forward_level: std::sync::atomic::AtomicU8,
    pub(crate) next_id: AtomicU32,
    /// Ids granted by the master and not yet used: `[start, end)`.
    pub(crate) id_block: Mutex<(u32, u32)>,
    /// Ids each child stream's subtree may claim.
    grants: Mutex<grants::Grants>,
    pub(crate) binary_bytes_sent: std::sync::atomic::AtomicU64,
    pub(crate) names: Mutex<FastMap<u32, String>>,
    parent_lost: Mutex<Option<ParentLost>>,
    pub(crate) flow: flow::Flow,
    keepalive: Mutex<keepalive::State>,
    /// Listeners of its signals and of its contexts' (`router/signals.rs`).
    signals: crate::signal::Table,
    /// Contexts whose `disconnect` has fired (it fires once per context), and why.
    announced: Mutex<FastMap<u32, Loss>>,
    /// Process ids contexts reported at their hello (`Context::pid`).
    pub(crate) pids: Mutex<FastMap<u32, u32>>,
}

/// Why [`Router::route_wait`] did not send.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No room (window or stream queue) before the deadline.
    Full,
    /// Not sendable: too large, or the destination was lost while waiting.
    Error(crate::Error),
}

impl Refused {
    /// The error of a send that had no deadline (`Full` cannot happen then).
    pub(crate) fn into_error(self) -> crate::Error {
        match self {
            Refused::Full => {
                crate::ChannelError::Dead(Loss::new(LossKind::Other, "", "no room to send")).into()
            }
            Refused::Error(e) => e,
        }
    }
}

/// Why a sender waiting for room in a stream gave up.
#[derive(Debug)]
enum Full {
    /// No room before the deadline.
    NoRoom,
    /// The stream closed meanwhile.
    Closed,
}

/// Runs once when the stream to the parent is lost.
type ParentLost = Box<dyn FnOnce(&Loss) + Send>;

/// Contexts one child stream is remembered to have talked to (to tell it
/// of their loss); past this, a child with that many peers polls instead.
const MAX_TALKED_TO: usize = 4096;

static PROCESS_ROUTER: OnceLock<Router> = OnceLock::new();

thread_local! {
    /// The router whose message this thread is decoding, if any.
    static DECODING: std::cell::RefCell<Option<Router>> = const { std::cell::RefCell::new(None) };
}

/// Restores the previous decoding router when dropped (also on a panic).
struct Decoding(Option<Router>);

impl Drop for Decoding {
    fn drop(&mut self) {
        let prev = self.0.take();
        DECODING.with(|d| *d.borrow_mut() = prev);
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("context_id", &self.context_id())
            .finish()
    }
}

impl Router {
    /// A router on `broker` for a context with id `context_id`.
    pub(crate) fn with_broker(broker: Broker, context_id: u32, parent_ids: Vec<u32>) -> Router {
        let router = Router {
            inner: Arc::new(RouterInner {
                broker,
                context_id: AtomicU32::new(context_id),
                parent_ids: RwLock::new(parent_ids),
                name: RwLock::new(if context_id == 0 {
                    "master".into()
                } else {
                    format!("context {context_id}")
                }),
                handlers: Handlers::new(),
                routes: RwLock::new(FastMap::default()),
                parent: RwLock::new(None),
                max_message_size: AtomicUsize::new(mitogen_wire::DEFAULT_MAX_MESSAGE_SIZE as usize),
                unidirectional: AtomicBool::new(false),
                debug: AtomicBool::new(false),
                forward_level: std::sync::atomic::AtomicU8::new(3),
                next_id: AtomicU32::new(1),
                id_block: Mutex::new((0, 0)),
                grants: Mutex::new(grants::Grants::default()),
                binary_bytes_sent: std::sync::atomic::AtomicU64::new(0),
                names: Mutex::new(FastMap::default()),
                parent_lost: Mutex::new(None),
                flow: flow::Flow::new(),
                keepalive: Mutex::new(keepalive::State::default()),
                signals: crate::signal::Table::default(),
                announced: Mutex::new(FastMap::default()),
                pids: Mutex::new(FastMap::default()),
            }),
        };
        router.hook_broker_exit();
        let _ = PROCESS_ROUTER.set(router.clone());
        router.install_tree_handlers();
        flow::install(&router);
        keepalive::install(&router);
        router
    }

    /// A master router (context id 0) on a new broker thread. Prefer
    /// [`Router::with`] or [`crate::main`], which always shut it down.
    ///
    /// # Errors
    /// The broker thread could not start.
    ///
    /// # Examples
    /// ```
    /// let router = mitogen::Router::new().unwrap();
    /// assert_eq!(router.context_id(), 0);
    /// router.shutdown(); // Router::with does this for you
    /// ```
    pub fn new() -> Result<Router> {
        let broker = Broker::new().map_err(|e| StreamError::Io {
            what: "starting the broker".into(),
            source: e,
        })?;
        let router = Router::with_broker(broker, 0, Vec::new());
        crate::log::install_receiver(&router);
        crate::bootstrap::forward::serve_binaries(&router);
        Ok(router)
    }

    /// Run `f` with a new master router, then shut the router down and wait
    /// for its children to exit, also when `f` panics (Mitogen's
    /// `run_with_router`).
    ///
    /// Unless the program set a `tracing` subscriber of its own (or called
    /// [`set_default_logging`](crate::set_default_logging)`(false)`), this
    /// first installs the default one: events and children's output on
    /// stderr, filtered by `MITOGEN_LOG` (see the crate's "Logging" section).
    ///
    /// # Errors
    /// The broker thread could not start.
    ///
    /// # Examples
    /// ```
    /// let id = mitogen::Router::with(|router| router.context_id()).unwrap();
    /// assert_eq!(id, 0);
    /// ```
    pub fn with<T>(f: impl FnOnce(Router) -> T) -> Result<T> {
        crate::subscriber::install_default();
        let router = Router::new()?;
        let r2 = router.clone();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(r2)));
        router.shutdown();
        match out {
            Ok(v) => Ok(v),
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Shut the broker down gracefully and wait for it (children are asked
    /// to exit and reaped).
    ///
    /// # Examples
    /// ```
    /// let router = mitogen::Router::new().unwrap();
    /// router.shutdown(); // children asked to exit and reaped, broker joined
    /// assert!(router.broker().is_stopped());
    /// ```
    pub fn shutdown(&self) {
        crate::profile::master_shutting_down(self);
        self.inner.broker.shutdown();
        self.inner.broker.join();
    }

    /// Write debug logs of this process to a private file and make every
    /// context started afterwards do the same on its own host, through
    /// relays too (Mitogen's `enable_debug`). Each process writes every
    /// event at DEBUG or more severe, in the default format, to its own
    /// `mitogen.<pid>.log`; what is forwarded to the master does not
    /// change. Calling it again starts a new file.
    ///
    /// The file is `mitogen.<pid>.log` (or `mitogen.<pid>.<n>.log`), created
    /// new with mode 0600 and never through a symlink, in the first private
    /// directory of: `$XDG_RUNTIME_DIR/mitogen`, `${TMPDIR:-/tmp}/mitogen-<uid>`
    /// (each used only when it is a real directory owned by us with no group
    /// or other access), or a fresh `${TMPDIR:-/tmp}/mitogen-<uid>.<random>`.
    /// When the program installed its own `tracing` subscriber, this
    /// process writes no file (its subscriber decides) but children do.
    ///
    /// # Examples
    /// ```no_run
    /// mitogen::main(|router| {
    ///     router.enable_debug(); // /run/user/<uid>/mitogen/mitogen.<pid>.log
    ///     let child = router.local(mitogen::LocalOptions::new())?; // its own file
    ///     Ok(())
    /// })
    /// ```
    pub fn enable_debug(&self) {
        self.inner.debug.store(true, Ordering::Relaxed);
        crate::subscriber::set_debug_log(crate::log::debug_log_writer);
    }

    /// Bytes of binary uploaded to targets by this router's bootstraps so far;
    /// 0 when every target had a warm cache.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// // Nothing uploaded yet; a connection to a cold cache adds the binary's size.
    /// assert_eq!(router.binary_bytes_sent(), 0);
    /// # }).unwrap();
    /// ```
    pub fn binary_bytes_sent(&self) -> u64 {
        self.inner.binary_bytes_sent.load(Ordering::Relaxed)
    }

    /// The first router made in this process; used to rebuild [`Sender`]s
    /// and [`Context`]s that arrive inside messages.
    ///
    /// [`Sender`]: crate::Sender
    /// [`Context`]: crate::Context
    pub(crate) fn process() -> Option<Router> {
        PROCESS_ROUTER.get().cloned()
    }

    /// The router [`Sender`]s and [`Context`]s decoded now belong to: the
    /// one whose message is being decoded on this thread
    /// ([`Router::decoding_with`]), else the process's first.
    ///
    /// [`Sender`]: crate::Sender
    /// [`Context`]: crate::Context
    pub(crate) fn decoding() -> Option<Router> {
        DECODING
            .with(|d| d.borrow().clone())
            .or_else(Router::process)
    }

    /// Run `decode` so that what it rebuilds belongs to `router` (the one
    /// the message arrived at), not to whichever router the process made
    /// first: a process may make several, one after another.
    pub(crate) fn decoding_with<T>(router: Option<&Router>, decode: impl FnOnce() -> T) -> T {
        let Some(router) = router else {
            return decode();
        };
        let prev = DECODING.with(|d| d.replace(Some(router.clone())));
        let _restore = Decoding(prev);
        decode()
    }

    /// The broker this router runs on.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// // Run a closure on the broker thread and wait for its result.
    /// let on_broker = router.broker().defer_sync(|| std::thread::current().id()).unwrap();
    /// assert_ne!(on_broker, std::thread::current().id());
    /// # }).unwrap();
    /// ```
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// This context's id: 0 in the master.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert_eq!(router.context_id(), 0); // the master; children get 1, 2, …
    /// # }).unwrap();
    /// ```
    pub fn context_id(&self) -> u32 {
        self.inner.context_id.load(Ordering::Relaxed)
    }

    /// Ids of this context's parents, nearest first; empty in the master.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert!(router.parent_ids().is_empty()); // the master has no parent
    /// # }).unwrap();
    /// ```
    pub fn parent_ids(&self) -> Vec<u32> {
        self.inner
            .parent_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `true` when `id` is one of this context's parents (no copy of the
    /// list: this runs for every call and forwarded message).
    pub(crate) fn is_parent(&self, id: u32) -> bool {
        self.inner
            .parent_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    /// The largest message body this router sends or accepts.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert_eq!(router.max_message_size(), mitogen::DEFAULT_MAX_MESSAGE_SIZE as usize);
    /// # }).unwrap();
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size.load(Ordering::Relaxed)
    }

    /// Change [`Router::max_message_size`]; children created later inherit it.
    ///
    /// # Errors
    /// [`StreamError::InvalidOptions`] for a size the frame header's 32-bit
    /// length field cannot carry (more than `u32::MAX` bytes); the limit is
    /// left unchanged.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router.set_max_message_size(1 << 20).unwrap();
    /// assert!(router.set_max_message_size(1 << 40).is_err());
    /// assert_eq!(router.max_message_size(), 1 << 20);
    /// # }).unwrap();
    /// ```
    pub fn set_max_message_size(&self, size: usize) -> Result<()> {
        if u32::try_from(size).is_err() {
            return Err(StreamError::InvalidOptions(format!(
                "max_message_size {size} exceeds {}, the largest length a frame header carries",
                u32::MAX
            ))
            .into());
        }
        self.inner.max_message_size.store(size, Ordering::Relaxed);
        Ok(())
    }

    /// The flow-control window: how many bytes of [`Sender`](crate::Sender)
    /// values (and call requests) may be on their way to one receiver in
    /// another context before the sender waits for it to consume them
    /// (default [`DEFAULT_FLOW_WINDOW`], 8 MiB). This context grants credit
    /// to its own senders each quarter window it consumes.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert_eq!(router.flow_window(), mitogen::DEFAULT_FLOW_WINDOW);
    /// # }).unwrap();
    /// ```
    pub fn flow_window(&self) -> u64 {
        self.inner.flow.window()
    }

    /// Change [`Router::flow_window`] (at least 1 byte). A message larger
    /// than the window is still sent, alone.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router.set_flow_window(1 << 20);
    /// assert_eq!(router.flow_window(), 1 << 20);
    /// # }).unwrap();
    /// ```
    pub fn set_flow_window(&self, bytes: u64) {
        self.inner.flow.set_window(bytes);
    }

    /// Name of a known context, for messages.
    pub(crate) fn name_of(&self, id: u32) -> String {
        if id == self.context_id() {
            return self
                .inner
                .name
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
        }
        lock(&self.inner.names)
            .get(&id)
            .cloned()
            .unwrap_or_else(|| {
                if id == 0 {
                    "master".into()
                } else {
                    format!("context {id}")
                }
            })
    }

    /// Register `f` for messages to `handle` (a new one if `None`) and
    /// return the handle (Mitogen's `add_handler`). `f` runs on the broker
    /// thread and must not block. With `persist == false` it is removed
    /// after one message. With a `respondent`, it receives a dead message
    /// when that context disconnects. A `policy` refuses messages with a
    /// dead reply to their sender. When the router shuts down (its broker
    /// stops), every handler still registered receives a dead message whose
    /// loss is of kind [`LossKind::Shutdown`].
    ///
    /// # Errors
    /// [`StreamError::HandleInUse`] when `handle` already has a handler
    /// (Mitogen refuses too): the first one stays; remove it with
    /// [`Router::del_handler`] first.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let h = router.add_handler(|msg| println!("got {msg:?}"), None, true, None, None).unwrap();
    /// assert!(router.add_handler(|_| {}, Some(h), true, None, None).is_err());
    /// assert!(router.del_handler(h));
    /// # }).unwrap();
    /// ```
    pub fn add_handler(
        &self,
        f: impl Fn(Message) + Send + Sync + 'static,
        handle: Option<u32>,
        persist: bool,
        respondent: Option<u32>,
        policy: Option<Policy>,
    ) -> Result<u32> {
        let f: Arc<dyn Fn(Message) + Send + Sync> = Arc::new(f);
        self.add(
            handle,
            Handler {
                f,
                persist,
                respondent,
                policy,
                queues: false,
                service: false,
            },
        )
    }

    /// Register one of the router's own services on its well-known
    /// `handle` (persistent); at shutdown it is removed without a dead
    /// message. A second registration is refused and logged (a bug).
    pub(crate) fn add_service(
        &self,
        f: impl Fn(Message) + Send + Sync + 'static,
        handle: u32,
        policy: Option<Policy>,
    ) {
        let handler = Handler {
            f: Arc::new(f),
            persist: true,
            respondent: None,
            policy,
            queues: false,
            service: true,
        };
        if let Err(e) = self.add(Some(handle), handler) {
            tracing::error!("service not installed: {e}");
        }
    }

    /// Register a one-shot handler for a reply from `respondent` on a new
    /// handle (never refused: a fresh handle is free).
    pub(crate) fn add_reply_handler(
        &self,
        f: impl Fn(Message) + Send + Sync + 'static,
        respondent: u32,
    ) -> u32 {
        let handler = Handler {
            f: Arc::new(f),
            persist: false,
            respondent: Some(respondent),
            policy: None,
            queues: false,
            service: false,
        };
        self.inner.handlers.add(None, handler).unwrap_or_else(|h| h)
    }

    fn add(&self, handle: Option<u32>, handler: Handler) -> Result<u32> {
        self.inner.handlers.add(handle, handler).map_err(|handle| {
            StreamError::HandleInUse {
                handle,
                context: self.name_of(self.context_id()),
            }
            .into()
        })
    }

    /// As [`Router::add_handler`] (persistent unless `oneshot`), for a
    /// handler that queues messages for a user thread
    /// ([`Receiver`](crate::Receiver)): flow-control credit is returned when
    /// the user takes a message, not when it is queued.
    pub(crate) fn add_queueing_handler(
        &self,
        f: impl Fn(Message) + Send + Sync + 'static,
        opts: crate::sync::ReceiverOptions,
    ) -> Result<u32> {
        self.add(
            opts.handle,
            Handler {
                f: Arc::new(f),
                persist: !opts.oneshot,
                respondent: opts.respondent,
                policy: opts.policy,
                queues: true,
                service: false,
            },
        )
    }

    /// A flow-controlled message from another context was consumed here:
    /// its bytes are due back to the sender as credit. `cache` keeps the
    /// entry of the first sender seen (a [`Receiver`](crate::Receiver)'s):
    /// a receiver mostly hears from one sender, which then costs one atomic
    /// add; others go through the table.
    #[inline]
    pub(crate) fn consumed(&self, msg: &Message, cache: Option<&OnceLock<OwedCache>>) {
        if !msg.flow {
            return;
        }
        let key = (msg.src_id, msg.handle);
        let n = msg.data.len() as u64;
        let cached = cache.and_then(|c| {
            let (src, owed) = match c.get() {
                Some(hit) => hit,
                None => c.get_or_init(|| (key.0, self.inner.flow.owed_for(key.0, key.1))),
            };
            owed.as_deref().filter(|_| *src == key.0)
        });
        self.inner.flow.consumed(self, key, n, cached);
    }

    /// A flow-controlled message was refused: credit its bytes at once.
    fn refused_flow(&self, msg: &Message) {
        if msg.flow {
            let n = msg.data.len() as u64;
            self.inner
                .flow
                .credit_now(self, (msg.src_id, msg.handle), n);
        }
    }

    /// Credit every sender of `handle` what it is owed (its receiver closes).
    pub(crate) fn flush_credit(&self, handle: u32) {
        self.inner.flow.flush_handle(self, handle);
    }

    /// Remove the handler for `handle`; `true` if there was one.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let h = router.add_handler(|_| {}, None, true, None, None).unwrap();
    /// assert!(router.del_handler(h));
    /// assert!(!router.del_handler(h));
    /// # }).unwrap();
    /// ```
    pub fn del_handler(&self, handle: u32) -> bool {
        self.inner.handlers.remove(handle).is_some()
    }

    /// Send a message from this context. Fills in `src_id` and `auth_id`.
    /// Safe from any thread.
    ///
    /// # Errors
    /// [`StreamError::MessageTooLarge`] when the body exceeds the maximum
    /// message size: nothing is sent and the link stays up.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// use mitogen::{Message, Receiver};
    /// let rx = Receiver::new(&router);
    /// let mut msg = Message::pickled(&3u8, rx.handle()).unwrap();
    /// msg.dst_id = router.context_id(); // any context in the tree
    /// router.route(msg).unwrap();
    /// assert_eq!(rx.recv().unwrap().unpickle::<u8>().unwrap(), 3);
    /// # }).unwrap();
    /// ```
    pub fn route(&self, msg: Message) -> Result<()> {
        self.route_wait(msg, Wait::Forever, None)
            .map_err(Refused::into_error)
    }

    /// [`Router::route`], waiting for room as `wait` allows: room in the
    /// receiver's flow-control window when `msg.flow` is set and the
    /// destination is another context, then room in the stream's queue.
    /// `window` caches the destination's window for a sender that sends to
    /// it again and again.
    pub(crate) fn route_wait(
        &self,
        mut msg: Message,
        wait: Wait,
        window: Option<&OnceLock<Arc<flow::Window>>>,
    ) -> Result<(), Refused> {
        let max = self.max_message_size();
        if msg.data.len() > max {
            return Err(Refused::Error(
                StreamError::MessageTooLarge {
                    size: msg.data.len(),
                    max,
                }
                .into(),
            ));
        }
        let me = self.context_id();
        msg.src_id = me;
        msg.auth_id = me;
        msg.flow &= !msg.dead && msg.dst_id != me;
        let (flow, dst, handle, n) = (msg.flow, msg.dst_id, msg.handle, msg.data.len() as u64);
        let looked_up;
        let w: Option<&flow::Window> = if !flow {
            None
        } else if let Some(cache) = window {
            Some(cache.get_or_init(|| self.inner.flow.window_for(dst, handle)))
        } else {
            looked_up = self.inner.flow.window_for(dst, handle);
            Some(&looked_up)
        };
        if let Some(w) = w {
            match self.inner.flow.acquire(self, w, (dst, handle), n, wait) {
                Ok(()) => {}
                Err(Blocked::Full) => return Err(Refused::Full),
                Err(Blocked::Lost(loss)) => {
                    return Err(Refused::Error(crate::ChannelError::Dead(loss).into()))
                }
            }
        }
        match self.dispatch(msg, None, wait) {
            Ok(()) => Ok(()),
            Err(full) => {
                if let Some(w) = w {
                    self.inner.flow.release(w, n);
                }
                Err(match full {
                    Full::NoRoom => Refused::Full,
                    Full::Closed => Refused::Error(
                        crate::ChannelError::Dead(Loss::new(
                            LossKind::Closed,
                            self.name_of(dst),
                            format!(
                                "the stream to {} closed while waiting to send",
                                self.name_of(dst)
                            ),
                        ))
                        .into(),
                    ),
                })
            }
        }
    }

    /// Send a control message (a refusal, credit) from this context: it
    /// never waits for room, and is never flow-controlled.
    pub(crate) fn route_control(&self, mut msg: Message) {
        let me = self.context_id();
        msg.src_id = me;
        msg.auth_id = me;
        msg.flow = false;
        let _ = self.dispatch(msg, None, Wait::Force);
    }

    /// Send several messages from this context; consecutive messages that
    /// leave on the same stream share one system call. Used for the replies
    /// of calls that were queued together.
    pub(crate) fn route_batch(&self, msgs: Vec<Message>) {
        let me = self.context_id();
        let mut batch: Vec<([u8; mitogen_wire::HEADER_LEN], Vec<u8>)> = Vec::new();
        let mut batch_stream: Option<Arc<Stream>> = None;
        let flush = |stream: &Option<Arc<Stream>>, batch: &mut Vec<_>| {
            if let Some(s) = stream {
                if !batch.is_empty() && s.send_batch(std::mem::take(batch), Wait::Forever).is_err()
                {
                    tracing::debug!("stream {} closed; dropped replies", s.name);
                }
            }
        };
        for mut msg in msgs {
            msg.src_id = me;
            msg.auth_id = me;
            let stream = (msg.dst_id != me && !self.is_unidirectional())
                .then(|| self.stream_to(msg.dst_id))
                .flatten();
            match stream {
                Some(s) if msg.data.len() <= self.max_message_size() => {
                    if !batch_stream.as_ref().is_some_and(|b| Arc::ptr_eq(b, &s)) {
                        flush(&batch_stream, &mut batch);
                        batch_stream = Some(s);
                    }
                    batch.push((msg.header().to_bytes(), msg.data));
                }
                // Local, refused, unidirectional or oversize: the general path.
                _ => {
                    flush(&batch_stream, &mut batch);
                    if let Err(e) = self.route(msg) {
                        tracing::error!("could not send a reply: {e}");
                    }
                }
            }
        }
        flush(&batch_stream, &mut batch);
    }

    /// Route `msg` with its `src_id` and `auth_id` as given, not stamped:
    /// only for tests of source verification.
    #[doc(hidden)]
    pub fn __route_unstamped(&self, msg: Message) {
        let _ = self.dispatch(msg, None, Wait::Force);
    }

    /// Deliver or forward a message; `from` is the stream it arrived on.
    /// `Err` only when a sender waiting for room in a stream gave up.
    fn dispatch(
        &self,
        mut msg: Message,
        from: Option<&Arc<Stream>>,
        wait: Wait,
    ) -> Result<(), Full> {
        if let Some(stream) = from {
            if !self.verify_source(&msg, stream) {
                return Ok(());
            }
            msg.from_stream = stream.remote_id();
        }
        if msg.dst_id == self.context_id() {
            self.deliver(msg);
            return Ok(());
        }
        if let Some(from) = from {
            if self.is_unidirectional()
                && !self.is_parent_stream(Some(from))
                && !self.unidirectional_allows(&msg, from)
            {
                let reason = format!(
                    "unidirectional routing: context {} may not start traffic to context {}",
                    self.name_of(msg.src_id),
                    self.name_of(msg.dst_id)
                );
                tracing::error!("{reason}: {msg:?}");
                self.refuse(&msg, &reason);
                return Ok(());
            }
        }
        match self.stream_to(msg.dst_id) {
            Some(stream) => {
                if from.is_some_and(|f| Arc::ptr_eq(f, &stream)) {
                    self.refuse(&msg, &format!("routing loop to context {}", msg.dst_id));
                    return Ok(());
                }
                if self.is_unidirectional() {
                    stream.note_sender(msg.src_id);
                }
                // Remember whom a child talks to, to tell it of their loss;
                // a parent's loss reaches it anyway (its own parent goes).
                if let Some(f) = from {
                    if !self.is_parent_stream(Some(f)) && !self.is_parent(msg.dst_id) {
                        let mut talked = lock(&f.talked_to);
                        if talked.len() < MAX_TALKED_TO {
                            talked.insert(msg.dst_id);
                        }
                    }
                }
                let header = msg.header().to_bytes();
                match stream.send(header, msg.data, wait) {
                    Ok(()) => {}
                    Err(SendError::Full) => return Err(Full::NoRoom),
                    Err(SendError::ClosedWhileWaiting) => return Err(Full::Closed),
                    // Streams close under us while shutting down: nothing to wake.
                    Err(SendError::Closed) => {
                        tracing::debug!("stream {} closed; dropped message", stream.name)
                    }
                }
            }
            None => {
                let reason = match self.known_name(msg.dst_id) {
                    n if n.is_empty() => format!(
                        "no route to context {}: no context with that id is known here",
                        msg.dst_id
                    ),
                    n => format!(
                        "no route to context '{n}' (id {}): it was shut down or disconnected",
                        msg.dst_id
                    ),
                };
                self.refuse(&msg, &reason);
            }
        }
        Ok(())
    }

    fn is_parent_stream(&self, s: Option<&Arc<Stream>>) -> bool {
        let parent = self.inner.parent.read().unwrap_or_else(|p| p.into_inner());
        matches!((s, parent.as_ref()), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// The stream a message for `id` leaves on.
    pub(crate) fn stream_to(&self, id: u32) -> Option<Arc<Stream>> {
        if let Some(s) = self
            .inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Some(s.clone());
        }
        self.inner
            .parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A message must come in on the stream its `auth_id` and `src_id` route through.
    fn verify_source(&self, msg: &Message, stream: &Arc<Stream>) -> bool {
        for (what, id) in [("auth_id", msg.auth_id), ("src_id", msg.src_id)] {
            let ok = self.stream_to(id).is_some_and(|s| Arc::ptr_eq(&s, stream));
            if !ok {
                tracing::error!(
                    "dropped {msg:?} from stream {}: bad {what} {id}: it does not route through that stream",
                    stream.name
                );
                return false;
            }
        }
        true
    }

    /// A handler body for the router's own services: `f` runs with the
    /// router the message arrived at. It holds no `Router` itself, so the
    /// handlers a router keeps never keep it (and its broker thread's
    /// descriptors) alive after it is dropped.
    pub(crate) fn own(
        f: impl Fn(&Router, Message) + Send + Sync + 'static,
    ) -> impl Fn(Message) + Send + Sync + 'static {
        move |msg: Message| {
            if let Some(router) = msg.router.clone() {
                f(&router, msg)
            }
        }
    }

    fn deliver(&self, mut msg: Message) {
        msg.router = Some(self.clone());
        let handler = match self
            .inner
            .handlers
            .take_for(msg.handle, |expected| self.may_answer(&msg, expected))
        {
            Lookup::Found(h) => Some(h),
            Lookup::Missing => None,
            Lookup::WrongSender { expected } => {
                self.refused_flow(&msg);
                let reason = format!(
                    "handle {} waits for a reply from {} (id {expected}), not from {} (id {})",
                    msg.handle,
                    self.name_of(expected),
                    self.name_of(msg.src_id),
                    msg.src_id
                );
                tracing::error!("refused {msg:?}: {reason}");
                self.refuse(&msg, &reason);
                return;
            }
        };
        let Some(handler) = handler else {
            self.refused_flow(&msg);
            let reason = format!(
                "no handler for handle {}{} in context {}",
                msg.handle,
                handle::name(msg.handle)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                self.name_of(self.context_id())
            );
            if !msg.dead {
                tracing::debug!("{reason}: {msg:?}");
            }
            self.refuse(&msg, &reason);
            return;
        };
        if let Some(policy) = &handler.policy {
            if !policy(&msg, self) {
                self.refused_flow(&msg);
                tracing::error!("policy refused {msg:?}");
                self.refuse(&msg, crate::error::POLICY_REFUSAL);
                return;
            }
        }
        if !handler.queues {
            self.consumed(&msg, None);
            msg.flow = false;
        }
        (handler.f)(msg);
    }

    /// May `msg` reach a handler waiting for a reply from `expected`? Only
    /// `expected` itself may answer; a dead reply (a refusal) may also come
    /// from this context, a parent, or the child stream `expected` is behind.
    fn may_answer(&self, msg: &Message, expected: u32) -> bool {
        let src = msg.src_id;
        src == expected
            || (msg.dead
                && (src == self.context_id()
                    || self.is_parent(src)
                    || self
                        .routes_get(expected)
                        .is_some_and(|s| s.remote_id() == src)))
    }

    /// Send a dead reply to `msg`'s sender, unless it is itself dead or wants no reply.
    pub(crate) fn refuse(&self, msg: &Message, reason: &str) {
        if msg.dead || msg.reply_to == 0 {
            return;
        }
        let mut dead = Message::dead(reason, msg.reply_to);
        dead.dst_id = msg.src_id;
        self.route_control(dead);
    }

    /// Route a child this context just started, `id`, through its stream;
    /// the id is granted to that stream.
    pub(crate) fn add_route(&self, id: u32, stream: Arc<Stream>) {
        lock(&self.inner.grants).grant(id, id + 1, stream.remote_id());
        self.insert_route(id, stream);
    }

    /// Make `id` reachable through `stream` (a direct child or a descendant).
    fn insert_route(&self, id: u32, stream: Arc<Stream>) {
        self.inner
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, stream);
    }

    /// The child stream `id` is routed through, if it is routed below us.
    fn routes_get(&self, id: u32) -> Option<Arc<Stream>> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Set the stream to the parent; `on_lost` runs when it disconnects.
    pub(crate) fn set_parent(
        &self,
        stream: Arc<Stream>,
        on_lost: impl FnOnce(&Loss) + Send + 'static,
    ) {
        *self.inner.parent.write().unwrap_or_else(|p| p.into_inner()) = Some(stream);
        *lock(&self.inner.parent_lost) = Some(Box::new(on_lost));
    }

    /// Wake every handler waiting on a lost context with a dead message
    /// carrying its [`Loss`]: the kind, the context's name and a sentence
    /// ending in `reason`. `direct` is the context whose own link broke:
    /// it gets `kind`, and every other id in `ids` was behind it and is
    /// lost behind that hop. Without `direct`, every id gets `kind`.
    pub(crate) fn lost(&self, ids: &[u32], kind: &LossKind, reason: &str, direct: Option<u32>) {
        for &id in ids {
            let kind = self.kind_for(id, kind, direct);
            let loss = self.loss_of(id, kind.clone(), reason);
            self.inner.flow.lost(id, &loss);
            for (handle, handler) in self.inner.handlers.take_respondent(id) {
                let mut dead = Message::dead_with(loss.clone(), handle);
                dead.dst_id = self.context_id();
                dead.src_id = id;
                dead.router = Some(self.clone());
                (handler.f)(dead);
            }
            self.tell_talkers(id, &kind, reason);
            self.announce_lost(id, &loss);
        }
    }

    /// The kind of the loss of `id` when `direct`'s link broke with `kind`.
    pub(crate) fn kind_for(&self, id: u32, kind: &LossKind, direct: Option<u32>) -> LossKind {
        match direct {
            Some(hop) if hop != id => LossKind::Behind(self.name_of(hop)),
            _ => kind.clone(),
        }
    }

    /// The [`Loss`] of context `id`, of `kind`, explained by `reason`.
    pub(crate) fn loss_of(&self, id: u32, kind: LossKind, reason: &str) -> Loss {
        let name = self.name_of(id);
        let label = match lock(&self.inner.names).get(&id) {
            Some(known) => format!("{known} (id {id})"),
            None => format!("id {id}"),
        };
        let text = match &kind {
            LossKind::Behind(hop) => format!("context {label} lost behind hop {hop}: {reason}"),
            _ => format!("context {label} disconnected: {reason}"),
        };
        Loss::new(kind, name, text)
    }

    /// Send DEL_ROUTE for `id` down to every child that sent messages to it
    /// through us, so their waiters wake too, with the loss's kind.
    /// The streams to our direct children, once each (many routes share one).
    pub(crate) fn child_streams(&self) -> Vec<Arc<Stream>> {
        let routes = self.inner.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut seen: Vec<Arc<Stream>> = Vec::new();
        for s in routes.values() {
            if !seen.iter().any(|x| Arc::ptr_eq(x, s)) {
                seen.push(s.clone());
            }
        }
        seen
    }

    fn tell_talkers(&self, id: u32, kind: &LossKind, reason: &str) {
        for child in self.child_streams() {
            if lock(&child.talked_to).remove(&id) {
                let body = (id, self.known_name(id), reason.to_string(), kind.clone());
                if let Ok(mut msg) = Message::pickled(&body, mitogen_wire::handle::DEL_ROUTE) {
                    msg.dst_id = child.remote_id();
                    let _ = self.route(msg);
                }
            }
        }
    }

    pub(crate) fn events(&self) -> Arc<dyn StreamEvents> {
        Arc::new(RouterEvents(self.clone()))
    }

    /// The name a context was given, if known here ("" otherwise).
    pub(crate) fn known_name(&self, id: u32) -> String {
        lock(&self.inner.names)
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Remember a context's name for messages.
    pub(crate) fn set_name_of(&self, id: u32, name: &str) {
        lock(&self.inner.names).insert(id, name.to_string());
    }
}

/// The router's side of the broker's stream callbacks.
struct RouterEvents(Router);

impl StreamEvents for RouterEvents {
    fn on_message(&self, stream: &Arc<Stream>, msg: Message) {
        let _ = self.0.dispatch(msg, Some(stream), Wait::Force);
    }

    fn on_disconnect(&self, stream: &Arc<Stream>, cause: &Loss) {
        let router = &self.0;
        let lost: Vec<u32> = {
            let mut routes = router
                .inner
                .routes
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let ids: Vec<u32> = routes
                .iter()
                .filter(|(_, s)| Arc::ptr_eq(s, stream))
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                routes.remove(id);
            }
            ids
        };
        lock(&router.inner.grants).forget(stream.remote_id());
        let (kind, reason) = (&cause.kind, cause.text.as_str());
        let direct = Some(stream.remote_id());
        let was_parent = router.is_parent_stream(Some(stream));
        if was_parent {
            if *kind == LossKind::Corrupt {
                router.farewell_on(
                    stream,
                    kind,
                    &format!("it refused its parent's stream: {reason}"),
                );
            }
            let parents = router.parent_ids();
            router.lost(&parents, kind, reason, direct);
            *router
                .inner
                .parent
                .write()
                .unwrap_or_else(|p| p.into_inner()) = None;
            if let Some(f) = lock(&router.inner.parent_lost).take() {
                f(cause);
            }
        }
        router.lost(&lost, kind, reason, direct);
        if !was_parent {
            for id in lost {
                let kind = router.kind_for(id, kind, direct);
                router.propagate(
                    mitogen_wire::handle::DEL_ROUTE,
                    &(id, router.known_name(id), reason.to_string(), kind),
                );
            }
        }
    }
}
