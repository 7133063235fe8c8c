//! Logging across the tree: a child's `tracing` events and its raw
//! stdout/stderr lines travel to the master as `FORWARD_LOG` messages and are
//! re-emitted there as `tracing` events tagged with the context's name.
//!
//! A forwarded event keeps its target and level (a child's
//! `info!(target: "myapp::job", …)` is re-emitted as target `myapp::job`,
//! level INFO), so `MITOGEN_LOG=myapp=info` filters it as the child's own
//! code would. Every re-emitted event carries the fields `context` (the
//! sender's name) and `context_id`: the master's own events never have a
//! `context_id`, so a child cannot pass its events off as the master's.
//! Raw output lines are INFO events of target `mitogen::stdout` or
//! `mitogen::stderr`.
//!
//! A record is child-controlled: the master names its sender from the
//! message's checked `src_id` (never the record's own `context` field),
//! escapes control characters so an embedded newline can't forge another
//! log line, and cuts long fields with a marker. A target that is not a
//! plain path (letters, digits, `_`, `-`, `.`, `:`; at most 256 bytes), or
//! one beyond the first [`MAX_TARGETS`] distinct ones, is re-emitted as
//! `mitogen::child` with the claimed target in the field `origin`.
//!
//! Debug logs ([`Router::enable_debug`]) go to a private file per process
//! ([`debug_log_writer`]).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{FieldSet, Value};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata};

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

