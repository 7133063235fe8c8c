//! Capture another thread's stack: signal it with a real-time signal whose
//! handler walks its own stack into a preallocated slot.
//!
//! The handler does only what is safe there: it compares its thread id,
//! claims the slot with one compare-and-swap, walks the stack with
//! `backtrace::trace_unsynchronized` (the system unwinder, no allocation,
//! no lock of ours), stores the return addresses in atomics and writes one
//! byte to a pipe. Symbols are resolved later, by the thread that asked.
//! The handler is installed with `SA_RESTART`, so system calls it
//! interrupts in the target thread go on.
//!
//! One capture runs at a time ([`capture`] holds a lock); a thread that
//! does not answer in time (the signal blocked, or the process stopped) is
//! reported as such, and a late answer is discarded.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Most frames kept per thread.
pub const MAX_FRAMES: usize = 128;

/// What the handler should capture: `(sequence << 32) | tid`, 0 when idle.
/// The handler claims it by swapping it to 0.
static TARGET: AtomicU64 = AtomicU64::new(0);
/// The capture's return addresses and how many there are.
static FRAMES: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];
static FRAME_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The sequence number of the capture held in [`FRAMES`].
static DONE: AtomicU64 = AtomicU64::new(0);
/// Write end of the pipe the handler signals completion on.
static NOTIFY_FD: AtomicI32 = AtomicI32::new(-1);

/// The pipe's ends and the next sequence number; held for one capture.
struct Capturer {
    read: OwnedFd,
    _write: OwnedFd,
    signal: libc::c_int,
    next: u64,
}

static CAPTURER: OnceLock<io::Result<Mutex<Capturer>>> = OnceLock::new();

/// The signal used: `SIGRTMIN + 7`, chosen away from the low real-time
/// signals libraries tend to take first.
fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: `__errno_location` returns this thread's errno slot, saved and
    // restored so the interrupted code sees no change.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let word = TARGET.load(Ordering::Acquire);
    if word != 0
        && word as u32 == tid
        && TARGET
            .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let mut n = 0;
        // SAFETY: `trace_unsynchronized` only requires that no other trace
        // runs concurrently in a way that breaks the unwinder's own state;
        // the system unwinder is reentrant for readers, and the claim above
        // lets one handler at a time write `FRAMES`. The closure neither
        // allocates nor locks.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                FRAMES[n].store(frame.ip() as usize, Ordering::Relaxed);
                n += 1;
                n < MAX_FRAMES
            });
        }
        FRAME_COUNT.store(n, Ordering::Relaxed);
        DONE.store(word >> 32, Ordering::Release);
        let fd = NOTIFY_FD.load(Ordering::Relaxed);
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `byte` outlives the call.
        // A full pipe (nobody reading) loses the byte, which is harmless.
        let _ = unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn install() -> io::Result<Mutex<Capturer>> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK))?;
    // SAFETY: pipe2 succeeded: both descriptors are open and ours.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    NOTIFY_FD.store(write.as_raw_fd(), Ordering::Relaxed);
    let signal = signal_number();
    // SAFETY: a zeroed sigaction is a valid "no handler" value to read into.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the current action only.
    syscall!(sigaction(signal, std::ptr::null(), &mut old))?;
    if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != on_signal as *const () as usize {
        return Err(io::Error::other(format!(
            "signal {signal} (SIGRTMIN+7), which stack dumps use, already has a handler in this program"
        )));
    }
    // SAFETY: as above; every field is set below or left empty.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid sigset to empty.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    syscall!(sigaction(signal, &action, std::ptr::null_mut()))?;
    Ok(Mutex::new(Capturer {
        read,
        _write: write,
        signal,
        next: 1,
    }))
}

/// The return addresses of thread `tid` of this process, innermost first
/// (the signal handler's own frames included), captured before `deadline`.
///
/// # Errors
/// The handler could not be installed, the thread is gone, or it did not
/// answer in time (it blocks the signal, or is stopped).
pub fn capture(tid: u32, deadline: Instant) -> io::Result<Vec<usize>> {
    let capturer = CAPTURER
        .get_or_init(install)
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    let mut c = capturer.lock().unwrap_or_else(|p| p.into_inner());
    // Bytes of late answers to earlier captures.
    let mut sink = [0u8; 64];
    while matches!(super::read(c.read.as_raw_fd(), &mut sink), Ok(n) if n > 0) {}
    let seq = c.next;
    c.next += 1;
    let word = (seq << 32) | u64::from(tid);
    TARGET.store(word, Ordering::Release);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if let Err(e) = syscall!(syscall(
        libc::SYS_tgkill,
        pid as libc::c_long,
        tid as libc::c_long,
        c.signal as libc::c_long
    )) {
        TARGET.store(0, Ordering::Release);
        return Err(e);
    }
    loop {
        if let Some(frames) = captured(seq) {
            return Ok(frames);
        }
        if !super::poll_readable(c.read.as_raw_fd(), deadline)? {
            break;
        }
        let _ = super::read(c.read.as_raw_fd(), &mut sink);
    }
    // Withdraw the request; if the handler claimed it meanwhile, it is
    // writing the frames now: give it a moment more.
    if TARGET
        .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        let grace = Instant::now() + std::time::Duration::from_millis(100);
        while super::poll_readable(c.read.as_raw_fd(), grace)? {
            let _ = super::read(c.read.as_raw_fd(), &mut sink);
            if let Some(frames) = captured(seq) {
                return Ok(frames);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the thread did not answer the stack-dump signal in time (it blocks the signal or is stopped)",
    ))
}

/// The frames of capture `seq`, once its handler has finished.
fn captured(seq: u64) -> Option<Vec<usize>> {
    if DONE.load(Ordering::Acquire) != seq {
        return None;
    }
    let n = FRAME_COUNT.load(Ordering::Relaxed).min(MAX_FRAMES);
    Some(
        FRAMES[..n]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect(),
    )
}

/// This thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}
