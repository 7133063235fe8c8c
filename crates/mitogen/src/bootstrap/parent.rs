//! The parent's half of the bootstrap: watch the new process's output for
//! markers, upload the binary when asked, send the config, check the hello.
//!
//! Prompts are looked for only on the terminal the program prompts on: the
//! pseudo-terminal and stderr, and in `Tty` mode (where stdout *is* the
//! terminal) stdout only until the first marker of the first stage. What
//! the target prints on its stdout (a `.profile`, a banner) never makes us
//! type a password.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mitogen_wire::Header;

use super::{marker, ChildConfig, EXEC, FAIL, HELLO, NEED, PROTOCOL};
use crate::connect::prompt::Prompts;
use crate::context::registry::table_hash;
use crate::error::{Error, Result, StreamError, TimeoutError};
use crate::sys;

const KEEP_LINES: usize = 20;
/// Bytes of unfinished line kept, and of text kept for prompt matching.
const KEEP_BYTES: usize = 4096;
/// A stdout line longer than this before the hello is cut to its last
/// [`KEEP_BYTES`] (markers are short).
const MAX_LINE: usize = 64 * 1024;

/// The far side's output, kept for error messages: the last
/// [`KEEP_LINES`] lines and at most [`KEEP_BYTES`] of an unfinished one.
#[derive(Default)]
pub(crate) struct Output {
    lines: VecDeque<String>,
    partial_err: Vec<u8>,
}

impl Output {
    pub(crate) fn push_line(&mut self, line: &[u8]) {
        let s = String::from_utf8_lossy(line).trim_end().to_string();
        if s.is_empty() {
            return;
        }
        if self.lines.len() == KEEP_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(s);
    }

    fn push_stderr(&mut self, bytes: &[u8]) {
        self.partial_err.extend_from_slice(bytes);
        while let Some(pos) = self.partial_err.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial_err.drain(..=pos).collect();
            self.push_line(&line);
        }
        keep_tail(&mut self.partial_err, KEEP_BYTES);
    }

    pub(crate) fn text(&self) -> String {
        let mut v: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial_err.is_empty() {
            v.push(
                String::from_utf8_lossy(&self.partial_err)
                    .trim_end()
                    .to_string(),
            );
        }
        v.join("\n")
    }
}

/// Drop all but the last `keep` bytes of `v` once it holds more.
fn keep_tail(v: &mut Vec<u8>, keep: usize) {
    if v.len() > keep {
        v.drain(..v.len() - keep);
    }
}

/// Descriptors of a freshly started connection.
pub(crate) struct Conversation<'a> {
    pub router: &'a crate::router::Router,
    pub name: &'a str,
    pub nonce: &'a str,
    pub read_fd: RawFd,
    pub write_fd: RawFd,
    pub stderr_fd: Option<RawFd>,
    /// A pseudo-terminal master to watch for prompts and type answers into,
    /// when the program's stdio is not the terminal itself.
    pub tty_fd: Option<RawFd>,
    /// stdio is the terminal (`Tty` mode): prompts arrive on `read_fd`,
    /// and are looked for there until the first first-stage marker.
    pub stdio_is_tty: bool,
    /// Send the configuration at once (the program is this binary itself),
    /// not on the first stage's `MITOGEN-EXEC` marker.
    pub config_first: bool,
    /// The first stage's second half, sent before the binary
    /// ([`FirstStage::install_script`](super::first_stage::FirstStage::install_script)).
    pub install: Option<String>,
    pub deadline: Instant,
    pub timeout: Duration,
}

/// What the bootstrap produced.
pub(crate) struct Handshake {
    /// Bytes read after the hello line: the start of the framed stream.
    pub leftover: Vec<u8>,
    /// Binary bytes uploaded (0 for a warm cache or a direct exec).
    pub binary_bytes: u64,
}

/// Where the conversation stands; one per [`Conversation::run`].
#[derive(Default)]
struct State {
    /// Everything printed (stdout, stderr, terminal), for error messages.
    out: Output,
    /// What the program printed on its terminal, for `Prompts::on_exit`.
    term: Output,
    /// Terminal text since the last answer (at most [`KEEP_BYTES`]), for
    /// `Prompts::on_output`.
    pending: Vec<u8>,
    /// Unfinished stdout line.
    buf: Vec<u8>,
    /// A first-stage marker has been seen: stdout is no longer a terminal
    /// we answer prompts on.
    marker_seen: bool,
    config_sent: bool,
    binary_bytes: u64,
}

