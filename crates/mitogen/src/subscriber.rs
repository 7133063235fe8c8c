//! This process's own `tracing` subscriber: one layer that writes events in
//! Mitogen's spirit (`time level context target: message`) to stderr or a
//! file, to a per-process debug log ([`Router::enable_debug`]), and, in a
//! child, forwards them to the master (`log.rs`).
//!
//! It is installed once per process, as the global default, and only when
//! no other subscriber is set: by [`Router::with`] and [`crate::main`] in
//! the master (unless [`set_default_logging`]`(false)`), by
//! [`log_to_file`], by [`Router::enable_debug`], and always in a child.
//! Its sinks can be changed afterwards ([`log_to_file`] after `main`
//! installed the default), so callers never fight over the one global slot.
//!
//! [`Router::enable_debug`]: crate::Router::enable_debug
//! [`Router::with`]: crate::Router::with

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, RwLock};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

use crate::log::{self, Record};
use crate::router::Router;

/// The variable read first for the default filter, then `RUST_LOG`.
pub(crate) const LOG_ENV: &str = "MITOGEN_LOG";
/// The default filter when neither variable is set.
const DEFAULT_FILTER: &str = "info";

/// Where this process's events go. One per process, used by the one
/// [`MitogenLayer`] installed.
struct Sinks {
    /// Events shown to the user (stderr or a file), and which.
    output: RwLock<Option<Output>>,
    /// The debug log: every event at DEBUG or more severe.
    debug: Mutex<Option<File>>,
    debug_on: AtomicBool,
    /// In a child: the router forwarding events to the master.
    forward: RwLock<Option<Router>>,
    /// Most verbose level forwarded (1 = error … 5 = trace; 0 = none).
    forward_level: AtomicU8,
    /// This context's name, tagging its own events.
    name: RwLock<String>,
}

struct Output {
    to: Mutex<Destination>,
    filter: Targets,
}

enum Destination {
    Stderr,
    File(File),
}

static SINKS: Sinks = Sinks {
    output: RwLock::new(None),
    debug: Mutex::new(None),
    debug_on: AtomicBool::new(false),
    forward: RwLock::new(None),
    forward_level: AtomicU8::new(0),
    name: RwLock::new(String::new()),
};

/// Our layer is the global subscriber.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// `set_default_logging`'s switch.
static DEFAULT_ON: AtomicBool = AtomicBool::new(true);

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sinks {
    /// Does any sink want events of this callsite?
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        let level = *meta.level();
        (self.debug_on.load(Ordering::Relaxed) && level <= Level::DEBUG)
            || log::level_num(&level) <= self.forward_level.load(Ordering::Relaxed)
            || read(&self.output)
                .as_ref()
                .is_some_and(|o| o.filter.would_enable(meta.target(), &level))
    }
}

/// Make our layer the global subscriber if no subscriber is set; `true`
/// when ours is the global one (now or before).
fn install() -> bool {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = lock(&INSTALLING);
    if INSTALLED.load(Ordering::Acquire) {
        return true;
    }
    let subscriber = tracing_subscriber::registry().with(MitogenLayer);
    let ours = tracing::subscriber::set_global_default(subscriber).is_ok();
    INSTALLED.store(ours, Ordering::Release);
    ours
}

/// Sinks changed: callsites' cached interest must be asked again.
fn reconfigured() {
    tracing::callsite::rebuild_interest_cache();
}

/// In the master, from [`Router::with`](crate::Router::with): show events
/// and children's output on stderr, filtered by `MITOGEN_LOG`, else
/// `RUST_LOG`, else `info`; nothing when `MITOGEN_LOG=off`, when
/// [`set_default_logging`]`(false)` was called, or when the program set its
/// own subscriber.
pub(crate) fn install_default() {
    if !DEFAULT_ON.load(Ordering::Relaxed) || INSTALLED.load(Ordering::Acquire) {
        return;
    }
    if tracing::dispatcher::has_been_set() {
        return;
    }
    // `off`: the global slot stays free for the program.
    let Some(filter) = filter_from_env() else {
        return;
    };
    if !install() {
        return;
    }
    set_name_if_unset("master");
    let mut output = write(&SINKS.output);
    if output.is_none() {
        *output = Some(Output {
            to: Mutex::new(Destination::Stderr),
            filter,
        });
    }
    drop(output);
    reconfigured();
}

