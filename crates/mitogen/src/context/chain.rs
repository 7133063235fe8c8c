//! [`CallChain`]: pipelined calls that stop at the first failure.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::{AsyncCall, Remote};
use super::dispatcher::forget_chain;
use super::handle::{call_message, Context};
use crate::error::Result;

static NEXT_CHAIN: AtomicU64 = AtomicU64::new(1);

/// Calls into one context that may be pipelined (Mitogen's `CallChain`).
///
/// With pipelining, [`CallChain::call_no_reply`] returns at once. If such a
/// call fails, every later call in the chain fails with the same error
/// (kind `ChainFailed`) without running, until [`CallChain::reset`]. The
/// next [`CallChain::call`] reports the failure.
///
/// The callee keys a chain by the calling context as well as its id, so
/// chains of different callers never affect each other, and a reset only
/// clears the caller's own chain. A context remembers at most 4096 failed
/// chains; past that the oldest failure is forgotten, as if reset.
///
/// # Examples
/// ```no_run
/// # #[mitogen::remote] fn mkdir(p: String) -> Result<(), std::io::Error> { std::fs::create_dir(p) }
/// # #[mitogen::remote] fn sync() {}
/// # fn main() {}
/// # fn f(ctx: mitogen::Context) -> mitogen::Result<()> {
/// let chain = ctx.call_chain();
/// chain.call_no_reply(mkdir::remote, ("/tmp/a".into(),))?;
/// chain.call_no_reply(mkdir::remote, ("/tmp/a/b".into(),))?;
/// chain.call(sync::remote, ())?; // fails if either mkdir failed
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CallChain {
    context: Context,
    pipelined: bool,
    chain_id: AtomicU64,
}

impl CallChain {
    /// A chain into `context`; without `pipelined`, calls carry no chain and
    /// behave like [`Context::call`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn step(n: u32) -> Result<u32, String> { Ok(n) }
    /// # fn main() {}
    /// # fn f(child: mitogen::Context) -> mitogen::Result<()> {
    /// use mitogen::CallChain;
    /// // Not pipelined: each call behaves like Context::call.
    /// let plain = CallChain::new(child.clone(), false);
    /// assert_eq!(plain.call(step::remote, (1,))?, 1);
    /// let pipelined = CallChain::new(child, true); // as Context::call_chain
    /// pipelined.call_no_reply(step::remote, (2,))?;
    /// # Ok(()) }
    /// ```
    pub fn new(context: Context, pipelined: bool) -> CallChain {
        CallChain {
            context,
            pipelined,
            chain_id: AtomicU64::new(NEXT_CHAIN.fetch_add(1, Ordering::Relaxed)),
        }
    }

    fn chain(&self) -> Option<u64> {
        self.pipelined
            .then(|| self.chain_id.load(Ordering::Relaxed))
    }

    /// Start a call whose result is not awaited; a failure poisons the chain.
    ///
    /// # Errors
    /// As [`Context::send`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn step(n: u32) -> Result<u32, String> { Ok(n) }
    /// # fn main() {}
    /// # fn f(child: mitogen::Context) -> mitogen::Result<()> {
    /// let chain = child.call_chain();
    /// for n in 0..10 {
    ///     chain.call_no_reply(step::remote, (n,))?; // returns at once
    /// }
    /// chain.call(step::remote, (10,))?; // reports the first failure, if any
    /// # Ok(()) }
    /// ```
    pub fn call_no_reply<A: Serialize, R>(&self, function: Remote<A, R>, args: A) -> Result<()> {
        self.context
            .send(call_message(function.name(), self.chain(), &args)?)
    }

    /// Start a call in the chain and return its pending reply.
    ///
    /// # Errors
    /// As [`Context::send`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn step(n: u32) -> Result<u32, String> { Ok(n) }
    /// # fn main() {}
    /// # fn f(child: mitogen::Context) -> mitogen::Result<()> {
    /// let chain = child.call_chain();
    /// chain.call_no_reply(step::remote, (1,))?;
    /// let last = chain.call_async(step::remote, (2,))?;
    /// assert_eq!(last.get()?, 2);
    /// # Ok(()) }
    /// ```
    pub fn call_async<A: Serialize, R: DeserializeOwned>(
        &self,
        function: Remote<A, R>,
        args: A,
    ) -> Result<AsyncCall<R>> {
        self.context.call_async_in(self.chain(), function, args)
    }

    /// Call and wait; fails with the chain's first error if an earlier call failed.
    ///
    /// # Errors
    /// As [`Context::call`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn step(n: u32) -> Result<u32, String> { Ok(n) }
    /// # fn main() {}
    /// # fn f(child: mitogen::Context) -> mitogen::Result<()> {
    /// let chain = child.call_chain();
    /// chain.call_no_reply(step::remote, (1,))?;
    /// match chain.call(step::remote, (2,)) {
    ///     Err(mitogen::Error::Call(e)) if e.kind == mitogen::CallErrorKind::ChainFailed => {
    ///         eprintln!("an earlier call failed: {e}");
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        function: Remote<A, R>,
        args: A,
    ) -> Result<R> {
        self.call_async(function, args)?.get()
    }

    /// Forget an earlier failure and start a fresh chain.
    ///
    /// # Errors
    /// As [`Context::send`].
    ///
    /// # Examples
    /// ```no_run
    /// # #[mitogen::remote] fn step(n: u32) -> Result<u32, String> { Ok(n) }
    /// # fn main() {}
    /// # fn f(child: mitogen::Context) -> mitogen::Result<()> {
    /// let chain = child.call_chain();
    /// chain.call_no_reply(step::remote, (1,))?;
    /// if chain.call(step::remote, (2,)).is_err() {
    ///     chain.reset()?; // later calls run again
    /// }
    /// chain.call(step::remote, (3,))?;
    /// # Ok(()) }
    /// ```
    pub fn reset(&self) -> Result<()> {
        if let Some(old) = self.chain() {
            self.chain_id.store(
                NEXT_CHAIN.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            self.context.call_no_reply(forget_chain::remote, (old,))?;
        }
        Ok(())
    }
}
