//! The tree: context id allocation, route propagation (ADD_ROUTE /
//! DEL_ROUTE) and unidirectional routing.
//!
//! The master hands out ids. A child asks its parent for a block with
//! `ALLOCATE_ID` (each parent asks its own, up to the master) and allocates
//! from that block for its own children; every hop records which child
//! stream each block went to ([`grants`](super::grants)). When a context
//! starts a child it tells its parent with `ADD_ROUTE`, and each hop checks
//! the id was granted to that stream, records "that id is behind this
//! stream" and passes it up, so any context can reach any other by id and no
//! child can claim an id that is not its own. When a stream is lost, each
//! hop wakes the waiters on every context behind it and passes `DEL_ROUTE` up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen_wire::handle::{ADD_ROUTE, ALLOCATE_ID, DEL_ROUTE, FORWARD_LOG};

use super::grants::{MAX_BLOCKS_PER_CHILD, MAX_BLOCKS_PER_STREAM};
use super::{is_immediate_child, Router};
use crate::broker::{lock, Stream};
use crate::context::Context;
use crate::error::{ChannelError, Loss, LossKind, Result};
use crate::message::Message;

/// Ids granted per `ALLOCATE_ID` request.
const ID_BLOCK: u32 = 1000;
/// The master never hands out ids from here up, so `start + ID_BLOCK`
/// cannot overflow and no id is ever handed out twice.
const ID_LIMIT: u32 = u32::MAX - ID_BLOCK;
/// Longest context name a child may announce.
pub(crate) const MAX_NAME_LEN: usize = 256;
/// Longest `DEL_ROUTE` reason passed on; the rest is cut with a marker.
const MAX_REASON_LEN: usize = 1024;
/// Longest a context closing its parent stream for bad input waits for
/// its explanation to be written.
const FAREWELL_WAIT: Duration = Duration::from_millis(100);

impl Router {
    /// Allocate a context id for a new child (Mitogen's `allocate_id`). The
    /// master counts; a child takes ids from a block its parent granted
    /// (each parent asks its own, up to the master), asking for a new block
    /// when it runs out. Ids are never handed out twice.
    ///
    /// # Errors
    /// A child whose parent cannot be reached or refuses (too many blocks
    /// for that subtree, ids exhausted): [`ChannelError::Dead`] with the reason.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let a = router.allocate_id().unwrap();
    /// let b = router.allocate_id().unwrap();
    /// assert!(a > 0 && b > a); // never handed out twice
    /// # }).unwrap();
    /// ```
    pub fn allocate_id(&self) -> Result<u32> {
        if self.context_id() == 0 {
            return Ok(self
                .take_ids(1)
                .map_err(|why| ChannelError::Dead(Loss::new(LossKind::Refused, "master", why)))?
                .0);
        }
        let mut block = lock(&self.inner.id_block);
        if block.0 >= block.1 {
            let parent = self.parent_context();
            let reply = parent.send_await(Message::new(ALLOCATE_ID, Vec::new()), None)?;
            let (start, end): (u32, u32) = reply.unpickle()?;
            *block = valid_block(start, end).map_err(|why| {
                let text = format!("context {}: {why}", parent.name());
                ChannelError::Dead(Loss::new(LossKind::Other, parent.name(), text))
            })?;
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// In the master: reserve `n` fresh ids.
    fn take_ids(&self, n: u32) -> std::result::Result<(u32, u32), String> {
        self.inner
            .next_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                next.checked_add(n).filter(|end| *end <= ID_LIMIT)
            })
            .map(|start| (start, start + n))
            .map_err(|_| format!("the master has handed out all {ID_LIMIT} context ids"))
    }

    fn parent_context(&self) -> Context {
        Context::new(self, self.parent_ids().first().copied().unwrap_or(0), None)
    }

    /// A handle on context `id`, wherever it is in the tree (Mitogen's `context_by_id`).
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// let ctx = router.context_by_id(3);
    /// assert_eq!(ctx.context_id(), 3);
    /// # }).unwrap();
    /// ```
    pub fn context_by_id(&self, id: u32) -> Context {
        Context::new(self, id, None)
    }

    /// Forbid children to start traffic to anything but their own
    /// descendants; replies still flow (Mitogen's `unidirectional`).
    /// Children created afterwards inherit the setting.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// router.set_unidirectional(true); // before connecting: children inherit it
    /// assert!(router.is_unidirectional());
    /// # }).unwrap();
    /// ```
    pub fn set_unidirectional(&self, on: bool) {
        self.inner.unidirectional.store(on, Ordering::Relaxed);
    }

