//! Raw baselines: what this machine can do with no framework at all, measured
//! in the same run as the framework workloads so they share the machine's
//! state (CPU frequency, neighbours on the VM host, scheduler placement).
//!
//! The peer process is the runner binary itself, re-executed with a hidden
//! subcommand (`__raw-echo`, `__raw-sink`) and given its end of a
//! `socketpair(AF_UNIX, SOCK_STREAM)` as stdin. Nothing is pinned to a CPU:
//! the framework workloads are not pinned either, so cross-core wake-ups are
//! part of both figures.
//!
//! The ssh baselines run the real `ssh` against the run's sshd with the
//! options the libraries use (`ssh::Target::raw_command`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::ssh::Target;
use crate::stats::median;
use crate::workloads::{Profile, Raw};

/// Write-side and read-side chunk for the bulk throughput test.
const CHUNK: usize = 256 * 1024;

/// Measures one raw baseline; `None` if it could not be measured (an ssh
/// one without a `target`, too).
pub fn measure(raw: Raw, p: &Profile, target: Option<&Target>) -> Option<f64> {
    let r = match (raw, target) {
        (Raw::PingPongUs, _) => pingpong_us(p.ping_warm, p.ping_n),
        (Raw::SocketpairMbps, _) => socketpair_mbps(p.bulk_bytes, p.bulk_reps),
        (Raw::SpawnTrueMs, _) => spawn_true_ms(p.spawn_n),
        (Raw::SshTrueMs, Some(t)) => ssh_true_ms(t, p.ssh_true_n),
        (Raw::SshEchoUs, Some(t)) => ssh_echo_us(t, p.rt_warm, p.rt_n),
        (Raw::SshTrueMs | Raw::SshEchoUs, None) => return None,
        (Raw::DockerExecTrueMs, _) => crate::docker::exec_true_ms(p.ssh_true_n),
    };
    match r {
        Ok(v) if v.is_finite() => Some(v),
        Ok(_) => None,
        Err(e) => {
            eprintln!("[raw] {}: {e}", raw.name());
            None
        }
    }
}

fn spawn_peer(args: &[&str]) -> io::Result<(UnixStream, Child)> {
    let (ours, theirs) = UnixStream::pair()?;
    let child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()?;
    Ok((ours, child))
}

/// µs per one-byte round trip between this process and a child process.
pub fn pingpong_us(warm: usize, n: usize) -> io::Result<f64> {
    let (mut s, mut child) = spawn_peer(&["__raw-echo"])?;
    let mut b = [0u8; 1];
    for _ in 0..warm {
        s.write_all(&[1])?;
        s.read_exact(&mut b)?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        s.write_all(&[1])?;
        s.read_exact(&mut b)?;
    }
    let dt = t0.elapsed().as_secs_f64();
    drop(s);
    child.wait()?;
    Ok(dt * 1e6 / n as f64)
}

/// MB/s (1e6 bytes) writing `total` bytes to a child process that reads them
/// all and answers one byte; timed from the first write to that byte. Median
/// of `reps`.
pub fn socketpair_mbps(total: usize, reps: usize) -> io::Result<f64> {
    let buf = vec![0x5au8; CHUNK];
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (mut s, mut child) = spawn_peer(&["__raw-sink", &total.to_string()])?;
        // Let the child start before the clock does.
        s.write_all(&[0])?;
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack)?;
        let t0 = Instant::now();
        let mut left = total;
        while left > 0 {
            let k = left.min(CHUNK);
            s.write_all(&buf[..k])?;
            left -= k;
        }
        s.read_exact(&mut ack)?;
        let dt = t0.elapsed().as_secs_f64();
        drop(s);
        child.wait()?;
        samples.push(total as f64 / 1e6 / dt);
    }
    median(&samples).ok_or_else(|| io::Error::other("no samples"))
}

/// ms per `/bin/true` spawned and waited for; median of `n`.
pub fn spawn_true_ms(n: usize) -> io::Result<f64> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let st = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        if !st.success() {
            return Err(io::Error::other(format!("/bin/true: {st}")));
        }
    }
    median(&samples).ok_or_else(|| io::Error::other("no samples"))
}

/// ms per `ssh ... mitogen-a@127.0.0.1 true`, spawned and waited for;
/// median of `n`.
pub fn ssh_true_ms(t: &Target, n: usize) -> io::Result<f64> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = t.raw_command();
        cmd.arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let out = cmd.output()?;
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ssh true: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    median(&samples).ok_or_else(|| io::Error::other("no samples"))
}

/// µs per one-byte round trip through one long-lived `ssh ... cat`, whose
/// stdin and stdout are one end of a socketpair (as the libraries connect
/// ssh); `warm` untimed then `n` timed round trips.
pub fn ssh_echo_us(t: &Target, warm: usize, n: usize) -> io::Result<f64> {
    let (mut s, theirs) = UnixStream::pair()?;
    let theirs2 = theirs.try_clone()?;
    let mut child = t
        .raw_command()
        .arg("cat")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs2)))
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut b = [0u8; 1];
    let mut round = |s: &mut UnixStream| -> io::Result<()> {
        s.write_all(b"x")?;
        s.read_exact(&mut b)
    };
    let r = (|| {
        for _ in 0..warm {
            round(&mut s)?;
        }
        let t0 = Instant::now();
        for _ in 0..n {
            round(&mut s)?;
        }
        Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
    })();
    // EOF on cat's stdin ends the remote cat and then ssh.
    s.shutdown(std::net::Shutdown::Both)?;
    drop(s);
    child.wait()?;
    r
}

fn stdin_socket() -> io::Result<UnixStream> {
    Ok(UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// `__raw-echo`: write back every byte read, until EOF.
pub fn echo_main() -> io::Result<()> {
    let mut s = stdin_socket()?;
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(k) => s.write_all(&buf[..k])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `__raw-sink TOTAL`: answer the start byte, read TOTAL bytes, answer one
/// byte, wait for EOF.
pub fn sink_main(total: usize) -> io::Result<()> {
    let mut s = stdin_socket()?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    s.write_all(&b)?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    while got < total {
        match s.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    s.write_all(&[1])?;
    while s.read(&mut buf)? > 0 {}
    Ok(())
}
