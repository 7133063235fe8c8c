//! File descriptor plumbing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// A connected pair of `AF_UNIX` stream sockets, both close-on-exec.
pub fn socketpair_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Large buffers mean fewer wake-ups per large message; the kernel caps
    // them at net.core.{w,r}mem_max, and failure is harmless.
    for fd in fds {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            let size: libc::c_int = 4 << 20;
            let _ = syscall!(setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t
            ));
        }
    }
    Ok(pair)
}

/// A pipe `(read, write)`, both close-on-exec.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Duplicate `fd` to a new close-on-exec descriptor numbered 3 or higher.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    let new = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))?;
    // SAFETY: fcntl returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Set or clear `O_NONBLOCK`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    syscall!(fcntl(fd, libc::F_SETFL, flags))?;
    Ok(())
}

/// Wait until `fd` is readable (or hung up) or `deadline` passes.
/// Returns `Ok(false)` on timeout.
pub fn poll_readable(fd: RawFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let ms = ms_until(deadline);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        match syscall!(poll(&mut pfd, 1, ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write all of `buf` to a possibly non-blocking `fd`, waiting with poll(2)
/// when it would block.
pub fn write_all_blocking(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    write_all(fd, buf, None)
}

/// Write all of `buf` to a non-blocking `fd`, waiting with poll(2) when it
/// would block, but not past `deadline`: then fails with
/// [`io::ErrorKind::TimedOut`] (the reader stopped reading). A blocking
/// `fd` can block in write(2) whatever the deadline.
pub fn write_all_deadline(fd: RawFd, buf: &[u8], deadline: Instant) -> io::Result<()> {
    write_all(fd, buf, Some(deadline))
}

fn write_all(fd: RawFd, mut buf: &[u8], deadline: Option<Instant>) -> io::Result<()> {
    while !buf.is_empty() {
        match syscall!(write(fd, buf.as_ptr().cast(), buf.len())) {
            Ok(n) => buf = &buf[n as usize..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ms = match deadline {
                    None => -1,
                    Some(d) if Instant::now() >= d => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} bytes were still unwritten", buf.len()),
                        ));
                    }
                    Some(d) => ms_until(d),
                };
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                match syscall!(poll(&mut pfd, 1, ms)) {
                    Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                    _ => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// poll(2)'s timeout for `deadline`: the milliseconds left, rounded up
/// (rounding down would spin through the last millisecond).
fn ms_until(deadline: Instant) -> libc::c_int {
    let left = deadline.saturating_duration_since(Instant::now());
    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
}

/// Point fd 0 at `/dev/null`.
fn null_stdin() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    syscall!(dup2(null.as_raw_fd(), 0))?;
    Ok(())
}

/// In a freshly started child: move the parent stream (fds 0 and 1) to
/// private descriptors, point 0 at `/dev/null` and 1 and 2 at new pipes whose
/// read ends are returned, so stray output of user code is forwarded as log
/// lines instead of corrupting the stream. Returns `(stream_in, stream_out,
/// stdout_reader, stderr_reader)`.
pub fn move_stdio_aside() -> io::Result<(OwnedFd, OwnedFd, OwnedFd, OwnedFd)> {
    let stream_in = dup_cloexec(0)?;
    let stream_out = dup_cloexec(1)?;
    let (out_r, out_w) = pipe_cloexec()?;
    let (err_r, err_w) = pipe_cloexec()?;
    null_stdin()?;
    syscall!(dup2(out_w.as_raw_fd(), 1))?;
    syscall!(dup2(err_w.as_raw_fd(), 2))?;
    Ok((stream_in, stream_out, out_r, err_r))
}

/// Wait until any of `fds` is readable (or hung up) or `deadline` passes;
/// returns which are ready (all `false` on timeout). Negative entries are ignored.
pub fn poll_many(fds: &[RawFd], deadline: Instant) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let ms = ms_until(deadline);
        match syscall!(poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(vec![false; fds.len()]),
            Ok(0) => continue,
            Ok(_) => return Ok(pfds.iter().map(|p| p.revents != 0).collect()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `writev(2)` of up to 1024 slices (Linux's IOV_MAX).
pub fn writev(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(1024) as libc::c_int;
    loop {
        // IoSlice is ABI-compatible with iovec on Unix.
        match syscall!(writev(fd, bufs.as_ptr().cast(), n)) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Half-close a socket for writing; for anything that is not a socket, does nothing
/// and returns `false` (the caller then closes the descriptor instead).
pub fn shutdown_write(fd: RawFd) -> bool {
    syscall!(shutdown(fd, libc::SHUT_WR)).is_ok()
}
