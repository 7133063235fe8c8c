//! Pseudo-terminals for programs that type passwords (ssh, sudo, su, doas).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A new pseudo-terminal `(master, slave)`, both close-on-exec, the slave in
/// raw mode so binary data passes through untouched.
pub fn openpty_raw() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors into the provided locations; the
    // name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both descriptors are open and ours.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [master, slave] {
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
    }
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
