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
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use mitogen_wire::Header;

use super::{
    first_stage, marker, ChildConfig, EXEC, FAIL, FULL, HELLO, NEED, NODIR, PROTOCOL, VERSION,
};
use crate::connect::prompt::Prompts;
use crate::context::registry::table_hash;
use crate::error::{ConnectFailure, Error, Result, StreamError, TimeoutError};
use crate::sys;

const KEEP_LINES: usize = 20;
/// Bytes of unfinished line kept, and of text kept for prompt matching.
const KEEP_BYTES: usize = 4096;
/// A stdout line longer than this before the hello is cut to its last
/// [`KEEP_BYTES`] (markers are short).
const MAX_LINE: usize = 64 * 1024;
/// Text already scanned that a prompt scan sees again with the new bytes:
/// enough for a prompt line or a refusal cut in two by a read.
const OVERLAP: usize = 1024;
/// How long a program that closed its output is given to exit, so that
/// its exit status can be reported.
const EXIT_GRACE: Duration = Duration::from_secs(1);

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

    /// Add `bytes` of a stream printed in pieces; linear in `bytes`.
    fn push_stderr(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.partial_err.is_empty() {
                self.push_line(&rest[..pos]);
            } else {
                let mut line = std::mem::take(&mut self.partial_err);
                line.extend_from_slice(&rest[..pos]);
                self.push_line(&line);
            }
            rest = &rest[pos + 1..];
        }
        if rest.len() >= KEEP_BYTES {
            self.partial_err.clear();
            rest = &rest[rest.len() - KEEP_BYTES..];
        }
        self.partial_err.extend_from_slice(rest);
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
    /// The connection program's name, for error texts (`ssh`).
    pub program: &'a str,
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
    /// stdout before the first first-stage marker is the program's own
    /// output (container engines' errors), kept for `Prompts::failure`.
    pub program_on_stdout: bool,
    /// Send the configuration at once (the program is this binary itself),
    /// not on the first stage's `MITOGEN-EXEC` marker.
    pub config_first: bool,
    /// The first stage's second half, sent before the binary
    /// ([`FirstStage::install_script`](super::first_stage::FirstStage::install_script)).
    pub install: Option<String>,
    /// Nothing waits past this: not a read, not a write.
    pub deadline: Instant,
    pub timeout: Duration,
    /// Waits at most until the given instant for the connection program to
    /// exit and says how it ended (`None`: still running). Asked once the
    /// program closed the connection.
    pub exit_status: &'a dyn Fn(Instant) -> Option<ExitStatus>,
}

/// What the bootstrap produced.
pub(crate) struct Handshake {
    /// Bytes read after the hello line: the start of the framed stream.
    pub leftover: Vec<u8>,
    /// Binary bytes uploaded (0 for a warm cache or a direct exec).
    pub binary_bytes: u64,
    /// The child's process id, from its hello.
    pub pid: Option<u32>,
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
    /// Terminal bytes that arrived since the last prompt scan.
    fresh: usize,
    /// Unfinished stdout line.
    buf: Vec<u8>,
    /// Leading bytes of `buf` already known to hold no newline.
    scanned: usize,
    /// A first-stage marker has been seen: stdout is no longer a terminal
    /// we answer prompts on.
    marker_seen: bool,
    /// The binary was asked for (once is all a first stage needs).
    need_seen: bool,
    /// The first stage was sent [`first_stage::diagnose_script`].
    diagnosis_sent: bool,
    config_sent: bool,
    binary_bytes: u64,
}

impl State {
    fn terminal(&mut self, bytes: &[u8]) {
        self.term.push_stderr(bytes);
        self.pending.extend_from_slice(bytes);
        keep_tail(&mut self.pending, KEEP_BYTES);
        self.fresh += bytes.len();
    }
}

