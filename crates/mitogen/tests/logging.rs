//! A child's `tracing` events and raw stdout/stderr lines reach the master,
//! tagged with the context's name. In its own binary: it installs the global
//! subscriber.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use mitogen::{Latch, LocalOptions, Router};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

struct Capture(Latch<String>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields(format!("target={} ", event.metadata().target()));
        event.record(&mut f);
        let _ = self.0.put(f.0);
    }
}

#[test]
fn child_output_and_events_reach_the_master() {
    let seen = Latch::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Capture(seen.clone())),
    )
    .unwrap();
    Router::with(|router| {
        let child = router
            .local(LocalOptions::new().remote_name("chatty"))
            .unwrap();
        child
            .call(print_and_log::remote, ("hello".into(),))
            .unwrap();
        let mut want = vec![
            "stdout says hello",
            "stderr says hello",
            "tracing says hello",
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut log = Vec::new();
        while !want.is_empty() {
            let line = seen
                .get_deadline(deadline)
                .unwrap_or_else(|_| panic!("missing {want:?}; saw {log:#?}"));
            if line.contains("context=\"chatty\"") {
                want.retain(|w| !line.contains(w));
            }
            log.push(line);
        }
        let tracing_line = log.iter().find(|l| l.contains("tracing says")).unwrap();
        // The child's own target (the module of `print_and_log`) is kept.
        assert!(
            tracing_line.contains("target=logging::common "),
            "{tracing_line}"
        );
        let stdout_line = log.iter().find(|l| l.contains("stdout says")).unwrap();
        assert!(
            stdout_line.contains("target=mitogen::stdout"),
            "{stdout_line}"
        );
        let stderr_line = log.iter().find(|l| l.contains("stderr says")).unwrap();
        assert!(
            stderr_line.contains("target=mitogen::stderr"),
            "{stderr_line}"
        );
    })
    .unwrap();
}