fn set_name_if_unset(name: &str) {
    let mut n = write(&SINKS.name);
    if n.is_empty() {
        *n = name.to_string();
    }
}

/// The filter the environment asks for; `None` for `off`.
fn filter_from_env() -> Option<Targets> {
    let (var, spec) = [LOG_ENV, "RUST_LOG"]
        .into_iter()
        .find_map(|v| {
            std::env::var(v)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| (v, s))
        })
        .unwrap_or(("default", DEFAULT_FILTER.into()));
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("off") {
        return None;
    }
    match Targets::from_str(spec) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!(
                "mitogen: ignoring {var}={spec:?} ({e}); showing {DEFAULT_FILTER} and above. \
                 Write it as 'info' or 'myapp=debug,mitogen=warn'"
            );
            Targets::from_str(DEFAULT_FILTER).ok()
        }
    }
}

/// Turn the default logging of [`crate::main`] and
/// [`Router::with`](crate::Router::with) off (or back on) for this
/// process; call it before them. With it off they install no `tracing`
/// subscriber, so events and children's output are shown only by a
/// subscriber of your own. `MITOGEN_LOG=off` hides them too.
///
/// # Examples
/// ```
/// mitogen::set_default_logging(false);
/// mitogen::Router::with(|_router| {
///     // Nothing is printed for this router's children.
/// })
/// .unwrap();
/// ```
pub fn set_default_logging(on: bool) {
    DEFAULT_ON.store(on, Ordering::Relaxed);
}

/// Send this process's `tracing` events, and the events and output lines
/// its children forward, to `path` (appended to, created with mode 0600
/// when new) or, with `None`, to stderr, in the default format:
/// `time level context target: message` (Mitogen's
/// `mitogen.utils.log_to_file`). Events less severe than `level` are
/// dropped; `MITOGEN_LOG`/`RUST_LOG` are not read. Replaces where the
/// default logging of [`crate::main`] writes.
///
/// # Errors
/// The file could not be opened, or another `tracing` subscriber is
/// already the global one (yours wins: `log_to_file` never replaces it).
///
/// # Examples
/// ```no_run
/// mitogen::main(|router| {
///     mitogen::log_to_file(Some("/var/log/deploy.log".as_ref()), tracing::Level::DEBUG)?;
///     tracing::info!("starting");
///     Ok(())
/// })
/// ```
pub fn log_to_file(path: Option<&Path>, level: Level) -> std::io::Result<()> {
    let to = match path {
        None => Destination::Stderr,
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("log_to_file: opening {}: {e}", path.display()),
                    )
                })?;
            Destination::File(file)
        }
    };
    if !install() {
        return Err(std::io::Error::other(
            "log_to_file: another tracing subscriber is already the global default; \
             it is left in place",
        ));
    }
    set_name_if_unset("master");
    *write(&SINKS.output) = Some(Output {
        to: Mutex::new(to),
        filter: Targets::new().with_default(level),
    });
    reconfigured();
    Ok(())
}

/// Write this process's DEBUG events (and more severe) to `file` from now
/// on, closing the debug log written so far. `false` when another
/// subscriber is the global one.
pub(crate) fn set_debug_log(file: impl FnOnce() -> Option<File>) -> bool {
    if !install() {
        return false;
    }
    set_name_if_unset("master");
    let Some(file) = file() else {
        return false;
    };
    *lock(&SINKS.debug) = Some(file);
    SINKS.debug_on.store(true, Ordering::Relaxed);
    reconfigured();
    true
}

