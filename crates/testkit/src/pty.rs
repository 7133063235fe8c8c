//! [`PtyProcess`]: run a command on a fresh pseudo-terminal and answer its
//! prompts, as a person would (doas and sudo `requiretty` insist on a
//! terminal). A small `expect`, with bounded waits.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child whose stdin, stdout and stderr are a new pty, which is also its
/// controlling terminal (it runs in a new session).
pub struct PtyProcess {
    master: File,
    child: Child,
    /// Everything read from the terminal so far.
    seen: Vec<u8>,
    /// How much of `seen` [`PtyProcess::expect`] has consumed.
    consumed: usize,
    eof: bool,
}

impl PtyProcess {
    /// Spawn `cmd` on a new pty.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<PtyProcess> {
        let (master, slave) = open_pty()?;
        let out = slave.try_clone()?;
        let err = slave.try_clone()?;
        cmd.stdin(Stdio::from(slave))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: setsid and ioctl are async-signal-safe and touch no
        // memory of the parent. Runs after stdio is in place.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // `cmd` holds our copies of the slave: close them, or the terminal
        // never reports the child's end.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawned?;
        Ok(PtyProcess {
            master: File::from(master),
            child,
            seen: Vec::new(),
            consumed: 0,
            eof: false,
        })
    }

    /// Pid of the child.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the terminal shows `needle` (after what earlier calls
    /// consumed); returns the text up to and including it. Fails with
    /// `TimedOut` or `UnexpectedEof`, the message holding what was seen.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> std::io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let rest = &self.seen[self.consumed..];
            if let Some(at) = find(rest, needle.as_bytes()) {
                let end = self.consumed + at + needle.len();
                let text = String::from_utf8_lossy(&self.seen[self.consumed..end]).into_owned();
                self.consumed = end;
                return Ok(text);
            }
            if self.eof {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("terminal closed before {needle:?}; saw {:?}", self.output()),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no {needle:?} within {timeout:?}; saw {:?}", self.output()),
                ));
            }
            self.read_some(deadline - now)?;
        }
    }

    /// Type `text` (add `\n` to press return).
    pub fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.master.write_all(text.as_bytes())
    }

    /// `true` while the terminal echoes input (programs turn echo off
    /// before reading a password).
    pub fn echo_enabled(&self) -> std::io::Result<bool> {
        // SAFETY: termios is plain data; tcgetattr fills it. On Linux the
        // master reports the slave's settings.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(self.master.as_raw_fd(), &mut t) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(t.c_lflag & libc::ECHO != 0)
        }
    }

    /// Wait for `prompt`, then until echo is off (so the program reads the
    /// password and doesn't flush it as typeahead), then type `password`
    /// and return.
    pub fn answer_password(
        &mut self,
        prompt: &str,
        password: &str,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        self.expect(prompt, timeout)?;
        while self.echo_enabled()? {
            if Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("echo still on after {prompt:?}; saw {:?}", self.output()),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.send(&format!("{password}\n"))
    }

    /// Everything the terminal showed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Read until the child exits (and what it wrote is read); kill it
    /// after `timeout`. Returns the exit status and the whole output.
    pub fn wait(mut self, timeout: Duration) -> std::io::Result<(ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Drain: until the terminal closes or stays quiet a while
                // (a background process may keep it open).
                let quiet = Instant::now() + Duration::from_millis(200);
                while !self.eof && Instant::now() < quiet {
                    self.read_some(Duration::from_millis(20))?;
                }
                return Ok((status, self.output()));
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("still running after {timeout:?}; saw {:?}", self.output()),
                ));
            }
            if self.eof {
                std::thread::sleep(Duration::from_millis(5));
            } else {
                self.read_some((deadline - now).min(Duration::from_millis(20)))?;
            }
        }
    }

    /// Read what is there, waiting up to `timeout` for something.
    fn read_some(&mut self, timeout: Duration) -> std::io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) => self.eof = true,
            Ok(k) => self.seen.extend_from_slice(&buf[..k]),
            // Linux: EIO once every slave descriptor is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => self.eof = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Drop for PtyProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A new pty pair, both ends close-on-exec.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let last = std::io::Error::last_os_error;
    // SAFETY: plain libc calls on descriptors we own; ptsname_r writes at
    // most buf.len() bytes.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(last());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) < 0 || libc::unlockpt(m) < 0 {
            return Err(last());
        }
        let mut buf = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(m, buf.as_mut_ptr(), buf.len());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let s = libc::open(
            buf.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(last());
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}