impl State {
    fn terminal(&mut self, bytes: &[u8]) {
        self.term.push_stderr(bytes);
        self.pending.extend_from_slice(bytes);
        keep_tail(&mut self.pending, KEEP_BYTES);
    }
}

impl Conversation<'_> {
    fn fail(&self, reason: String, output: &Output) -> Error {
        StreamError::Bootstrap {
            name: self.name.to_string(),
            reason,
            output: output.text(),
        }
        .into()
    }

    /// Run the conversation: send `config` (at once or on the first
    /// stage's `MITOGEN-EXEC`), upload the binary if asked, and return once
    /// the child's hello checks out. `prompts` sees what is printed on the
    /// terminal and may type answers (passwords) or end the attempt with a
    /// precise error.
    pub(crate) fn run(
        &self,
        config: &ChildConfig,
        prompts: &mut Option<Box<dyn Prompts>>,
    ) -> Result<Handshake> {
        let mut st = State::default();
        if self.config_first {
            self.send_config(config)?;
            st.config_sent = true;
        }
        let mut chunk = vec![0u8; 16 * 1024];
        let mut side = [self.stderr_fd, self.tty_fd];
        loop {
            let fds = [self.read_fd, side[0].unwrap_or(-1), side[1].unwrap_or(-1)];
            let ready = sys::poll_many(&fds, self.deadline)
                .map_err(|e| self.io("waiting for the child", e))?;
            if !ready.iter().any(|r| *r) {
                return Err(self.timeout(&st.out));
            }
            for k in 0..2 {
                if !ready[k + 1] {
                    continue;
                }
                match side[k].map(|fd| sys::read(fd, &mut chunk)) {
                    Some(Ok(n)) if n > 0 => {
                        st.out.push_stderr(&chunk[..n]);
                        st.terminal(&chunk[..n]);
                    }
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => side[k] = None,
                }
            }
            if ready[0] {
                let n = match sys::read(self.read_fd, &mut chunk) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    // A pty master reads EIO once the other side is gone.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => 0,
                    Err(e) => return Err(self.io("reading from the child", e)),
                };
                if n == 0 {
                    self.drain_stderr(&mut st, &mut chunk);
                    st.out.push_line(&st.buf);
                    if self.stdio_is_tty && !st.marker_seen {
                        st.term.push_line(&st.buf);
                    }
                    if let Some(e) = prompts.as_ref().and_then(|p| p.on_exit(&st.term.text())) {
                        return Err(e);
                    }
                    return Err(self.fail(
                        "the connection closed before the child started".into(),
                        &st.out,
                    ));
                }
                st.buf.extend_from_slice(&chunk[..n]);
                if let Some(done) = self.lines(&mut st, config, &mut chunk)? {
                    return Ok(done);
                }
            }
            if let Some(p) = prompts.as_mut() {
                // A prompt has no newline: include the unfinished line.
                let mut probe = String::from_utf8_lossy(&st.pending).into_owned();
                if self.stdio_is_tty && !st.marker_seen {
                    probe.push_str(&String::from_utf8_lossy(&st.buf));
                }
                if let Some(answer) = p.on_output(&probe)? {
                    let fd = self.tty_fd.unwrap_or(self.write_fd);
                    sys::write_all_blocking(fd, answer.expose().as_bytes())
                        .map_err(|e| self.io("typing at a prompt", e))?;
                    st.pending.clear();
                    if self.stdio_is_tty && !st.marker_seen {
                        st.buf.clear();
                    }
                }
            }
        }
    }

    /// Act on the complete stdout lines in `st.buf`; `Some` once the hello
    /// checked out.
    fn lines(
        &self,
        st: &mut State,
        config: &ChildConfig,
        chunk: &mut [u8],
    ) -> Result<Option<Handshake>> {
        while let Some(pos) = st.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = st.buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            match self.marker(text) {
                Some((NEED, rest)) => {
                    st.marker_seen = true;
                    st.binary_bytes += self.upload(rest, &st.out)?;
                }
                Some((EXEC, _)) => {
                    st.marker_seen = true;
                    if !st.config_sent {
                        self.send_config(config)?;
                        st.config_sent = true;
                    }
                }
                Some((FAIL, rest)) => {
                    self.drain_stderr(st, chunk);
                    return Err(self.fail(rest.to_string(), &st.out));
                }
                Some((HELLO, rest)) => {
                    self.check_hello(rest, &st.out)?;
                    if !st.config_sent {
                        self.send_config(config)?;
                    }
                    return Ok(Some(Handshake {
                        leftover: std::mem::take(&mut st.buf),
                        binary_bytes: st.binary_bytes,
                    }));
                }
                _ => {
                    st.out.push_line(&line);
                    if self.stdio_is_tty && !st.marker_seen {
                        st.term.push_line(&line);
                        st.pending.extend_from_slice(&line);
                        keep_tail(&mut st.pending, KEEP_BYTES);
                    }
                }
            }
        }
        // Noise without a newline: markers are short, keep only the end.
        if st.buf.len() > MAX_LINE {
            keep_tail(&mut st.buf, KEEP_BYTES);
        }
        Ok(None)
    }

    fn timeout(&self, out: &Output) -> Error {
        TimeoutError {
            waited: self.timeout,
            what: format!(
                "connecting to {}{}",
                self.name,
                match out.text() {
                    t if t.is_empty() => String::new(),
                    t => format!("; it printed: {t}"),
                }
            ),
        }
        .into()
    }

    fn drain_stderr(&self, st: &mut State, chunk: &mut [u8]) {
        for fd in [self.stderr_fd, self.tty_fd].into_iter().flatten() {
            let _ = sys::set_nonblocking(fd, true);
            while let Ok(n @ 1..) = sys::read(fd, chunk) {
                st.out.push_stderr(&chunk[..n]);
                st.term.push_stderr(&chunk[..n]);
            }
        }
    }

    fn io(&self, what: &str, source: std::io::Error) -> Error {
        StreamError::Io {
            what: format!("{what} ({})", self.name),
            source,
        }
        .into()
    }

    /// `Some((kind, rest))` when `line` is a marker carrying our nonce.
    fn marker<'l>(&self, line: &'l str) -> Option<(&'static str, &'l str)> {
        marker::find(line, self.nonce)
    }

    /// Answer `MITOGEN-NEED:<nonce>:<uname -sm>:<gz|raw>`.
    fn upload(&self, rest: &str, out: &Output) -> Result<u64> {
        let marker::Need {
            uname,
            kernel,
            machine,
            gzip,
        } = marker::need(rest);
        let mismatch = |why: String| {
            self.fail(
                format!(
                    "the target is {uname}, but this program is built for {} {}: {why}",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ),
                out,
            )
        };
        if !kernel.eq_ignore_ascii_case(std::env::consts::OS) {
            return Err(mismatch("another operating system".into()));
        }
        let binary = self.router.binary_for(machine).map_err(mismatch)?;
        let (fmt, payload) = if gzip {
            ("gz", binary.gzip())
        } else {
            ("raw", &binary.bytes[..])
        };
        let Some(install) = self.install.as_deref() else {
            return Err(self.fail("asked for the binary, but no first stage runs".into(), out));
        };
        let header = format!(
            "{install}\n{fmt} {} {} {}\n",
            payload.len(),
            binary.bytes.len(),
            binary.sha256
        );
        sys::write_all_blocking(self.write_fd, header.as_bytes())
            .and_then(|()| sys::write_all_blocking(self.write_fd, payload))
            .map_err(|e| self.io("uploading the binary", e))?;
        Ok(payload.len() as u64)
    }

    /// `MITOGEN-HELLO:<nonce>:<protocol>:<function table hash>`.
    fn check_hello(&self, rest: &str, out: &Output) -> Result<()> {
        let marker::Hello {
            protocol: proto,
            table: hash,
        } = marker::hello(rest);
        let ours = table_hash();
        if proto != PROTOCOL.to_string() || hash != ours {
            return Err(StreamError::VersionSkew {
                name: self.name.to_string(),
                detail: format!(
                    "it speaks protocol {proto} with function table {hash}; this program speaks {PROTOCOL} with {ours}{}",
                    match out.text() {
                        t if t.is_empty() => String::new(),
                        t => format!("; it printed: {t}"),
                    }
                ),
            }
            .into());
        }
        Ok(())
    }

    fn send_config(&self, config: &ChildConfig) -> Result<()> {
        let body = mitogen_wire::encode(config)?;
        let header = Header {
            dst_id: config.context_id,
            length: body.len() as u32,
            ..Header::default()
        };
        let mut frame = header.to_bytes().to_vec();
        frame.extend_from_slice(&body);
        sys::write_all_blocking(self.write_fd, &frame)
            .map_err(|e| self.io("sending the child its configuration", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_bounded_text() {
        let mut out = Output::default();
        for _ in 0..256 {
            out.push_stderr(&[b'x'; 4096]);
        }
        assert_eq!(out.partial_err.len(), KEEP_BYTES, "an endless line is cut");
        for i in 0..100 {
            out.push_stderr(format!("line {i}\n").as_bytes());
        }
        assert_eq!(out.lines.len(), KEEP_LINES);
        assert!(out.text().ends_with("line 99"));
    }
}