    /// `true` when unidirectional routing is on.
    ///
    /// # Examples
    /// ```
    /// # mitogen::Router::with(|router| {
    /// assert!(!router.is_unidirectional()); // off by default, as in Mitogen
    /// # }).unwrap();
    /// ```
    pub fn is_unidirectional(&self) -> bool {
        self.inner.unidirectional.load(Ordering::Relaxed)
    }

    /// Install the tree-maintenance handlers every router has. Each accepts
    /// messages from direct children only (`DEL_ROUTE` also from the parent).
    pub(crate) fn install_tree_handlers(&self) {
        self.add_service(
            Router::own(|r, msg| r.on_allocate_id(msg)),
            ALLOCATE_ID,
            Some(Arc::new(is_immediate_child)),
        );
        self.add_service(
            Router::own(|r, msg| r.on_add_route(&msg)),
            ADD_ROUTE,
            Some(Arc::new(is_immediate_child)),
        );
        self.add_service(
            Router::own(|r, msg| r.on_del_route(&msg)),
            DEL_ROUTE,
            Some(Arc::new(|msg: &Message, r: &Router| {
                is_immediate_child(msg, r) || r.parent_ids().first() == Some(&msg.from_stream)
            })),
        );
    }

    /// A child asks for a block of ids for its subtree: the master grants
    /// one; anyone else asks its own parent, then passes the block down.
    /// The request is counted against the child's cap when it arrives, and
    /// each hop records which child stream the block went to.
    fn on_allocate_id(&self, msg: Message) {
        let child = msg.from_stream;
        let cap = if self.context_id() == 0 {
            MAX_BLOCKS_PER_STREAM
        } else {
            MAX_BLOCKS_PER_CHILD
        };
        if !lock(&self.inner.grants).reserve(child, cap) {
            let why = format!(
                "the subtree of {} already holds {cap} id blocks",
                self.name_of(child)
            );
            return self.refuse_ids(&msg, child, &why);
        }
        if self.context_id() == 0 {
            return self.settle_ids(&msg, child, self.take_ids(ID_BLOCK));
        }
        let parent = self.parent_context();
        let r = self.clone();
        let m = msg.clone();
        let handle = self.add_reply_handler(
            move |reply: Message| {
                let block = reply.unpickle::<(u32, u32)>().map_err(|e| e.to_string());
                r.settle_ids(&m, child, block.and_then(|(s, e)| valid_block(s, e)));
            },
            parent.context_id(),
        );
        let mut up = Message::new(ALLOCATE_ID, Vec::new());
        up.reply_to = handle;
        if let Err(e) = parent.send(up) {
            self.del_handler(handle);
            self.settle_ids(
                &msg,
                child,
                Err(format!("could not ask the parent for ids: {e}")),
            );
        }
    }

    /// Answer an id request counted by `reserve`: record the block and pass
    /// it down, or uncount the request and refuse it.
    fn settle_ids(
        &self,
        msg: &Message,
        child: u32,
        block: std::result::Result<(u32, u32), String>,
    ) {
        match block {
            Ok((start, end)) => {
                lock(&self.inner.grants).record(start, end, child);
                let _ = msg.reply(&(start, end));
            }
            Err(why) => {
                lock(&self.inner.grants).release(child);
                self.refuse_ids(msg, child, &why);
            }
        }
    }

    /// Refuse an id request with a dead reply and a logged reason.
    fn refuse_ids(&self, msg: &Message, child: u32, why: &str) {
        tracing::error!(
            "refused ALLOCATE_ID from {}: {why}",
            self.stream_label(child)
        );
        self.refuse(msg, why);
    }

    /// A child announces a context reachable through it. Honoured only for
    /// an id granted to that child's subtree, never for 0, ourselves, a
    /// parent or an id routed elsewhere, and only with a sane name.
    fn on_add_route(&self, msg: &Message) {
        let child = msg.from_stream;
        let Some(stream) = self.stream_to(child) else {
            return;
        };
        let claim = msg.unpickle::<(u32, String)>().map_err(|e| e.to_string());
        match claim.and_then(|(id, name)| {
            self.check_claim(id, &name, child, &stream)
                .map(|()| (id, name))
        }) {
            Ok((id, name)) => {
                self.set_name_of(id, &name);
                self.insert_route(id, stream);
                self.propagate(ADD_ROUTE, &(id, name));
            }
            Err(why) => {
                tracing::error!("refused ADD_ROUTE from {}: {why}", self.stream_label(child))
            }
        }
    }

