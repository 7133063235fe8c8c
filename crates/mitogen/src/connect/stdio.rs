//! How a connection program's stdio is connected: a socketpair, a
//! socketpair with a pseudo-terminal as controlling terminal, or a
//! pseudo-terminal for everything.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use crate::error::{Result, StreamError};
use crate::sys;

/// How the program's stdio is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StdioMode {
    /// stdin/stdout on a socketpair, stderr on a pipe.
    Socket,
    /// As `Socket`, plus a pseudo-terminal as controlling terminal, for
    /// programs that prompt on `/dev/tty` (ssh with a password, sudo).
    Hybrid,
    /// stdin, stdout and stderr all on a pseudo-terminal in raw mode, for
    /// programs that prompt on their stdio (su, doas).
    Tty,
}

/// The master's ends of a program's stdio.
pub(crate) struct Ends {
    /// Carries the protocol.
    pub ours: OwnedFd,
    /// A terminal watched for prompts (`Hybrid`), kept open with the stream.
    pub tty: Option<OwnedFd>,
    /// The program's stderr.
    pub err_r: Option<OwnedFd>,
    /// The terminal's other side, open here at least until the program is
    /// spawned (see [`Ends::spawned`]).
    pub slave: Option<OwnedFd>,
    mode: StdioMode,
}

/// Give `cmd` its stdio for `mode`; the master's ends. `name` is the
/// context's, for error texts.
pub(crate) fn connect(cmd: &mut Command, mode: StdioMode, name: &str) -> Result<Ends> {
    let io = |what: &str, e| StreamError::Io {
        what: format!("{what} for {name}"),
        source: e,
    };
    let ends = match mode {
        StdioMode::Socket | StdioMode::Hybrid => {
            let (ours, theirs) =
                sys::socketpair_cloexec().map_err(|e| io("creating a socketpair", e))?;
            let (err_r, err_w) = sys::pipe_cloexec().map_err(|e| io("creating a pipe", e))?;
            let theirs2 = theirs
                .try_clone()
                .map_err(|e| io("duplicating a socket", e))?;
            cmd.stdin(Stdio::from(theirs))
                .stdout(Stdio::from(theirs2))
                .stderr(Stdio::from(err_w));
            let (tty, slave) = if mode == StdioMode::Hybrid {
                let (master, slave) =
                    sys::openpty_raw().map_err(|e| io("opening a pseudo-terminal", e))?;
                sys::controlling_tty_on_exec(cmd, &slave);
                (Some(master), Some(slave))
            } else {
                (None, None)
            };
            Ends {
                ours,
                tty,
                err_r: Some(err_r),
                slave,
                mode,
            }
        }
        StdioMode::Tty => {
            let (master, slave) =
                sys::openpty_raw().map_err(|e| io("opening a pseudo-terminal", e))?;
            let dup = || {
                slave
                    .try_clone()
                    .map_err(|e| io("duplicating a terminal", e))
            };
            cmd.stdin(Stdio::from(dup()?))
                .stdout(Stdio::from(dup()?))
                .stderr(Stdio::from(dup()?));
            sys::controlling_tty_on_exec(cmd, &slave);
            Ends {
                ours: master,
                tty: None,
                err_r: None,
                slave: Some(slave),
                mode,
            }
        }
    };
    Ok(ends)
}

impl Ends {
    /// The ends to keep once the program is spawned. In `Tty` mode the
    /// program has the terminal as its stdio, so our copy of the slave goes
    /// now: when the program exits (a failed su or doas), the master reads
    /// EIO at once instead of at the timeout. In `Hybrid` mode the terminal
    /// is only the controlling terminal, which the program (sudo, ssh)
    /// opens as `/dev/tty` when it prompts: until then our copy is the
    /// slave's only open descriptor. Without it the master reads as hung up
    /// (EIO) and stops being watched, so a password prompt printed later is
    /// never seen (sudo with a password then timed out): it stays open
    /// until the hello.
    pub(crate) fn spawned(mut self) -> Ends {
        if self.mode == StdioMode::Tty {
            self.slave = None;
        }
        self
    }
}
