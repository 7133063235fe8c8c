//! Runs calls in order on a child's main thread (Mitogen's `Dispatcher`),
//! and the [`ExternalContext`] handed to functions that ask for it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

use super::blob::with_frame;
use super::call::{REPLY_ERR, REPLY_OK};
use super::handle::Context;
use super::registry::{lookup, Failure};
use crate::broker::lock;
use crate::error::{CallError, CallErrorKind};
use crate::message::Message;
use crate::router::Router;
use crate::sync::Receiver;

/// What a function running in a child can learn about where it runs
/// (Mitogen's `ExternalContext`). Ask for it with a `&ExternalContext`
/// parameter; ask for the router with `&Router`.
///
/// # Examples
/// ```
/// #[mitogen::remote]
/// fn whoami(ec: &mitogen::ExternalContext) -> u32 { ec.context_id() }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct ExternalContext {
    router: Router,
}

impl ExternalContext {
    pub(crate) fn new(router: Router) -> ExternalContext {
        ExternalContext { router }
    }

    /// This context's router.
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn my_id(ec: &mitogen::ExternalContext) -> u32 { ec.router().context_id() }
    /// # fn main() {}
    /// ```
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// This context's id (the same as [`Router::context_id`] and, in a
    /// child, [`mitogen::context_id`](crate::context_id)).
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn my_id(ec: &mitogen::ExternalContext) -> u32 { ec.context_id() }
    /// # fn main() {}
    /// ```
    pub fn context_id(&self) -> u32 {
        self.router.context_id()
    }

