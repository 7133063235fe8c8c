//! Logging across the tree: a child's `tracing` events and its raw
//! stdout/stderr lines travel to the master as `FORWARD_LOG` messages and are
//! re-emitted there as `tracing` events with the context's name.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

use mitogen_wire::handle::FORWARD_LOG;

use crate::message::Message;
use crate::router::Router;

/// One forwarded record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// 1 = error … 5 = trace; 0 = a raw output line.
    pub level: u8,
    /// `tracing` target, or `stdout` / `stderr` for raw lines.
    pub target: String,
    pub message: String,
    /// Name of the context the record comes from.
    pub context: String,
}

fn level_num(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Send a record towards the master (context 0).
pub(crate) fn forward(router: &Router, record: &Record) {
    if let Ok(mut msg) = Message::pickled(record, FORWARD_LOG) {
        msg.dst_id = 0;
        let _ = router.route(msg);
    }
}

/// Re-emit a record received from a child.
pub(crate) fn emit(record: &Record) {
    let ctx = record.context.as_str();
    let m = record.message.as_str();
    let t = record.target.as_str();
    match record.level {
        0 => tracing::info!(target: "mitogen::output", context = ctx, stream = t, "{m}"),
        1 => tracing::error!(target: "mitogen::child", context = ctx, origin = t, "{m}"),
        2 => tracing::warn!(target: "mitogen::child", context = ctx, origin = t, "{m}"),
        3 => tracing::info!(target: "mitogen::child", context = ctx, origin = t, "{m}"),
        4 => tracing::debug!(target: "mitogen::child", context = ctx, origin = t, "{m}"),
        _ => tracing::trace!(target: "mitogen::child", context = ctx, origin = t, "{m}"),
    }
}

/// In the master: re-emit every forwarded record.
pub(crate) fn install_receiver(router: &Router) {
    router.add_handler(
        |msg: Message| {
            if let Ok(record) = msg.unpickle::<Record>() {
                emit(&record);
            }
        },
        Some(FORWARD_LOG),
        true,
        None,
        None,
    );
}

thread_local!(static FORWARDING: Cell<bool> = const { Cell::new(false) });

/// A `tracing` layer that forwards a child's events to the master.
pub(crate) struct ForwardLayer {
    pub router: Router,
    pub name: Arc<str>,
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        // Routing a record may log; never forward from inside a forward.
        if FORWARDING.with(|f| f.replace(true)) {
            return;
        }
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let meta = event.metadata();
        forward(
            &self.router,
            &Record {
                level: level_num(meta.level()),
                target: meta.target().to_string(),
                message: v.0,
                context: self.name.to_string(),
            },
        );
        FORWARDING.with(|f| f.set(false));
    }
}