/// What acting on the program's stdout lines led to.
enum Step {
    /// The child said hello.
    Hello(Handshake),
    /// The program stopped reading: it closed the connection.
    Closed,
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
    /// precise error. Nothing here waits past `deadline`: a program that
    /// prints forever or stops reading ends in a `TimeoutError`.
    pub(crate) fn run(
        &self,
        config: &ChildConfig,
        prompts: &mut Option<Box<dyn Prompts>>,
    ) -> Result<Handshake> {
        let mut st = State::default();
        let mut chunk = vec![0u8; 16 * 1024];
        // Non-blocking, so no read or write can wait past the deadline.
        let fds = [
            Some(self.read_fd),
            Some(self.write_fd),
            self.tty_fd,
            self.stderr_fd,
        ];
        for fd in fds.into_iter().flatten() {
            sys::set_nonblocking(fd, true).map_err(|e| self.io("preparing the stream", e))?;
        }
        if self.config_first {
            if self.send_config(config, &st.out)?.is_some() {
                return Err(self.ended(&mut st, prompts, &mut chunk));
            }
            st.config_sent = true;
        }
        let mut side = [self.stderr_fd, self.tty_fd];
        loop {
            if Instant::now() >= self.deadline {
                return Err(self.timeout(&st.out));
            }
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
                match sys::read(self.read_fd, &mut chunk) {
                    Ok(0) => return Err(self.ended(&mut st, prompts, &mut chunk)),
                    Ok(n) => {
                        if self.stdio_is_tty && !st.marker_seen {
                            st.fresh += n;
                        }
                        st.buf.extend_from_slice(&chunk[..n]);
                        match self.lines(&mut st, config)? {
                            Some(Step::Hello(done)) => return Ok(done),
                            Some(Step::Closed) => {
                                return Err(self.ended(&mut st, prompts, &mut chunk))
                            }
                            None => {}
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // A pty master reads EIO once the other side is gone.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        return Err(self.ended(&mut st, prompts, &mut chunk))
                    }
                    Err(e) => return Err(self.io("reading from the child", e)),
                }
            }
            if st.fresh > 0 {
                if let Some(p) = prompts.as_mut() {
                    let probe = self.probe(&st);
                    if let Some(answer) = p.on_output(&probe)? {
                        let fd = self.tty_fd.unwrap_or(self.write_fd);
                        if self
                            .write(
                                fd,
                                answer.expose().as_bytes(),
                                "typing at a prompt",
                                &st.out,
                            )?
                            .is_some()
                        {
                            return Err(self.ended(&mut st, prompts, &mut chunk));
                        }
                        st.pending.clear();
                        if self.stdio_is_tty && !st.marker_seen {
                            st.buf.clear();
                            st.scanned = 0;
                        }
                    }
                }
                st.fresh = 0;
            }
        }
    }

