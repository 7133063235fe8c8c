//! What the `fork` method's zygote needs from the system: forking (only
//! while single-threaded), descriptor passing over `AF_UNIX` sockets
//! (`SCM_RIGHTS`), and a few process settings.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 4;

/// A connected pair of `AF_UNIX` sequenced-packet sockets (message
/// boundaries kept), both close-on-exec.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for the control message of [`MAX_FDS`] descriptors, aligned for
/// `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Send `data` and `fds` (at most [`MAX_FDS`]) as one message on `sock`.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} descriptors, at most {MAX_FDS} per message", fds.len()),
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as libc::c_uint;
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        assert!(space <= cmsg.0.len(), "control buffer too small");
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes, so
        // the first header and its data (CMSG_LEN(payload) <= space) fit.
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(hdr),
                payload as usize,
            );
        }
    }
    loop {
        match syscall!(sendmsg(sock, &msg, libc::MSG_NOSIGNAL)) {
            Ok(n) if n as usize == data.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {n} of {} bytes", data.len()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receive one message into `buf`: its length (0 at end of file) and the
/// descriptors it carried, close-on-exec. A message whose descriptors did
/// not all fit, or that was cut short, is an error (its descriptors are
/// closed).
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len() as _;
    let n = loop {
        match syscall!(recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC)) {
            Ok(n) => break n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed headers up to
    // msg_controllen; CMSG_FIRSTHDR/NXTHDR stay within it, and each
    // SCM_RIGHTS payload is an array of new descriptors that we now own.
    unsafe {
        let mut hdr = libc::CMSG_FIRSTHDR(&msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let len = (*hdr).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(hdr);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            hdr = libc::CMSG_NXTHDR(&msg, hdr);
        }
    }
    if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message or its descriptors were cut short",
        ));
    }
    Ok((n, fds))
}

/// Threads of this process, counted in `/proc/self/task`.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// What [`fork_single_threaded`] returns on each side.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// In the new process.
    Child,
    /// In the original process: the new process's pid.
    Parent(u32),
}

/// fork(2), refused unless this process has exactly one thread.
///
/// Forking a multithreaded process copies only the calling thread: locks
/// other threads held (the allocator's, stdio's) stay locked forever in
/// the copy. With a single thread there is no other thread to hold them,
/// and none can appear between the check and the fork, since only this
/// thread could start one.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let n = thread_count()?;
    if n != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {n} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked just above, and
    // nothing else can start one meanwhile), so the child gets a
    // consistent copy of every lock and of the heap.
    match syscall!(fork())? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Make `new` a copy of `old` (dup2), without close-on-exec.
pub fn dup_onto(old: RawFd, new: RawFd) -> io::Result<()> {
    syscall!(dup2(old, new))?;
    Ok(())
}

/// Point descriptor `fd` at `/dev/null`.
pub fn null_onto(fd: RawFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    dup_onto(null.as_raw_fd(), fd)
}

/// Ignore SIGCHLD, so the kernel reaps children at once (no zombies), or
/// restore its default (waitpid works again).
pub fn auto_reap_children(on: bool) {
    let disposition = if on { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: setting a signal disposition to SIG_IGN or SIG_DFL has no
    // memory effects.
    unsafe {
        libc::signal(libc::SIGCHLD, disposition);
    }
}

/// Wait until this process has no child left (with SIGCHLD ignored, the
/// kernel reaps them and wait(2) returns only when none is left).
pub fn wait_all_children() {
    loop {
        let mut status = 0;
        match syscall!(waitpid(-1, &mut status, 0)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Set this thread's name as `ps` and `/proc/<pid>/comm` show it (cut to
/// 15 bytes; a name with a NUL byte is ignored).
pub fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    let bytes = name.as_bytes();
    if bytes.contains(&0) {
        return;
    }
    let n = bytes.len().min(15);
    buf[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes; `buf` is 16 bytes with a NUL at index 15 at the latest.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_cross_a_socket_and_arrive_close_on_exec() {
        let (a, b) = seqpacket_pair().unwrap();
        let (r, w) = crate::sys::pipe_cloexec().unwrap();
        send_with_fds(a.as_raw_fd(), b"hello", &[r.as_raw_fd(), w.as_raw_fd()]).unwrap();
        drop((r, w));
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            // SAFETY: F_GETFD on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0, "flags {flags}");
        }
        // The received pipe works: write on one end, read on the other.
        crate::sys::write_all_blocking(fds[1].as_raw_fd(), b"x").unwrap();
        let mut one = [0u8; 1];
        assert_eq!(crate::sys::read(fds[0].as_raw_fd(), &mut one).unwrap(), 1);
        assert_eq!(&one, b"x");
    }

    #[test]
    fn end_of_file_reads_as_an_empty_message() {
        let (a, b) = seqpacket_pair().unwrap();
        drop(a);
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_refused() {
        let (a, b) = seqpacket_pair().unwrap();
        send_with_fds(a.as_raw_fd(), &[7u8; 32], &[]).unwrap();
        let mut buf = [0u8; 8];
        let e = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn too_many_descriptors_are_refused_before_sending() {
        let (a, _b) = seqpacket_pair().unwrap();
        let e = send_with_fds(a.as_raw_fd(), b"x", &[0; MAX_FDS + 1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fork_is_refused_with_threads_running() {
        // The test harness runs tests on threads: this process has several.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let e = fork_single_threaded().unwrap_err();
        assert!(e.to_string().starts_with("refusing to fork"), "{e}");
        drop(tx);
        t.join().unwrap();
    }
}