/// A level as forwarded: 1 = error … 5 = trace.
pub(crate) fn level_num(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// The level of a forwarded number (0 or past 5: TRACE, the least severe).
pub(crate) fn level_of(n: u8) -> Level {
    match n {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Serde for an optional `tracing::Level` (which has none): its number.
pub(crate) mod level_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(l: &Option<tracing::Level>, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Some(l) => s.serialize_some(&super::level_num(l)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<tracing::Level>, D::Error> {
        Ok(Option::<u8>::deserialize(d)?.map(super::level_of))
    }
}

impl Router {
    /// Forward the `tracing` events of contexts started from now on to the
    /// master when they are `level` or more severe (default INFO; a
    /// connection's own [`CommonOptions::forward_level`] wins). In a child,
    /// also the level this context forwards its own events at. What the
    /// master shows of them is then up to its subscriber (`MITOGEN_LOG`).
    ///
    /// [`CommonOptions::forward_level`]: crate::CommonOptions::forward_level
    ///
    /// # Examples
    /// ```no_run
    /// mitogen::main(|router| {
    ///     router.set_forward_level(tracing::Level::DEBUG);
    ///     // This child's debug! events reach the master (shown with
    ///     // MITOGEN_LOG=debug).
    ///     let child = router.local(mitogen::LocalOptions::new())?;
    ///     Ok(())
    /// })
    /// ```
    pub fn set_forward_level(&self, level: Level) {
        self.inner
            .forward_level
            .store(level_num(&level), Ordering::Relaxed);
        crate::subscriber::set_forward_level_of(self, level_num(&level));
    }

    /// The level set by [`Router::set_forward_level`] (INFO by default).
    ///
    /// # Examples
    /// ```
    /// mitogen::Router::with(|router| {
    ///     assert_eq!(router.forward_level(), tracing::Level::INFO);
    /// })
    /// .unwrap();
    /// ```
    pub fn forward_level(&self) -> Level {
        level_of(self.inner.forward_level.load(Ordering::Relaxed))
    }
}

/// Send a record towards the master (context 0).
pub(crate) fn forward(router: &Router, record: &Record) {
    if let Ok(mut msg) = Message::pickled(record, FORWARD_LOG) {
        msg.dst_id = 0;
        let _ = router.route(msg);
    }
}

thread_local!(static FORWARDING: Cell<bool> = const { Cell::new(false) });

/// Forward one of this process's events; routing it may log, and those
/// events are not forwarded again.
pub(crate) fn forward_event(router: &Router, record: impl FnOnce() -> Record) {
    if FORWARDING.with(|f| f.replace(true)) {
        return;
    }
    forward(router, &record());
    FORWARDING.with(|f| f.set(false));
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

/// Most distinct targets re-emitted as themselves; later ones become
/// `mitogen::child` (each needs a callsite that lives as long as the process).
pub(crate) const MAX_TARGETS: usize = 1024;
/// The target of a forwarded event whose own target is refused.
const FALLBACK_TARGET: &str = "mitogen::child";
/// Fields of a re-emitted event.
const FIELDS: &[&str] = &["message", "context", "context_id", "origin"];

/// The callsite of forwarded events of one target and level.
struct Forwarded(OnceLock<Metadata<'static>>);

impl Callsite for Forwarded {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.0
            .get()
            .expect("a forwarded callsite is built before use")
    }
}

/// A plain `tracing` target: a module-path-like name.
fn plain_target(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TARGET
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The callsite for `target` at `level`, made (and leaked) the first time;
/// `None` when `target` is refused (see the module docs). A known target is
/// looked up without allocating: this runs for every forwarded record.
fn callsite(target: &str, level: Level) -> Option<&'static Metadata<'static>> {
    /// Per target, its callsite at each level (index: level number - 1).
    type Levels = [Option<&'static Forwarded>; 5];
    static CALLSITES: Mutex<Option<HashMap<Box<str>, Levels>>> = Mutex::new(None);
    let mut map = CALLSITES.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    let slot = usize::from(level_num(&level)).clamp(1, 5) - 1;
    if let Some(cs) = map.get(target).and_then(|levels| levels[slot]) {
        return cs.0.get();
    }
    let known = map.contains_key(target);
    let refused = !plain_target(target) || (!known && map.len() >= MAX_TARGETS);
    if refused && target != FALLBACK_TARGET {
        return None;
    }
    let cs: &'static Forwarded = Box::leak(Box::new(Forwarded(OnceLock::new())));
    let leaked: &'static str = Box::leak(target.into());
    let _ = cs.0.set(Metadata::new(
        "forwarded event",
        leaked,
        level,
        None,
        None,
        None,
        FieldSet::new(FIELDS, Identifier(cs)),
        tracing_core::metadata::Kind::EVENT,
    ));
    tracing::callsite::register(cs);
    map.entry(target.into()).or_default()[slot] = Some(cs);
    cs.0.get()
}

/// Re-emit a record received from a child, its fields cleaned and bounded:
/// with its own target and level (see the module docs), or as a raw output
/// line.
pub(crate) fn emit(record: &Record, id: Option<u32>) {
    let ctx = clean(&record.context, MAX_TARGET);
    let m = clean(&record.message, MAX_MESSAGE);
    let t = clean(&record.target, MAX_TARGET);
    let (ctx, m, t) = (ctx.as_ref(), m.as_ref(), t.as_ref());
    if record.level == 0 {
        // `tracing`'s macros need the target as a constant: one arm each.
        match t {
            "stdout" => {
                tracing::info!(target: "mitogen::stdout", context = ctx, context_id = id, "{m}")
            }
            "stderr" => {
                tracing::info!(target: "mitogen::stderr", context = ctx, context_id = id, "{m}")
            }
            _ => tracing::info!(
                target: "mitogen::output", context = ctx, context_id = id, stream = t, "{m}"
            ),
        }
        return;
    }
    let level = level_of(record.level);
    let (meta, origin) = match callsite(&record.target, level) {
        Some(meta) => (meta, None),
        None => match callsite(FALLBACK_TARGET, level) {
            Some(meta) => (meta, Some(t)),
            None => return,
        },
    };
    tracing::dispatcher::get_default(|dispatch| {
        if !dispatch.enabled(meta) {
            return;
        }
        let fields = meta.fields();
        let field = |name| fields.field(name).expect("a forwarded callsite's field");
        let (message, context, context_id, origin_f) = (
            field("message"),
            field("context"),
            field("context_id"),
            field("origin"),
        );
        let message_v = format_args!("{m}");
        let values: [(&tracing::field::Field, Option<&dyn Value>); 4] = [
            (&message, Some(&message_v as &dyn Value)),
            (&context, Some(&ctx as &dyn Value)),
            (&context_id, id.as_ref().map(|i| i as &dyn Value)),
            (&origin_f, origin.as_ref().map(|o| o as &dyn Value)),
        ];
        dispatch.event(&Event::new(meta, &fields.value_set(&values)));
    });
}

/// In the master: re-emit every forwarded record under the name of the
/// context that sent it, whatever name the record claims.
pub(crate) fn install_receiver(router: &Router) {
    router.add_service(
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
        FORWARD_LOG,
        None,
    );
}

/// Open this process's debug log: `mitogen.<pid>.log` (`mitogen.<pid>.<n>.log`
/// if that exists) in a private directory, created `O_EXCL|O_NOFOLLOW` with
/// mode 0600, so a planted file or symlink is never written through. The
/// directory is `$XDG_RUNTIME_DIR/mitogen`, else `$TMPDIR/mitogen-<uid>`
/// (`/tmp` without `TMPDIR`), used only when it is a real directory owned by
/// us with no group or other access; otherwise a fresh
/// `$TMPDIR/mitogen-<uid>.<random>`. `None` when nothing can be created.
pub(crate) fn debug_log_writer() -> Option<std::fs::File> {
    private_file("mitogen", "log").map(|(_, file)| file)
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
    fn only_plain_targets_are_kept() {
        for ok in ["myapp", "myapp::job", "my-app.v2::x_y"] {
            assert!(plain_target(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TARGET + 1);
        for bad in ["", "app: ERROR master", "a\nb", "é", "a b", long.as_str()] {
            assert!(!plain_target(bad), "{bad:?}");
        }
        // A refused target has no callsite; the fallback always has one.
        assert!(callsite("app: x", Level::INFO).is_none());
        let meta = callsite(FALLBACK_TARGET, Level::WARN).unwrap();
        assert_eq!(
            (meta.target(), *meta.level()),
            (FALLBACK_TARGET, Level::WARN)
        );
        let kept = callsite("myapp::job", Level::DEBUG).unwrap();
        assert!(std::ptr::eq(
            kept,
            callsite("myapp::job", Level::DEBUG).unwrap()
        ));
        // A flood of targets stops at the cap; known ones stay.
        let made = (0..MAX_TARGETS + 10)
            .filter(|i| callsite(&format!("flood::t{i}"), Level::INFO).is_some())
            .count();
        assert!(made < MAX_TARGETS, "{made} callsites made");
        assert!(callsite("flood::late", Level::INFO).is_none());
        assert!(callsite("myapp::job", Level::DEBUG).is_some());
        assert!(callsite(FALLBACK_TARGET, Level::ERROR).is_some());
    }

    #[test]
    fn levels_round_trip_through_their_numbers() {
        for l in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level_of(level_num(&l)), l);
        }
        assert_eq!(level_of(0), Level::TRACE);
        assert_eq!(level_of(9), Level::TRACE);
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