    /// The last new terminal text plus [`OVERLAP`] bytes before it: what a
    /// prompt scan needs, so scanning stays linear in what is printed. In
    /// `Tty` mode before the first marker, stdout's unfinished line is
    /// terminal text too (a prompt has no newline).
    fn probe(&self, st: &State) -> String {
        let want = st.fresh + OVERLAP;
        let line: &[u8] = if self.stdio_is_tty && !st.marker_seen {
            &st.buf
        } else {
            &[]
        };
        let from_line = line.len().min(want);
        let from_pending = st.pending.len().min(want - from_line);
        let mut bytes = st.pending[st.pending.len() - from_pending..].to_vec();
        bytes.extend_from_slice(&line[line.len() - from_line..]);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Act on the complete stdout lines in `st.buf`.
    fn lines(&self, st: &mut State, config: &ChildConfig) -> Result<Option<Step>> {
        let mut buf = std::mem::take(&mut st.buf);
        let mut start = 0;
        let mut from = st.scanned;
        while let Some(pos) = buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos + 1;
            let line = &buf[start..end];
            start = end;
            from = end;
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches(['\r', '\n']);
            let step = match self.marker(text) {
                Some((NEED, rest)) => {
                    st.marker_seen = true;
                    if st.need_seen {
                        return Err(self.fail(
                            format!("the first stage asked for the binary a second time ({text})"),
                            &st.out,
                        ));
                    }
                    st.need_seen = true;
                    // A first stage that stopped reading may still say why
                    // (`MITOGEN-FAIL`) before it closes: read on.
                    if let Some(n) = self.upload(rest, &st.out)? {
                        st.binary_bytes += n;
                    }
                    None
                }
                Some((EXEC, _)) => {
                    st.marker_seen = true;
                    if st.config_sent {
                        None
                    } else {
                        st.config_sent = true;
                        self.send_config(config, &st.out)?.map(|()| Step::Closed)
                    }
                }
                // No usable directory: ask why, once (the first stage
                // `eval`s the answer and fails again, with the reasons).
                Some((FAIL, NODIR)) if !st.diagnosis_sent => {
                    st.diagnosis_sent = true;
                    let ask = format!("{}\n", first_stage::diagnose_script());
                    self.write(self.write_fd, ask.as_bytes(), "asking why", &st.out)?
                        .map(|()| Step::Closed)
                }
                Some((FAIL, rest)) => {
                    self.drain_stderr(st, &mut vec![0; 16 * 1024]);
                    let reason = failure_reason(rest, self.name, &st.out.text());
                    return Err(self.fail(reason, &st.out));
                }
                Some((HELLO, rest)) => {
                    let pid = self.check_hello(rest, &st.out)?;
                    if !st.config_sent && self.send_config(config, &st.out)?.is_some() {
                        Some(Step::Closed)
                    } else {
                        return Ok(Some(Step::Hello(Handshake {
                            leftover: buf[start..].to_vec(),
                            binary_bytes: st.binary_bytes,
                            pid,
                        })));
                    }
                }
                _ => {
                    st.out.push_line(line);
                    if self.stdio_is_tty && !st.marker_seen {
                        st.term.push_line(line);
                        st.pending.extend_from_slice(line);
                        keep_tail(&mut st.pending, KEEP_BYTES);
                    } else if self.program_on_stdout && !st.marker_seen {
                        st.term.push_line(line);
                    }
                    None
                }
            };
            if step.is_some() {
                return Ok(step);
            }
        }
        buf.drain(..start);
        st.scanned = buf.len();
        // Noise without a newline: markers are short, keep only the end.
        if buf.len() > MAX_LINE {
            keep_tail(&mut buf, KEEP_BYTES);
            st.scanned = buf.len();
        }
        st.buf = buf;
        Ok(None)
    }

    /// The program closed the connection before the hello: the most
    /// precise error its output and its exit allow.
    fn ended(&self, st: &mut State, prompts: &Option<Box<dyn Prompts>>, chunk: &mut [u8]) -> Error {
        self.drain_stderr(st, chunk);
        if st.diagnosis_sent {
            // It said no directory is usable, then left without saying why.
            return self.fail(failure_reason(NODIR, self.name, ""), &st.out);
        }
        st.out.push_line(&st.buf);
        if (self.stdio_is_tty || self.program_on_stdout) && !st.marker_seen {
            st.term.push_line(&st.buf);
        }
        let said = st.term.text();
        if let Some(e) = prompts.as_ref().and_then(|p| p.on_exit(&said)) {
            return e;
        }
        let until = self.deadline.min(Instant::now() + EXIT_GRACE);
        let exit = (self.exit_status)(until).and_then(|s| match (s.code(), s.signal()) {
            (Some(status), _) => Some(ConnectFailure::Exited { status }),
            (None, Some(signal)) => Some(ConnectFailure::Killed { signal }),
            _ => None,
        });
        let words = prompts.as_ref().and_then(|p| p.failure(&said)).or_else(|| {
            (!st.marker_seen && shell_missing(&said, exit)).then_some(ConnectFailure::NoShell)
        });
        let reason = match (words, exit) {
            (Some(kind), Some(exit)) => format!("{kind} ({} {exit})", self.program),
            (Some(kind), None) => kind.to_string(),
            (None, Some(exit)) => {
                format!("{exit}: {} ended before the child started", self.program)
            }
            (None, None) => "the connection closed before the child started".into(),
        };
        self.fail(reason, &st.out)
    }

