//! `setns_connect_first_call_ms` (Python Mitogen's twin, running the
//! image's `/usr/bin/python3`, is in `bench/py/workloads.py`).
//!
//! Needs root, docker and the `mitogen-test/debian` image
//! (scripts/images/build.sh); without them the row is "n/a" with the
//! reason on stderr. One container is started (untimed) and one untimed
//! connection puts our binary in its cache. Then `p.connect_n` samples,
//! each in a fresh session: start the clock, `router.setns(<container>,
//! docker, root)`, one blocking noop call, stop the clock. Report the
//! median, in ms: the warm cost of entering a container.

use std::time::Instant;

use mitogen::{ContainerKind, Router, SetnsOptions};
use mitogen_testkit::docker::{self, Container};

use crate::remote_fns::noop;
use crate::stats::median;
use crate::workloads::Profile;

/// `setns_connect_first_call_ms`.
pub fn setns_connect_first_call_ms(p: &Profile) -> Option<f64> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        eprintln!("[ours] setns_connect_first_call_ms: needs root");
        return None;
    }
    if let Err(why) = docker::available() {
        eprintln!("[ours] setns_connect_first_call_ms: {why}");
        return None;
    }
    let ctr = match Container::start(&docker::image("debian")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[ours] setns_connect_first_call_ms: {e}");
            return None;
        }
    };
    let once = || {
        Router::with(|router| {
            let t0 = Instant::now();
            let c = router.setns(SetnsOptions::new(ctr.name(), ContainerKind::Docker))?;
            c.call(noop::remote, ())?;
            Ok::<f64, mitogen::Error>(t0.elapsed().as_secs_f64() * 1e3)
        })
        .and_then(|r| r)
    };
    // Cold: uploads the binary into the container's cache; not reported.
    if let Err(e) = once() {
        eprintln!("[ours] setns_connect_first_call_ms: {e}");
        return None;
    }
    let mut samples = Vec::with_capacity(p.connect_n);
    for _ in 0..p.connect_n {
        match once() {
            Ok(ms) => samples.push(ms),
            Err(e) => {
                eprintln!("[ours] setns_connect_first_call_ms: {e}");
                return None;
            }
        }
    }
    median(&samples)
}
