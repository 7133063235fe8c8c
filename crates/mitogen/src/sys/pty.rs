//! Pseudo-terminals for programs that type passwords (ssh, sudo, su, doas).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A new pseudo-terminal `(master, slave)`, the slave in raw mode so binary
/// data passes through untouched. Both are opened close-on-exec atomically
/// (`posix_openpt` and `open` with `O_CLOEXEC`), so a program another thread
/// spawns at the same moment can never inherit them.
pub fn openpty_raw() -> io::Result<(OwnedFd, OwnedFd)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    let master = syscall!(posix_openpt(flags))?;
    // SAFETY: posix_openpt returned a new descriptor that nothing else owns.
    let m = unsafe { OwnedFd::from_raw_fd(master) };
    syscall!(grantpt(master))?;
    syscall!(unlockpt(master))?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most `len` bytes.
    let rc = unsafe { libc::ptsname_r(master, name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: `name` is NUL-terminated (ptsname_r succeeded).
    let slave = syscall!(open(name.as_ptr(), flags))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let s = unsafe { OwnedFd::from_raw_fd(slave) };
    set_raw(slave)?;
    Ok((m, s))
}

fn set_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it in.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    syscall!(tcgetattr(fd, &mut t))?;
    // SAFETY: cfmakeraw only edits the struct it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    syscall!(tcsetattr(fd, libc::TCSANOW, &t))?;
    Ok(())
}

/// Arrange for `cmd`'s child to start a new session with `tty` as its
/// controlling terminal, so programs that open `/dev/tty` find it. `tty`
/// must stay open until the child is spawned.
pub fn controlling_tty_on_exec(cmd: &mut std::process::Command, tty: &OwnedFd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd: RawFd = tty.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (setsid, ioctl) on a descriptor that is
    // open in the child because the parent holds it open until spawn.
    unsafe {
        cmd.pre_exec(move || {
            syscall!(setsid())?;
            syscall!(ioctl(fd, libc::TIOCSCTTY as _, 0))?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// L6: both ends are close-on-exec from the start.
    #[test]
    fn l6_both_ends_close_on_exec() {
        let (m, s) = super::openpty_raw().unwrap();
        for fd in [m.as_raw_fd(), s.as_raw_fd()] {
            // SAFETY: F_GETFD on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0, "fd {fd} flags {flags}");
        }
    }
}
