//! The docker rows: `docker_connect_first_call_ms` (ours) against
//! `raw_docker_exec_true_ms` (the same engine, no framework), each side on
//! a `mitogen-test/debian` container of its own (`scripts/images/build.sh`),
//! removed at the end. Without a reachable engine or the image both stay
//! null, with the reason on stderr.
//!
//! Python Mitogen's twin (`router.docker(container=...)`, running the
//! image's `/usr/bin/python3`) is in `bench/py/workloads.py`, on a third
//! container of the same image.

use std::io;
use std::process::{Command, Stdio};
use std::time::Instant;

use mitogen::DockerOptions;
use mitogen_testkit::docker::{self, Container};

use crate::ours::session;
use crate::remote_fns::noop;
use crate::stats::median;
use crate::workloads::Profile;

/// A running `mitogen-test/debian` container, or why there is none.
fn container() -> Result<Container, String> {
    docker::available()?;
    Container::start(&docker::image("debian")).map_err(|e| e.to_string())
}

/// `raw_docker_exec_true_ms`: one untimed `docker exec <ctr> true`, then
/// `n` timed; the median, in ms.
pub fn exec_true_ms(n: usize) -> io::Result<f64> {
    let ctr = container().map_err(io::Error::other)?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let t0 = Instant::now();
        let out = Command::new(docker::DOCKER)
            .args(["exec", ctr.name(), "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "docker exec true: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if i > 0 {
            samples.push(dt);
        }
    }
    median(&samples).ok_or_else(|| io::Error::other("no samples"))
}

/// `docker_connect_first_call_ms`.
///
/// One untimed session first (it leaves our binary in the container's
/// cache), then `p.ssh_connect_n` samples, each in a fresh session: start
/// the clock, connect with `docker exec` to the container, make one
/// blocking noop call, stop the clock. Report the median, in ms. Limit:
/// `raw_docker_exec_true_ms`.
pub fn connect_first_call_ms(p: &Profile) -> Option<f64> {
    let ctr = match container() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("[ours] docker_connect_first_call_ms: {why}");
            return None;
        }
    };
    let opts = || DockerOptions::container(ctr.name());
    session(|router| router.docker(opts())?.call(noop::remote, ()))?;
    let mut samples = Vec::with_capacity(p.ssh_connect_n);
    for _ in 0..p.ssh_connect_n {
        samples.push(session(|router| {
            let t0 = Instant::now();
            router.docker(opts())?.call(noop::remote, ())?;
            Ok(t0.elapsed().as_secs_f64() * 1e3)
        })?);
    }
    median(&samples)
}