    /// Why `child` (whose stream is `stream`) may not route `id`, if it may not.
    fn check_claim(
        &self,
        id: u32,
        name: &str,
        child: u32,
        stream: &Arc<Stream>,
    ) -> std::result::Result<(), String> {
        check_name(name).map_err(|why| format!("context {id}: {why}"))?;
        let claimed = format!("id {id} ({name:?})");
        if id == 0 {
            return Err(format!("{claimed} is the master's id"));
        }
        if id == self.context_id() {
            return Err(format!("{claimed} is this context's own id"));
        }
        if self.is_parent(id) {
            return Err(format!("{claimed} belongs to a parent of this context"));
        }
        match lock(&self.inner.grants).owner(id) {
            Some(owner) if owner == child => {}
            Some(owner) => {
                return Err(format!(
                    "{claimed} was granted to the subtree of {}, not to this stream",
                    self.name_of(owner)
                ))
            }
            None => return Err(format!("{claimed} was never granted to this stream")),
        }
        if let Some(s) = self.routes_get(id).filter(|s| !Arc::ptr_eq(s, stream)) {
            return Err(format!("{claimed} is already routed through {}", s.name));
        }
        let known = self.known_name(id);
        if !known.is_empty() && known != name {
            return Err(format!("{claimed} is already known as {known:?}"));
        }
        Ok(())
    }

    /// A context is gone. From a child: drop its route if it really ran
    /// through that child, wake its waiters and tell our parent; if it is
    /// the child itself saying goodbye (shutting down, or refusing what we
    /// sent it), close its stream now with that reason. From our parent: a
    /// context we talked to is gone.
    fn on_del_route(&self, msg: &Message) {
        let Ok((id, name, reason, kind)) = msg.unpickle::<(u32, String, String, LossKind)>() else {
            tracing::error!(
                "refused a malformed DEL_ROUTE from {}",
                self.stream_label(msg.from_stream)
            );
            return;
        };
        // The reason ends up in error texts and logs: bounded, printable.
        let reason = crate::log::clean(&reason, MAX_REASON_LEN).into_owned();
        let kind = match kind {
            LossKind::Behind(hop) => {
                LossKind::Behind(crate::log::clean(&hop, MAX_NAME_LEN).into_owned())
            }
            other => other,
        };
        let from_parent = self.parent_ids().first() == Some(&msg.from_stream);
        if from_parent {
            if !name.is_empty() && check_name(&name).is_ok() {
                self.set_name_of(id, &name);
            }
            self.lost(&[id], &kind, &reason, None);
            return;
        }
        if id == msg.from_stream {
            if let Some(stream) = self.routes_get(id).filter(|s| s.remote_id() == id) {
                let token = stream.token;
                let cause = Loss::new(kind, self.name_of(id), reason);
                self.inner
                    .broker
                    .defer_core(move |core| core.disconnect_with(token, cause));
            }
            return;
        }
        let from = self.stream_to(msg.from_stream);
        // `Ok(true)`: removed; `Ok(false)`: already gone (the stream closed
        // first); `Err(stream)`: routed through another stream.
        let removed = {
            let mut routes = self.inner.routes.write().unwrap_or_else(|p| p.into_inner());
            match (routes.get(&id), &from) {
                (Some(s), Some(f)) if Arc::ptr_eq(s, f) => Ok(routes.remove(&id).is_some()),
                (Some(s), _) => Err(s.name.clone()),
                (None, _) => Ok(false),
            }
        };
        match removed {
            Ok(true) => {
                self.lost(&[id], &kind, &reason, None);
                self.propagate(DEL_ROUTE, &(id, self.known_name(id), reason, kind));
            }
            Ok(false) => {}
            Err(elsewhere) => tracing::error!(
                "refused DEL_ROUTE for context {id} from {}: it is routed through {elsewhere}",
                self.stream_label(msg.from_stream)
            ),
        }
    }

    /// Tell the parent this context is going, as the last message on the
    /// parent stream: a `DEL_ROUTE` for our own id, of `kind`. The parent
    /// closes the stream at once instead of waiting for an end of file
    /// that a program in between (ssh, su) may hold back.
    pub(crate) fn farewell(&self, kind: LossKind, reason: &str) {
        let me = self.context_id();
        self.propagate(DEL_ROUTE, &(me, self.name_of(me), reason.to_string(), kind));
    }

