//! The tree: context id allocation, route propagation (ADD_ROUTE /
//! DEL_ROUTE) and unidirectional routing.
//!
//! The master hands out ids; a child asks it for a block with
//! `ALLOCATE_ID` and allocates from that block for its own children. When a
//! context starts a child it tells its parent with `ADD_ROUTE`, and each hop
//! records "that id is behind this stream" and passes it up, so any context
//! can reach any other by id. When a stream is lost, each hop wakes the
//! waiters on every context behind it and passes `DEL_ROUTE` up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mitogen_wire::handle::{ADD_ROUTE, ALLOCATE_ID, DEL_ROUTE, FORWARD_LOG};

use super::{is_immediate_child, Router};
use crate::broker::{lock, Stream};
use crate::context::Context;
use crate::error::Result;
use crate::message::Message;

/// Ids granted per `ALLOCATE_ID` request.
const ID_BLOCK: u32 = 1000;

impl Router {
    /// Allocate a context id for a new child (Mitogen's `allocate_id`). The
    /// master counts; a child takes ids from a block the master granted,
    /// asking for a new block when it runs out.
    ///
    /// # Errors
    /// A child whose master cannot be reached.
    pub fn allocate_id(&self) -> Result<u32> {
        if self.context_id() == 0 {
            return Ok(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        }
        let mut block = lock(&self.inner.id_block);
        if block.0 >= block.1 {
            let master = Context::new(self, 0, None);
            let reply = master.send_await(Message::new(ALLOCATE_ID, Vec::new()), None)?;
            let (start, end): (u32, u32) = reply.unpickle()?;
            *block = (start, end);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// A handle on context `id`, wherever it is in the tree (Mitogen's `context_by_id`).
    pub fn context_by_id(&self, id: u32) -> Context {
        Context::new(self, id, None)
    }

    /// Forbid children to start traffic to anything but their own
    /// descendants; replies still flow (Mitogen's `unidirectional`).
    /// Children created afterwards inherit the setting.
    pub fn set_unidirectional(&self, on: bool) {
        self.inner.unidirectional.store(on, Ordering::Relaxed);
    }

    /// `true` when unidirectional routing is on.
    pub fn is_unidirectional(&self) -> bool {
        self.inner.unidirectional.load(Ordering::Relaxed)
    }

    /// Install the tree-maintenance handlers every router has.
    pub(crate) fn install_tree_handlers(&self) {
        if self.context_id() == 0 {
            let r = self.clone();
            self.add_handler(
                move |msg: Message| {
                    let start = r.inner.next_id.fetch_add(ID_BLOCK, Ordering::Relaxed);
                    let _ = msg.reply(&(start, start + ID_BLOCK));
                },
                Some(ALLOCATE_ID),
                true,
                None,
                None,
            );
        }
        let r = self.clone();
        self.add_handler(
            move |msg: Message| {
                if let (Ok((id, name)), Some(stream)) = (
                    msg.unpickle::<(u32, String)>(),
                    r.stream_to(msg.from_stream),
                ) {
                    r.set_name_of(id, &name);
                    r.add_route(id, stream);
                    r.propagate(ADD_ROUTE, &(id, name));
                }
            },
            Some(ADD_ROUTE),
            true,
            None,
            Some(Arc::new(is_immediate_child)),
        );
        let r = self.clone();
        self.add_handler(
            move |msg: Message| {
                if let Ok((id, name, reason)) = msg.unpickle::<(u32, String, String)>() {
                    if !name.is_empty() {
                        r.set_name_of(id, &name);
                    }
                    if r.parent_ids().first() == Some(&msg.from_stream) {
                        // From above: a context we talked to is gone.
                        r.lost(&[id], &reason);
                        return;
                    }
                    let from = r.stream_to(msg.from_stream);
                    let removed = {
                        let mut routes = r.inner.routes.write().unwrap_or_else(|p| p.into_inner());
                        match (routes.get(&id), &from) {
                            (Some(s), Some(f)) if Arc::ptr_eq(s, f) => routes.remove(&id).is_some(),
                            _ => false,
                        }
                    };
                    if removed {
                        r.lost(&[id], &reason);
                        r.propagate(DEL_ROUTE, &(id, name, reason));
                    }
                }
            },
            Some(DEL_ROUTE),
            true,
            None,
            Some(Arc::new(|msg: &Message, r: &Router| {
                is_immediate_child(msg, r) || r.parent_ids().first() == Some(&msg.from_stream)
            })),
        );
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
    /// that stream (replies), plus log forwarding and id requests to the master.
    pub(super) fn unidirectional_allows(&self, msg: &Message, from: &Arc<Stream>) -> bool {
        if msg.dst_id == 0 && matches!(msg.handle, FORWARD_LOG | ALLOCATE_ID) {
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