    /// Write `bytes` to `fd` by the deadline. `Ok(Some(()))`: the program
    /// no longer reads (it closed the connection).
    fn write(&self, fd: RawFd, bytes: &[u8], what: &str, out: &Output) -> Result<Option<()>> {
        match sys::write_all_deadline(fd, bytes, self.deadline) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(self.timeout_while(out, &format!("{what}: the program stopped reading ({e})")))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::BrokenPipe
                    || e.kind() == std::io::ErrorKind::ConnectionReset
                    || e.raw_os_error() == Some(libc::EIO) =>
            {
                Ok(Some(()))
            }
            Err(e) => Err(self.io(what, e)),
        }
    }

    fn timeout(&self, out: &Output) -> Error {
        self.timeout_while(out, "")
    }

    fn timeout_while(&self, out: &Output, doing: &str) -> Error {
        TimeoutError {
            waited: self.timeout,
            what: format!(
                "connecting to {}{}{}",
                self.name,
                match doing {
                    "" => String::new(),
                    d => format!(" ({d})"),
                },
                match out.text() {
                    t if t.is_empty() => String::new(),
                    t => format!("; it printed: {t}"),
                }
            ),
        }
        .into()
    }

    /// Read what stderr and the terminal still hold, without waiting and
    /// at most [`MAX_LINE`] bytes of each (a program may print forever).
    fn drain_stderr(&self, st: &mut State, chunk: &mut [u8]) {
        for fd in [self.stderr_fd, self.tty_fd].into_iter().flatten() {
            let mut left = MAX_LINE;
            let size = chunk.len();
            while let Ok(n @ 1..) = sys::read(fd, &mut chunk[..left.min(size)]) {
                st.out.push_stderr(&chunk[..n]);
                st.term.push_stderr(&chunk[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
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

    /// Answer `MITOGEN-NEED:<nonce>:<uname -sm>:<gz|raw>`: the bytes sent,
    /// or `None` when the program stopped reading.
    fn upload(&self, rest: &str, out: &Output) -> Result<Option<u64>> {
        let marker::Need {
            uname,
            kernel,
            machine,
            gzip,
        } = marker::need(rest);
        let mismatch = |why: String| {
            self.fail(
                format!(
                    "{}: the target is {uname}, but this program is built for {} {}: {why}",
                    ConnectFailure::WrongArchitecture,
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
            "{install}\n{fmt} {} {} {} {}\n",
            payload.len(),
            binary.bytes.len(),
            binary.sha256,
            binary.needs.interpreter.as_deref().unwrap_or_default()
        );
        let what = "uploading the binary";
        if self
            .write(self.write_fd, header.as_bytes(), what, out)?
            .is_some()
            || self.write(self.write_fd, payload, what, out)?.is_some()
        {
            return Ok(None);
        }
        Ok(Some(payload.len() as u64))
    }

    /// `MITOGEN-HELLO:<nonce>:<protocol>:<function table hash>:<version>:<pid>`:
    /// another protocol or table is [`StreamError::VersionSkew`] naming
    /// both builds; otherwise the pid it gives, if valid.
    fn check_hello(&self, rest: &str, out: &Output) -> Result<Option<u32>> {
        let theirs = marker::hello(rest);
        let ours = table_hash();
        if theirs.protocol != PROTOCOL.to_string() || theirs.table != ours {
            let build = |version: &str, protocol: &str, table: &str| {
                let version = match version {
                    "" => "an unnamed version".to_string(),
                    v => v.to_string(),
                };
                format!("mitogen {version} (protocol {protocol}, function table {table})")
            };
            return Err(StreamError::VersionSkew {
                name: self.name.to_string(),
                detail: format!(
                    "it runs another build of this program: {}; this side runs {}{}",
                    build(theirs.version, theirs.protocol, theirs.table),
                    build(VERSION, &PROTOCOL.to_string(), &ours),
                    match out.text() {
                        t if t.is_empty() => String::new(),
                        t => format!("; it printed: {t}"),
                    }
                ),
            }
            .into());
        }
        Ok(theirs.pid)
    }

    /// `Ok(Some(()))` when the program stopped reading.
    fn send_config(&self, config: &ChildConfig, out: &Output) -> Result<Option<()>> {
        let body = mitogen_wire::encode(config)?;
        let header = Header {
            dst_id: config.context_id,
            length: body.len() as u32,
            ..Header::default()
        };
        let mut frame = header.to_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.write(
            self.write_fd,
            &frame,
            "sending the child its configuration",
            out,
        )
    }
}

/// The reason of a bootstrap error for the first stage's
/// `MITOGEN-FAIL:<nonce>:<rest>` on the way to `target`, which printed
/// `said` meanwhile: a dynamic binary's missing interpreter or failed
/// start becomes a [`ConnectFailure::DynamicBinary`] naming the cause and
/// the fix, no usable directory a [`ConnectFailure::NoUsableDirectory`]
/// listing each candidate and why it was refused, a failed write a
/// [`ConnectFailure::DiskFull`] naming the directory and the bytes needed;
/// any other text is the reason as printed.
pub(crate) fn failure_reason(rest: &str, target: &str, said: &str) -> String {
    let machine = rest.split(' ').nth(1).unwrap_or("");
    let needs = super::forward::needs_for_machine(machine).unwrap_or_default();
    failure_reason_for(rest, target, said, needs)
}

/// [`failure_reason`] for a binary with these `needs` (tests fake them).
fn failure_reason_for(rest: &str, target: &str, said: &str, needs: super::binary::Needs) -> String {
    let nodir = rest.strip_prefix(NODIR);
    if let Some(why) = nodir.filter(|w| w.is_empty() || w.starts_with(';')) {
        return no_usable_directory(why, target);
    }
    if let Some(args) = rest.strip_prefix(FULL).and_then(|r| r.strip_prefix(' ')) {
        return write_failed(args, target, said);
    }
    let mut words = rest.split(' ');
    let (kind, machine) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "this program".into());
    let arch = match machine {
        "amd64" => "x86_64",
        "arm64" | "aarch64_be" => "aarch64",
        m if m.is_empty() || super::forward::is_own_machine(m) => std::env::consts::ARCH,
        m => m,
    };
    let fix = format!(
        "build it statically: scripts/build-static.sh or cargo build --release --target {arch}-unknown-linux-musl"
    );
    let glibc = needs
        .glibc
        .map(|(major, minor)| format!(" (glibc {major}.{minor} or newer)"))
        .unwrap_or_default();
    let kind_word = ConnectFailure::DynamicBinary;
    match kind {
        super::DYNAMIC => {
            let interp = words.next().unwrap_or("its ELF interpreter");
            // An unmatched glob (`/lib*/ld-*`) is printed as is.
            let found: Vec<&str> = words
                .filter(|w| !w.is_empty() && !w.contains('*'))
                .collect();
            let has = if found.is_empty() {
                "it has no ELF interpreter in /lib or /lib64: no C library, busybox only?"
                    .to_string()
            } else {
                format!("it has {}", found.join(", "))
            };
            format!(
                "{kind_word}: {program} is dynamically linked and needs {interp}{glibc}, which {target} lacks ({has}); {fix}"
            )
        }
        super::PROBE if needs.interpreter.is_some() => {
            let said: Vec<&str> = words.collect();
            format!(
                "{kind_word}: {program} is dynamically linked and did not start on {target} (it needs {}{glibc}; it said: {}); {fix}",
                needs.interpreter.as_deref().unwrap_or_default(),
                said.join(" ")
            )
        }
        super::PROBE => {
            let said: Vec<&str> = words.collect();
            format!(
                "the uploaded binary did not start on {target} and was removed; it said: {}",
                said.join(" ")
            )
        }
        _ => rest.to_string(),
    }
}

/// Whether a connection program that ended before any first-stage
/// marker shows that the target has no `sh` to run the first stage: a
/// line of `said` names `sh` (or a path ending in `/sh`) as not found —
/// dash's `sh: 1: sh: not found`, bash's `bash: sh: command not found`,
/// zsh's `zsh: command not found: sh`, env's `env: '/x/sh': No such file
/// or directory` — or it exited with status 127 (command not found)
/// without a word. Other programs not found (`foo.sh`, `bash`) do not
/// count.
fn shell_missing(said: &str, exit: Option<ConnectFailure>) -> bool {
    if exit == Some(ConnectFailure::Exited { status: 127 }) && said.trim().is_empty() {
        return true;
    }
    let quotes = ['\'', '"', '\u{2018}', '\u{2019}', '`'];
    said.lines().any(|line| {
        let line = line.trim_end().to_ascii_lowercase();
        if line.ends_with("command not found: sh") {
            return true;
        }
        [
            ": not found",
            ": command not found",
            ": no such file or directory",
        ]
        .iter()
        .filter_map(|tail| line.find(tail))
        .any(|at| {
            let named = line[..at].trim_end_matches(quotes);
            let word = named
                .rsplit(|c: char| c == ' ' || c == ':' || quotes.contains(&c))
                .next()
                .unwrap_or("");
            word == "sh" || word.ends_with("/sh")
        })
    })
}

/// `nodir; <dir>: <why>; ...` (`why` is empty when the first stage did
/// not say) as a [`ConnectFailure::NoUsableDirectory`] reason.
fn no_usable_directory(why: &str, target: &str) -> String {
    let tried = match why.strip_prefix("; ") {
        Some(list) if !list.is_empty() => format!("; tried {list}"),
        _ => " (it did not say why of each)".into(),
    };
    format!(
        "{}: no candidate directory on {target} is private (ours, mode 0700, not a symlink), writable and allows running programs{tried}; choose one that is with the cache_dir option",
        ConnectFailure::NoUsableDirectory
    )
}

/// `<bytes needed> <KiB free or ?> <dir>` of a failed write: a
/// [`ConnectFailure::DiskFull`] reason when `df` shows less room than
/// needed (or cannot tell, and the target said "No space left"), else a
/// plain failure naming both figures.
fn write_failed(args: &str, target: &str, said: &str) -> String {
    let mut words = args.splitn(3, ' ');
    let need: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let free: Option<u64> = words
        .next()
        .and_then(|w| w.parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024));
    let dir = words.next().unwrap_or("its cache directory");
    let room = free.map_or_else(
        || "df could not tell how much is free".to_string(),
        |f| format!("{f} bytes are free there"),
    );
    let full = match free {
        Some(f) => f < need,
        None => said.contains("No space left on device"),
    };
    if full {
        format!(
            "{}: writing this program ({need} bytes) into {dir} on {target} failed: {room}; the partial file was removed; free some space there or choose another directory with the cache_dir option",
            ConnectFailure::DiskFull
        )
    } else {
        format!("writing this program ({need} bytes) into {dir} on {target} failed although {room}; the partial file was removed")
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

    #[test]
    fn output_joins_lines_split_across_reads() {
        let mut out = Output::default();
        for piece in ["ab", "c\nde", "f\n\nlast", " words"] {
            out.push_stderr(piece.as_bytes());
        }
        assert_eq!(out.text(), "abc\ndef\nlast words");
        // A line longer than what is kept keeps (about) its last KEEP_BYTES.
        out.push_stderr(&[b'y'; 3 * KEEP_BYTES]);
        out.push_stderr(b"z\n");
        assert_eq!(out.lines.back().unwrap().len(), KEEP_BYTES + 1);
        assert!(out.lines.back().unwrap().ends_with("yz"));
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    /// `r` starts with `kind` and holds each of `words`.
    fn assert_words(r: &str, kind: &str, words: &[&str]) {
        assert!(r.starts_with(kind), "{kind:?} first in {r}");
        for w in words {
            assert!(r.contains(w), "{w:?} in {r}");
        }
    }

    #[test]
    fn a_missing_interpreter_names_cause_fix_and_libc() {
        let r = failure_reason(
            "dynamic x86_64 /lib64/ld-linux-x86-64.so.2 /lib*/ld-*",
            "box",
            "",
        );
        assert_words(
            &r,
            "dynamically linked binary: ",
            &[
                "is dynamically linked and needs /lib64/ld-linux-x86-64.so.2",
                "which box lacks (it has no ELF interpreter",
                "scripts/build-static.sh",
                "--target x86_64-unknown-linux-musl",
            ],
        );
        let r = failure_reason(
            "dynamic aarch64 /lib/ld-linux-aarch64.so.1 /lib/ld-musl-aarch64.so.1",
            "pi",
            "",
        );
        assert!(r.contains("it has /lib/ld-musl-aarch64.so.1"), "{r}");
        assert!(r.contains("aarch64-unknown-linux-musl"), "{r}");
        let e = StreamError::Bootstrap {
            name: "pi".into(),
            reason: r,
            output: String::new(),
        };
        assert_eq!(e.kind(), Some(ConnectFailure::DynamicBinary));
    }

    #[test]
    fn a_binary_that_did_not_start_says_what_it_printed() {
        let said = "probe x86_64 ./.ab.12: /lib/libc.so.6: version `GLIBC_2.34' not found";
        let dynamic = crate::bootstrap::binary::Needs {
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            glibc: Some((2, 34)),
        };
        let r = failure_reason_for(said, "old", "", dynamic);
        assert_words(
            &r,
            "dynamically linked binary: ",
            &[
                "did not start on old",
                "needs /lib64/ld-linux-x86-64.so.2 (glibc 2.34 or newer)",
                "GLIBC_2.34' not found",
                "build it statically",
            ],
        );
        // Test binaries are static (.cargo/config.toml): no kind claimed.
        let r = failure_reason(said, "old", "");
        assert!(
            r.starts_with(
                "the uploaded binary did not start on old and was removed; it said: ./.ab.12:"
            ),
            "{r}"
        );
    }

    #[test]
    fn a_missing_shell_is_read_from_its_words_only() {
        let exit = |status| Some(ConnectFailure::Exited { status });
        for said in [
            "sh: 1: sh: not found",
            "bash: sh: command not found",
            "zsh: command not found: sh",
            "env: '/nonexistent/sh': No such file or directory",
            "env: \u{2018}/nonexistent/sh\u{2019}: No such file or directory",
            "sh: /nonexistent/sh: not found",
            "Welcome!\nbash: line 1: sh: command not found",
        ] {
            assert!(shell_missing(said, exit(127)), "{said}");
            assert!(shell_missing(said, exit(1)), "{said}");
        }
        assert!(shell_missing("", exit(127)), "127 without a word");
        for said in [
            "",
            "bash: foo.sh: command not found",
            "env: '/usr/bin/zsh': No such file or directory",
            "ssh: connect to host x port 22: Connection refused",
            "/home/u/.sh: No such file or directory",
            "sudo: a password is required",
        ] {
            assert!(!shell_missing(said, exit(1)), "{said}");
        }
        assert!(!shell_missing("", exit(126)));
        assert!(!shell_missing("", None));
    }

    #[test]
    fn no_usable_directory_lists_each_candidate() {
        let r = failure_reason(
            "nodir; /c: a symlink; /tmp/mitogen-0: cannot run programs (mounted noexec?)",
            "box",
            "",
        );
        assert_words(
            &r,
            "no usable directory: ",
            &["on box", "tried /c: a symlink; /tmp/mitogen-0: cannot run"],
        );
        let r = failure_reason("nodir", "box", "");
        assert!(
            r.starts_with("no usable directory: ") && r.contains("did not say"),
            "{r}"
        );
        assert!(failure_reason("nodirt", "box", "").starts_with("nodirt"));
    }

    #[test]
    fn a_failed_write_is_disk_full_only_when_room_lacks() {
        let r = failure_reason("full 5000000 1000 /mnt/tiny cache", "box", "");
        assert_words(
            &r,
            "disk full: ",
            &[
                "5000000 bytes",
                "/mnt/tiny cache on box",
                "1024000 bytes are free",
            ],
        );
        let r = failure_reason(
            "full 5000000 ? /d",
            "box",
            "gzip: stdout: No space left on device",
        );
        assert!(r.starts_with("disk full: "), "{r}");
        let r = failure_reason("full 5000000 ? /d", "box", "gzip: invalid compressed data");
        assert!(
            r.starts_with("writing this program") && r.contains("df could not tell"),
            "{r}"
        );
        let r = failure_reason("full 5000 90000 /d", "box", "");
        assert!(
            r.starts_with("writing this program") && r.contains("although"),
            "{r}"
        );
    }

    #[test]
    fn other_failures_are_kept_as_printed() {
        assert_eq!(
            failure_reason("disk trouble: x", "t", ""),
            "disk trouble: x"
        );
        assert_eq!(failure_reason("", "t", ""), "");
    }
}