    /// [`Router::farewell`] written straight onto the parent `stream` we
    /// are about to close (for bad input): waits at most
    /// [`FAREWELL_WAIT`] for it to be written, since the stream's
    /// descriptors close right after.
    pub(crate) fn farewell_on(&self, stream: &Arc<Stream>, kind: &LossKind, reason: &str) {
        let me = self.context_id();
        let body = (me, self.name_of(me), reason.to_string(), kind.clone());
        let Ok(mut msg) = Message::pickled(&body, DEL_ROUTE) else {
            return;
        };
        msg.dst_id = stream.remote_id();
        msg.src_id = me;
        msg.auth_id = me;
        if stream
            .send(
                msg.header().to_bytes(),
                msg.data,
                crate::broker::Wait::Force,
            )
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + FAREWELL_WAIT;
        while let Ok(false) = stream.flush(&mut Vec::new()) {
            if Instant::now() >= deadline {
                tracing::debug!("could not tell the parent why its stream was closed");
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `stream <name> (context <id>)` for the child stream of context `id`, for logs.
    fn stream_label(&self, id: u32) -> String {
        match self.stream_to(id) {
            Some(s) => format!("stream {} (context {id})", s.name),
            None => format!("context {id}"),
        }
    }

    /// Tell the parent (if any) about a route change.
    pub(crate) fn propagate<T: serde::Serialize>(&self, handle: u32, body: &T) {
        if let Some(parent) = self.parent_ids().first() {
            if let Ok(mut msg) = Message::pickled(body, handle) {
                msg.dst_id = *parent;
                let _ = self.route(msg);
            }
        }
    }

    /// Unidirectional check for a message from a child stream going to
    /// another context: allowed only towards contexts that have sent into
    /// that stream (replies), plus log forwarding to the master.
    pub(super) fn unidirectional_allows(&self, msg: &Message, from: &Arc<Stream>) -> bool {
        if msg.dst_id == 0 && msg.handle == FORWARD_LOG {
            return true;
        }
        lock(&from.egress).contains(&msg.dst_id)
    }
}

impl Stream {
    /// Remember that `src` sent a message down this stream (unidirectional mode).
    pub(crate) fn note_sender(&self, src: u32) {
        lock(&self.egress).insert(src);
    }
}

/// `[start, end)` if it is a block a parent may grant.
fn valid_block(start: u32, end: u32) -> std::result::Result<(u32, u32), String> {
    if start < end && end - start <= ID_BLOCK {
        Ok((start, end))
    } else {
        Err(format!(
            "the parent granted a malformed id block {start}..{end}"
        ))
    }
}

/// A context name a child may announce: bounded, printable.
/// A name a user gives a context ([`CommonOptions::remote_name`],
/// [`Context::new`]): [`check_name`], and also not empty and without `/`
/// (it becomes a process title and a log tag).
///
/// [`CommonOptions::remote_name`]: crate::CommonOptions::remote_name
/// [`Context::new`]: crate::Context::new
pub(crate) fn check_user_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty: a context needs one".into());
    }
    if name.contains('/') {
        return Err(format!("the name {name:?} must not contain '/'"));
    }
    check_name(name)
}

pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a name of {} bytes exceeds {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || crate::log::needs_escape(c))
    {
        return Err(format!(
            "the name {name:?} contains control characters or line or direction overrides"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// M1: near the end of the id space the master refuses instead of
    /// overflowing or wrapping onto ids it already handed out.
    #[test]
    fn m1_ids_never_overflow_or_repeat() {
        let router = Router::new().unwrap();
        router
            .inner
            .next_id
            .store(ID_LIMIT - ID_BLOCK - 1, Ordering::Relaxed);
        let (start, end) = router.take_ids(ID_BLOCK).unwrap();
        assert_eq!((start, end), (ID_LIMIT - ID_BLOCK - 1, ID_LIMIT - 1));
        assert!(router.take_ids(ID_BLOCK).is_err());
        assert_eq!(router.allocate_id().unwrap(), ID_LIMIT - 1);
        let e = router.allocate_id().unwrap_err();
        assert!(e.to_string().contains("handed out all"), "{e}");
        assert!(router.take_ids(1).is_err(), "refusals do not consume ids");
        router.shutdown();
    }
}