/// In a child: forward events at `level` or more severe to the master
/// through `router`, and keep a debug log when `debug`.
pub(crate) fn install_child(router: &Router, name: &str, level: u8, debug: bool) {
    if !install() {
        return;
    }
    *write(&SINKS.name) = name.to_string();
    *write(&SINKS.forward) = Some(router.clone());
    SINKS.forward_level.store(level, Ordering::Relaxed);
    if debug {
        set_debug_log(log::debug_log_writer);
    }
    reconfigured();
}

/// In a child that forwards through `router`: forward at `level` from now on.
pub(crate) fn set_forward_level_of(router: &Router, level: u8) {
    let forwarding = read(&SINKS.forward)
        .as_ref()
        .is_some_and(|r| std::sync::Arc::ptr_eq(&r.inner, &router.inner));
    if forwarding {
        SINKS.forward_level.store(level, Ordering::Relaxed);
        reconfigured();
    }
}

/// The layer our global subscriber is made of; its state is [`SINKS`].
struct MitogenLayer;

impl<S: Subscriber> Layer<S> for MitogenLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if SINKS.wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: LayerContext<'_, S>) -> bool {
        SINKS.wants(meta)
    }

    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let meta = event.metadata();
        let level = *meta.level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        // A line is formatted once, for the sinks that want it.
        let text = || format_line(meta, &fields);
        let mut formatted: Option<String> = None;
        if let Some(output) = read(&SINKS.output).as_ref() {
            if output.filter.would_enable(meta.target(), &level) {
                let l = formatted.get_or_insert_with(text);
                match &mut *lock(&output.to) {
                    Destination::Stderr => {
                        let _ = std::io::stderr().lock().write_all(l.as_bytes());
                    }
                    Destination::File(f) => {
                        let _ = f.write_all(l.as_bytes());
                    }
                }
            }
        }
        if level <= Level::DEBUG && SINKS.debug_on.load(Ordering::Relaxed) {
            if let Some(f) = lock(&SINKS.debug).as_mut() {
                let _ = f.write_all(formatted.get_or_insert_with(text).as_bytes());
            }
        }
        if log::level_num(&level) <= SINKS.forward_level.load(Ordering::Relaxed) {
            if let Some(router) = read(&SINKS.forward).as_ref() {
                log::forward_event(router, || Record {
                    level: log::level_num(&level),
                    target: meta.target().to_string(),
                    message: fields.message_and_rest(),
                    context: read(&SINKS.name).clone(),
                });
            }
        }
    }
}

/// An event's message, the context it is tagged with (forwarded events
/// carry `context` and `context_id`), and its other fields as ` k=v`.
#[derive(Default)]
struct Fields {
    message: String,
    context: Option<String>,
    context_id: bool,
    rest: String,
}

impl Fields {
    fn message_and_rest(&self) -> String {
        format!("{}{}", self.message, self.rest)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "context" => self.context = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "context" => self.context = Some(format!("{value:?}")),
            "context_id" => {
                self.context_id = true;
                let _ = write!(self.rest, " context_id={value:?}");
            }
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

/// `HH:MM:SS.mmm L context target: message k=v…` and a newline; the time
/// is UTC, `L` the level's initial, `context` the name of the context the
/// event comes from (this process's own name for its own events).
fn format_line(meta: &Metadata<'_>, fields: &Fields) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    let context = match (&fields.context, fields.context_id) {
        (Some(c), true) => c.clone(),
        _ => read(&SINKS.name).clone(),
    };
    let rest = if fields.context_id {
        // The tag names the context; its id is kept for the reader.
        fields.rest.clone()
    } else {
        match &fields.context {
            Some(c) => format!(" context={c:?}{}", fields.rest),
            None => fields.rest.clone(),
        }
    };
    let level = match *meta.level() {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        Level::INFO => 'I',
        Level::DEBUG => 'D',
        Level::TRACE => 'T',
    };
    format!(
        "{:02}:{:02}:{:02}.{:03} {level} {context} {}: {}{rest}\n",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis(),
        meta.target(),
        fields.message,
    )
}
