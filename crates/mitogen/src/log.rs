//! Logging across the tree: a child's `tracing` events and its raw
//! stdout/stderr lines travel to the master as `FORWARD_LOG` messages and are
//! re-emitted there as `tracing` events with the context's name.
//!
//! A record is child-controlled: the master names its sender from the
//! message's checked `src_id` (never the record's own `context` field),
//! escapes control characters so an embedded newline can't forge another
//! log line, and cuts long fields with a marker.
//!
//! Debug logs ([`Router::enable_debug`]) go to a private file per process
//! ([`debug_log_writer`]).

use std::borrow::Cow;
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

/// Longest message re-emitted, in bytes; the rest is cut with a marker.
const MAX_MESSAGE: usize = 64 * 1024;
/// Longest target (or context name) re-emitted, in bytes.
const MAX_TARGET: usize = 256;

/// Characters that could break or disguise a log line: control characters
/// other than tab (newlines, ANSI escapes, C1), Unicode line and paragraph
/// separators, and bidirectional overrides.
pub(crate) fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` made safe to re-emit: characters [`needs_escape`] picks are escaped
/// (`\n`, `\r`, `\u{1b}`), and at most about `max` bytes are kept, followed
/// by a marker saying how many were cut.
pub(crate) fn clean(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max) + 32);
    for (i, c) in s.char_indices() {
        let start = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
        if out.len() > max {
            out.truncate(start);
            let _ = write!(out, "… [{} bytes cut]", s.len() - i);
            break;
        }
    }
    Cow::Owned(out)
}

/// Re-emit a record received from a child, its fields cleaned and bounded.
pub(crate) fn emit(record: &Record, id: Option<u32>) {
    let ctx = clean(&record.context, MAX_TARGET);
    let m = clean(&record.message, MAX_MESSAGE);
    let t = clean(&record.target, MAX_TARGET);
    let (ctx, m, t) = (ctx.as_ref(), m.as_ref(), t.as_ref());
    // `tracing`'s macros need the level as a constant: one arm per level.
    macro_rules! child {
        ($level:ident) => {
            tracing::event!(target: "mitogen::child", tracing::Level::$level, context = ctx, context_id = id, origin = t, "{m}")
        };
    }
    match record.level {
        0 => {
            tracing::info!(target: "mitogen::output", context = ctx, context_id = id, stream = t, "{m}")
        }
        1 => child!(ERROR),
        2 => child!(WARN),
        3 => child!(INFO),
        4 => child!(DEBUG),
        _ => child!(TRACE),
    }
}

/// In the master: re-emit every forwarded record under the name of the
/// context that sent it, whatever name the record claims.
pub(crate) fn install_receiver(router: &Router) {
    router.add_handler(
        |msg: Message| {
            let Some(router) = msg.router.as_ref() else {
                return;
            };
            let sender = router.name_of(msg.src_id);
            match msg.unpickle::<Record>() {
                Ok(mut record) => {
                    record.context = sender;
                    emit(&record, Some(msg.src_id));
                }
                Err(e) => tracing::warn!(
                    "refused a log record from {} (id {}): {e}",
                    clean(&sender, MAX_TARGET),
                    msg.src_id
                ),
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

/// Open this process's debug log: `mitogen.<pid>.log` (`mitogen.<pid>.<n>.log`
/// if that exists) in a private directory, created `O_EXCL|O_NOFOLLOW` with
/// mode 0600, so a planted file or symlink is never written through. The
/// directory is `$XDG_RUNTIME_DIR/mitogen`, else `$TMPDIR/mitogen-<uid>`
/// (`/tmp` without `TMPDIR`), used only when it is a real directory owned by
/// us with no group or other access; otherwise a fresh
/// `$TMPDIR/mitogen-<uid>.<random>`. `None` when nothing can be created.
pub(crate) fn debug_log_writer() -> Option<std::sync::Mutex<std::fs::File>> {
    private_file("mitogen", "log").map(|(_, file)| std::sync::Mutex::new(file))
}

/// A new file `<prefix>.<pid>.<ext>` (`<prefix>.<pid>.<n>.<ext>` if that
/// exists) in the private directory of [`debug_log_writer`], created the
/// same way; opened for appending. Profiling dumps go there too.
pub(crate) fn private_file(prefix: &str, ext: &str) -> Option<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = debug_log_dir()?;
    let pid = std::process::id();
    (0..100).find_map(|n| {
        let path = dir.join(match n {
            0 => format!("{prefix}.{pid}.{ext}"),
            n => format!("{prefix}.{pid}.{n}.{ext}"),
        });
        std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
            .ok()
            .map(|file| (path, file))
    })
}

/// A directory for debug logs that only we can use (see [`debug_log_writer`]).
fn debug_log_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let uid = crate::sys::effective_uid();
    let mkdir = |path: &std::path::Path| std::fs::DirBuilder::new().mode(0o700).create(path);
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_absolute() && is_private_dir(d, uid, 0o022))
        .map(|d| d.join("mitogen"));
    let tmp = std::env::temp_dir();
    for dir in xdg.into_iter().chain([tmp.join(format!("mitogen-{uid}"))]) {
        let _ = mkdir(&dir);
        if is_private_dir(&dir, uid, 0o077) {
            return Some(dir);
        }
    }
    // The usual place is taken by someone else: a fresh directory of our own.
    use std::hash::{BuildHasher, Hasher};
    (0..100).find_map(|_| {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let dir = tmp.join(format!("mitogen-{uid}.{random:016x}"));
        mkdir(&dir).ok()?;
        is_private_dir(&dir, uid, 0o077).then_some(dir)
    })
}

/// `true` when `dir` is a directory (not a symlink) owned by `uid` with none
/// of the `forbidden` mode bits.
fn is_private_dir(dir: &std::path::Path, uid: u32, forbidden: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & forbidden == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_line_breaks_and_controls_but_keeps_tabs() {
        assert!(matches!(clean("plain\ttext", 64), Cow::Borrowed(_)));
        assert_eq!(
            clean("a\nERROR forged\r\x1b[31m\u{2028}", 64),
            "a\\nERROR forged\\r\\u{1b}[31m\\u{2028}"
        );
    }

    #[test]
    fn clean_cuts_long_fields_with_a_marker() {
        let long = "é".repeat(100); // 200 bytes
        let out = clean(&long, 11);
        assert_eq!(out, format!("{}… [190 bytes cut]", "é".repeat(5)));
        // Escapes count towards the bound.
        let lines = "\n".repeat(10);
        assert_eq!(clean(&lines, 5), "\\n\\n… [8 bytes cut]");
    }
}
