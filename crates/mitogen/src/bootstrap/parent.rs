//! The parent's half of the bootstrap: watch the new process's output for
//! markers, upload the binary when asked, check the hello, send the config.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mitogen_wire::{Deframer, Header};

use super::{ChildConfig, FAIL, HELLO, NEED, PROTOCOL};
use crate::connect::prompt::Prompts;
use crate::context::registry::table_hash;
use crate::error::{Error, Result, StreamError, TimeoutError};
use crate::sys;

const KEEP_LINES: usize = 20;

/// The far side's output, kept for error messages.
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

impl Conversation<'_> {
    fn fail(&self, reason: String, output: &Output) -> Error {
        StreamError::Bootstrap {
            name: self.name.to_string(),
            reason,
            output: output.text(),
        }
        .into()
    }

    /// Run the conversation until the child's hello, then send `config`.
    /// `prompts` sees everything printed before the hello and may type
    /// answers (passwords) or end the attempt with a precise error.
    pub(crate) fn run(
        &self,
        config: &ChildConfig,
        prompts: &mut Option<Box<dyn Prompts>>,
    ) -> Result<Handshake> {
        let mut out = Output::default();
        let mut buf: Vec<u8> = Vec::new();
        // Printed since the last answer, for the prompt matcher.
        let mut pending = String::new();
        let mut binary_bytes = 0u64;
        let mut chunk = vec![0u8; 16 * 1024];
        let mut side = [self.stderr_fd, self.tty_fd];
        loop {
            let fds = [self.read_fd, side[0].unwrap_or(-1), side[1].unwrap_or(-1)];
            let ready = sys::poll_many(&fds, self.deadline)
                .map_err(|e| self.io("waiting for the child", e))?;
            if !ready.iter().any(|r| *r) {
                return Err(self.timeout(&out));
            }
            for k in 0..2 {
                if !ready[k + 1] {
                    continue;
                }
                match side[k].map(|fd| sys::read(fd, &mut chunk)) {
                    Some(Ok(n)) if n > 0 => {
                        out.push_stderr(&chunk[..n]);
                        pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
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
                    self.drain_stderr(&mut out, &mut chunk);
                    out.push_line(&buf);
                    if let Some(e) = prompts.as_ref().and_then(|p| p.on_exit(&out.text())) {
                        return Err(e);
                    }
                    return Err(self.fail(
                        "the connection closed before the child started".into(),
                        &out,
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    match self.marker(text) {
                        Some((NEED, rest)) => binary_bytes += self.upload(rest, &out)?,
                        Some((FAIL, rest)) => {
                            self.drain_stderr(&mut out, &mut chunk);
                            return Err(self.fail(rest.to_string(), &out));
                        }
                        Some((HELLO, rest)) => {
                            self.check_hello(rest, &out)?;
                            self.send_config(config)?;
                            return Ok(Handshake {
                                leftover: buf,
                                binary_bytes,
                            });
                        }
                        _ => {
                            out.push_line(&line);
                            pending.push_str(&String::from_utf8_lossy(&line));
                        }
                    }
                }
            }
            if let Some(p) = prompts.as_mut() {
                // A prompt has no newline: include the unfinished line.
                let probe = format!("{pending}{}", String::from_utf8_lossy(&buf));
                if let Some(answer) = p.on_output(&probe)? {
                    let fd = self.tty_fd.unwrap_or(self.write_fd);
                    sys::write_all_blocking(fd, answer.as_bytes())
                        .map_err(|e| self.io("typing at a prompt", e))?;
                    pending.clear();
                    buf.clear();
                }
            }
        }
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

    fn drain_stderr(&self, out: &mut Output, chunk: &mut [u8]) {
        for fd in [self.stderr_fd, self.tty_fd].into_iter().flatten() {
            let _ = sys::set_nonblocking(fd, true);
            while let Ok(n @ 1..) = sys::read(fd, chunk) {
                out.push_stderr(&chunk[..n]);
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
        for kind in [NEED, FAIL, HELLO] {
            if let Some(pos) = line.find(kind) {
                let rest = &line[pos + kind.len()..];
                if let Some(rest) = rest
                    .strip_prefix(':')
                    .and_then(|r| r.strip_prefix(self.nonce))
                    .and_then(|r| r.strip_prefix(':'))
                {
                    return Some((kind, rest));
                }
            }
        }
        None
    }

    /// Answer `MITOGEN-NEED:<nonce>:<uname -sm>:<gz|raw>`.
    fn upload(&self, rest: &str, out: &Output) -> Result<u64> {
        let (uname, format) = rest.rsplit_once(':').unwrap_or((rest, "raw"));
        let kernel = uname.split_whitespace().next().unwrap_or("");
        let machine = uname.split_whitespace().last().unwrap_or("");
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
        let (fmt, payload) = if format == "gz" {
            ("gz", binary.gzip())
        } else {
            ("raw", &binary.bytes[..])
        };
        let header = format!(
            "{fmt} {} {} {}\n",
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
        let (proto, hash) = rest.split_once(':').unwrap_or((rest, ""));
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
        sys::write_all_blocking(self.write_fd, &header.to_bytes())
            .and_then(|()| sys::write_all_blocking(self.write_fd, &body))
            .map_err(|e| self.io("sending the child its configuration", e))
    }
}

/// Read the config frame a child expects first; bytes after it stay in the deframer.
pub(crate) fn read_config(
    fd: RawFd,
    deadline: Instant,
) -> std::result::Result<(ChildConfig, Deframer), String> {
    let mut deframer = Deframer::new(mitogen_wire::DEFAULT_MAX_MESSAGE_SIZE);
    loop {
        match deframer.next_frame() {
            Ok(Some(frame)) => {
                let config = mitogen_wire::decode(&frame.body)
                    .map_err(|e| format!("bad configuration frame: {e}"))?;
                return Ok((config, deframer));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad configuration frame: {e}")),
        }
        match sys::poll_readable(fd, deadline) {
            Ok(true) => {}
            Ok(false) => return Err("timed out waiting for the configuration frame".into()),
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        let spare = deframer.spare(4096);
        let len = spare.len();
        match sys::read(fd, spare) {
            Ok(0) => {
                deframer.commit(len, 0);
                return Err("the parent closed the stream before sending the configuration".into());
            }
            Ok(n) => deframer.commit(len, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => deframer.commit(len, 0),
            Err(e) => {
                deframer.commit(len, 0);
                return Err(format!("read failed: {e}"));
            }
        }
    }
}
