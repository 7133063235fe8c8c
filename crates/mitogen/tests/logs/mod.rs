//! Log support for tests that check what was logged: a global `tracing`
//! subscriber that hands each event's text to a [`Latch`] (one per test
//! binary), and finding the debug logs a process has open.
#![allow(dead_code)]

use mitogen::Latch;
use tracing::Level;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

struct Capture {
    events: Latch<String>,
    /// Least severe level captured.
    level: Level,
}

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{value:?} ");
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() <= self.level {
            let meta = event.metadata();
            let mut t = Text(format!("{} {} ", meta.target(), meta.level()));
            event.record(&mut t);
            let _ = self.events.put(t.0);
        }
    }
}

/// Install the capture for events at `level` or more severe (all of this
/// process, including what children forward); returns their texts.
///
/// # Panics
/// Another global subscriber is already installed.
pub fn capture(level: Level) -> Latch<String> {
    let events = Latch::new();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture {
        events: events.clone(),
        level,
    }))
    .expect("one global subscriber per test binary");
    events
}

/// Paths of the debug logs (`mitogen.<pid>[.<n>].log`) this process has open.
pub fn open_debug_logs() -> Vec<std::path::PathBuf> {
    let prefix = format!("mitogen.{}.", std::process::id());
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
        })
        .collect()
}
