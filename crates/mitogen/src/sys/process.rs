//! Processes and signals.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Send `signal` to process `pid`. A process that is already gone is not an error.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    match syscall!(kill(pid as libc::pid_t, signal)) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}

/// Reap `pid` without blocking. `Ok(Some(status))` once it has exited.
pub fn reap(pid: u32) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    match syscall!(waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG)) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(status)),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// A pidfd for `pid`: readable once the process exits (Linux 5.3+).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Ignore SIGPIPE so writes to a closed stream fail with EPIPE instead of killing us.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