    /// This context's name, as its parent named it (`local.4242`,
    /// `ssh.web1`, or the `remote_name` given); `master` in the master.
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn whoami(ec: &mitogen::ExternalContext) -> String {
    ///     ec.name()
    /// }
    /// # fn main() {}
    /// ```
    pub fn name(&self) -> String {
        self.router.name_of(self.router.context_id())
    }

    /// Ids of this context's parents, nearest first (the same as
    /// [`Router::parent_ids`] and [`mitogen::parent_ids`](crate::parent_ids)).
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn depth(ec: &mitogen::ExternalContext) -> usize {
    ///     ec.parent_ids().len()
    /// }
    /// # fn main() {}
    /// ```
    pub fn parent_ids(&self) -> Vec<u32> {
        self.router.parent_ids()
    }

    /// The parent context, if any: for its id and name, to send to a
    /// [`Sender`](crate::Sender) it made, or to pass on.
    ///
    /// Calling it never works: a context accepts calls only from its own
    /// parents, and the master serves no calls, so a
    /// [`Context::call`] on the parent fails at once with
    /// [`CallErrorKind::Refused`] and a sentence saying so. To send results
    /// up while running, take a [`Sender`](crate::Sender) as an argument.
    ///
    /// # Examples
    /// ```
    /// #[mitogen::remote]
    /// fn parent_name(ec: &mitogen::ExternalContext) -> Option<String> {
    ///     ec.parent().map(|p| p.name().to_string())
    /// }
    /// # fn main() {}
    /// ```
    pub fn parent(&self) -> Option<Context> {
        let id = *self.router.parent_ids().first()?;
        Some(Context::new(&self.router, id, None))
    }
}

/// Who sent a call: its `auth_id` and `src_id`, both checked by the router
/// on the way in. Chain ids are only unique per caller.
type Caller = (u32, u32);

/// How many failed chains a context remembers; past this the oldest failure
/// is forgotten (as if its chain had been reset).
pub(crate) const MAX_FAILED_CHAINS: usize = 4096;

/// First failure of each poisoned call chain, keyed by caller and chain id,
/// bounded by [`MAX_FAILED_CHAINS`] (oldest evicted first).
struct FailedChains {
    by_chain: BTreeMap<(Caller, u64), (u64, CallError)>,
    /// Insertion sequence number → key, oldest first.
    order: BTreeMap<u64, (Caller, u64)>,
    next: u64,
}

impl FailedChains {
    const fn new() -> FailedChains {
        FailedChains {
            by_chain: BTreeMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    fn get(&self, key: (Caller, u64)) -> Option<&CallError> {
        self.by_chain.get(&key).map(|(_, e)| e)
    }

    fn insert(&mut self, key: (Caller, u64), e: CallError) {
        self.remove(key);
        let seq = self.next;
        self.next += 1;
        self.by_chain.insert(key, (seq, e));
        self.order.insert(seq, key);
        while self.by_chain.len() > MAX_FAILED_CHAINS {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_chain.remove(&oldest);
        }
    }

    fn remove(&mut self, key: (Caller, u64)) {
        if let Some((seq, _)) = self.by_chain.remove(&key) {
            self.order.remove(&seq);
        }
    }
}

static CHAINS: Mutex<FailedChains> = Mutex::new(FailedChains::new());

/// Forget a chain's failure (sent by `CallChain::reset`). Acts only on the
/// calling context's own chains.
#[crate::remote]
pub(crate) fn forget_chain(chain: u64) {
    if let Some(caller) = CALLER.get() {
        lock(&CHAINS).remove((caller, chain));
    }
}

thread_local! {
    static IN_CALL: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The sender of the call running on this thread, for built-ins.
    static CALLER: Cell<Option<Caller>> = const { Cell::new(None) };
}

/// Install a panic hook that captures the backtrace of panics inside calls
/// (instead of printing them) and defers to the previous hook otherwise.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = IN_CALL.with(|c| {
                let mut c = c.borrow_mut();
                if c.is_some() {
                    let bt = std::backtrace::Backtrace::force_capture();
                    let loc = info
                        .location()
                        .map(|l| format!("at {}:{}:{}\n", l.file(), l.line(), l.column()))
                        .unwrap_or_default();
                    *c = Some(format!("{loc}{bt}"));
                    true
                } else {
                    false
                }
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Serve calls from `calls` until it is closed or dead. Replies to calls
/// that arrived together are sent together, in one system call.
pub(crate) fn serve(router: &Router, calls: &Receiver) {
    install_panic_hook();
    let ec = ExternalContext::new(router.clone());
    let mut replies = Vec::new();
    while let Ok(msg) = calls.recv() {
        crate::profile::call_queue(|| calls.len() + 1);
        if let Some(reply) = run_one(&ec, msg) {
            replies.push(reply);
        }
        if calls.is_empty() || replies.len() >= 64 {
            router.route_batch(std::mem::take(&mut replies));
        }
    }
    router.route_batch(replies);
}

/// Run one call; return its reply, addressed, if it wants one.
pub(crate) fn run_one(ec: &ExternalContext, mut msg: Message) -> Option<Message> {
    // Arguments decode from the frame itself: a `Blob` argument borrows it.
    let frame = std::sync::Arc::new(std::mem::take(&mut msg.data));
    let caller = (msg.auth_id, msg.src_id);
    CALLER.set(Some(caller));
    let outcome = with_frame(&frame, |data| execute(ec, caller, data));
    CALLER.set(None);
    let (reply, failed) = match outcome {
        Ok(out) => (out, None),
        Err(Failure(e)) => {
            let e = *e;
            let mut out = vec![REPLY_ERR];
            let _ = mitogen_wire::encode_into(&e, &mut out);
            (out, Some(e))
        }
    };
    if let Some(e) = &failed {
        if msg.reply_to == 0 {
            tracing::error!("{e:#}");
        }
    }
    if msg.reply_to == 0 {
        return None;
    }
    let max = ec.router().max_message_size();
    let reply = if reply.len() > max {
        // Say so instead of sending what the link refuses.
        let e = CallError::new(
            CallErrorKind::BadResult,
            "",
            "mitogen::Error",
            crate::error::StreamError::MessageTooLarge {
                size: reply.len(),
                max,
            }
            .to_string(),
        );
        let mut out = vec![REPLY_ERR];
        let _ = mitogen_wire::encode_into(&e, &mut out);
        out
    } else {
        reply
    };
    let mut m = Message::new(msg.reply_to, reply);
    m.dst_id = msg.src_id;
    Some(m)
}

fn execute(ec: &ExternalContext, caller: Caller, data: &[u8]) -> Result<Vec<u8>, Failure> {
    let bad = |message: String| {
        Failure(Box::new(CallError::new(
            CallErrorKind::BadArguments,
            "",
            "mitogen::CallRequest",
            message,
        )))
    };
    let ((name, chain), args): ((String, Option<u64>), &[u8]) =
        mitogen_wire::decode_prefix(data).map_err(|e| bad(e.to_string()))?;
    if let Some(chain) = chain {
        if let Some(prev) = lock(&CHAINS).get((caller, chain)) {
            let mut e = Box::new(prev.clone());
            e.kind = CallErrorKind::ChainFailed;
            e.message = format!("{} (first failure: {})", e.message, prev.function);
            e.function = name;
            return Err(Failure(e));
        }
    }
    let result = invoke(ec, &name, args);
    if let (Some(chain), Err(Failure(e))) = (chain, &result) {
        lock(&CHAINS).insert((caller, chain), (**e).clone());
    }
    result
}

fn invoke(ec: &ExternalContext, name: &str, args: &[u8]) -> Result<Vec<u8>, Failure> {
    let Some(entry) = lookup(name) else {
        return Err(Failure(Box::new(CallError::new(
            CallErrorKind::UnknownFunction,
            name,
            "mitogen::UnknownFunction",
            format!(
                "no function named {name} is registered with #[mitogen::remote] in this binary"
            ),
        ))));
    };
    let mut out = vec![REPLY_OK];
    IN_CALL.with(|c| *c.borrow_mut() = Some(String::new()));
    let started = crate::profile::call_started();
    let outcome = catch_unwind(AssertUnwindSafe(|| (entry.invoke)(ec, args, &mut out)));
    crate::profile::call_finished(entry.name, started, !matches!(outcome, Ok(Ok(()))));
    let backtrace = IN_CALL.with(|c| c.borrow_mut().take()).unwrap_or_default();
    match outcome {
        Ok(Ok(())) => Ok(out),
        Ok(Err(mut f)) => {
            f.0.function = name.to_string();
            f.0.location = entry.location.to_string();
            if f.0.backtrace.is_empty() {
                // No backtrace is taken for an `Err`: say at least where.
                f.0.backtrace = format!(
                    "{name} at {} in context '{}' (id {})",
                    entry.location,
                    ec.router().name_of(ec.context_id()),
                    ec.context_id()
                );
            }
            Err(f)
        }
        Err(payload) => Err(Failure(Box::new(CallError {
            backtrace,
            location: entry.location.to_string(),
            ..CallError::new(
                CallErrorKind::Panicked,
                name,
                "panic",
                panic_message(&*payload),
            )
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(n: u64) -> CallError {
        CallError::new(CallErrorKind::Returned, "f", "E", format!("failure {n}"))
    }

    /// L2: the failed-chain table is bounded; the oldest failure goes first,
    /// and a chain is keyed by its caller too.
    #[test]
    fn l2_failed_chains_are_bounded_oldest_first() {
        let mut t = FailedChains::new();
        let total = MAX_FAILED_CHAINS as u64 + 10;
        for n in 0..total {
            t.insert(((0, 0), n), failure(n));
        }
        assert_eq!(t.by_chain.len(), MAX_FAILED_CHAINS);
        assert_eq!(t.order.len(), MAX_FAILED_CHAINS);
        assert!(t.get(((0, 0), 9)).is_none(), "oldest failures evicted");
        assert_eq!(t.get(((0, 0), 10)).unwrap().message, "failure 10");
        assert!(t.get(((0, 0), total - 1)).is_some());
        assert!(
            t.get(((1, 1), total - 1)).is_none(),
            "other caller, same id"
        );
        t.remove(((0, 0), total - 1));
        assert!(t.get(((0, 0), total - 1)).is_none());
        assert_eq!(t.order.len(), MAX_FAILED_CHAINS - 1);
    }
}
