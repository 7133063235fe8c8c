//! Entering a running container's namespaces, root and user (the `setns`
//! connection method).
//!
//! Everything is prepared in the parent, before fork: the leader process is
//! pinned by a pidfd and its `/proc/<pid>` directory opened once, so later
//! lookups cannot land on another process that reused the pid; each
//! namespace that differs from ours is opened as a descriptor; the
//! container's root is opened as a directory descriptor; the user's ids and
//! home directory are resolved from the container's own files
//! ([`read_in_root`], which never follows a symlink out of the container).
//! The forked child then runs [`Entry::enter`], which only makes
//! async-signal-safe system calls on that prepared data, in this order:
//!
//! 1. `setns` into: user (only when the leader's differs from ours; entered
//!    first, so the remaining namespaces, owned by it, can be joined with
//!    the capabilities it grants), cgroup, ipc, uts, net, pid, mnt, time;
//! 2. `fchdir` to the leader's root, `chroot(".")`, `chdir("/")`;
//! 3. the leader's capability limits: every capability outside its
//!    bounding set is dropped from ours, ambient ones are cleared, the
//!    inheritable set is cut to its own (so a root context, or a setuid
//!    program run by one, has no more than the container's own processes,
//!    not the host's full set);
//! 4. `setgroups`, `setresgid`, `setresuid` (gid before uid, while we may
//!    still change it), `no_new_privs` when the leader has it, then `chdir`
//!    to the home directory when it exists;
//! 5. when a pid or time namespace was joined: `fork`. Those namespaces
//!    apply only to children of the caller (the caller itself stays where
//!    it was), so the exec'd program must be a child. The forked child
//!    asks for `SIGKILL` when its parent dies and goes on to exec, inside
//!    the namespaces. The parent (the process our caller spawned and
//!    reaps) closes every descriptor, including the standard library's
//!    exec-error pipe, so `spawn` returns as soon as the child execs, then
//!    waits for the child and ends the same way (same exit status, or the
//!    same signal). It runs only our own code: no program of the container
//!    ever runs outside the container's pid namespace, where it could
//!    signal the host's processes. (Python Mitogen uses the container's
//!    `/bin/sh` as that middle process.)
//!
//! A failing step writes `mitogen-setns: <step> failed: <errno name>` to
//! the child's stderr and exits with status 1, so the connection's error
//! quotes the step, not only an errno (and a refused step is not mistaken
//! for a missing program, as an error returned to `spawn` would be).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// One kind of Linux namespace, in the order [`Entry::enter`] joins them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// User and group ids, capabilities.
    User,
    /// The view of `/proc/self/cgroup`.
    Cgroup,
    /// System V IPC, POSIX message queues.
    Ipc,
    /// Host name and domain name.
    Uts,
    /// Network devices, addresses, ports.
    Net,
    /// Process ids (children only).
    Pid,
    /// Mounts.
    Mnt,
    /// Boot and monotonic clocks (children only).
    Time,
}

impl Namespace {
    /// All kinds, in joining order.
    pub const ORDER: [Namespace; 8] = [
        Namespace::User,
        Namespace::Cgroup,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Net,
        Namespace::Pid,
        Namespace::Mnt,
        Namespace::Time,
    ];

    /// The file name under `/proc/<pid>/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Cgroup => "cgroup",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Net => "net",
            Namespace::Pid => "pid",
            Namespace::Mnt => "mnt",
            Namespace::Time => "time",
        }
    }

    fn flag(self) -> libc::c_int {
        match self {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Mnt => libc::CLONE_NEWNS,
            Namespace::Time => 0x80, // CLONE_NEWTIME
        }
    }
}

/// A container's leader process, pinned: its pidfd and its `/proc/<pid>`
/// directory, opened while the pidfd showed it alive.
#[derive(Debug)]
pub struct Leader {
    pid: u32,
    pidfd: OwnedFd,
    proc_dir: OwnedFd,
}

impl Leader {
    /// Pin process `pid`. Fails with `NotFound` when it does not exist.
    pub fn open(pid: u32) -> io::Result<Leader> {
        let pidfd = super::pidfd_open(pid)?;
        let path = CString::new(format!("/proc/{pid}")).expect("no NUL in a number");
        let proc_dir = open_at(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY)?;
        let leader = Leader {
            pid,
            pidfd,
            proc_dir,
        };
        // Alive after `proc_dir` was opened: the directory is this
        // process's, not that of one that reused the pid before.
        if !leader.is_alive() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(leader)
    }

    /// Its process id, as seen from here.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        // SAFETY: pidfd_send_signal with signal 0 only checks for existence;
        // the null siginfo is allowed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        rc == 0
    }

    /// Its namespace of kind `ns`, when it differs from the calling
    /// thread's; `None` when it is the same or the kernel lacks the kind.
    pub fn namespace_if_other(&self, ns: Namespace) -> io::Result<Option<OwnedFd>> {
        let rel = CString::new(format!("ns/{}", ns.name())).expect("no NUL");
        let theirs = match read_link_at(self.proc_dir.as_raw_fd(), &rel) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let own = CString::new(format!("/proc/thread-self/ns/{}", ns.name())).expect("no NUL");
        match read_link_at(libc::AT_FDCWD, &own) {
            Ok(ours) if ours == theirs => return Ok(None),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        open_at(self.proc_dir.as_raw_fd(), &rel, libc::O_RDONLY).map(Some)
    }

    #[cfg(test)]
    /// The `/proc/<pid>/ns/<kind>` link text (e.g. `pid:[4026532255]`).
    pub fn namespace_id(&self, ns: Namespace) -> io::Result<String> {
        let rel = CString::new(format!("ns/{}", ns.name())).expect("no NUL");
        read_link_at(self.proc_dir.as_raw_fd(), &rel)
    }

    /// Its root directory, as a directory descriptor.
    pub fn root(&self) -> io::Result<OwnedFd> {
        open_at(
            self.proc_dir.as_raw_fd(),
            c"root",
            libc::O_PATH | libc::O_DIRECTORY,
        )
    }
}

/// The capability limits of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `CapBnd`: capabilities it can ever gain.
    pub bounding: u64,
    /// `CapInh`: capabilities kept across exec.
    pub inheritable: u64,
    /// `NoNewPrivs`: setuid programs do not raise privileges.
    pub no_new_privs: bool,
}

impl Limits {
    /// Parse the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Option<Limits> {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        Some(Limits {
            bounding: u64::from_str_radix(field("CapBnd:")?, 16).ok()?,
            inheritable: u64::from_str_radix(field("CapInh:")?, 16).ok()?,
            no_new_privs: field("NoNewPrivs:") == Some("1"),
        })
    }
}

impl Leader {
    /// Its capability limits.
    pub fn limits(&self) -> io::Result<Limits> {
        let fd = open_at(self.proc_dir.as_raw_fd(), c"status", libc::O_RDONLY)?;
        let mut text = String::new();
        io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)?;
        Limits::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no CapBnd or CapInh in its /proc status",
            )
        })
    }
}

/// `openat(dir, path, flags | O_CLOEXEC | O_NOCTTY)`.
fn open_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let fd = syscall!(openat(
        dir,
        path.as_ptr(),
        flags | libc::O_CLOEXEC | libc::O_NOCTTY
    ))?;
    // SAFETY: openat returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_link_at(dir: RawFd, path: &CStr) -> io::Result<String> {
    let mut buf = [0u8; 256];
    let n = syscall!(readlinkat(
        dir,
        path.as_ptr(),
        buf.as_mut_ptr().cast(),
        buf.len()
    ))?;
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Read the regular file `path` (relative) under the directory `root` as if
/// `root` were `/`: symlinks and `..` inside the tree resolve within it
/// (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`), so a hostile
/// container cannot point us at the host's files. Refuses anything but a
/// regular file (a FIFO would block us) and files over `limit` bytes.
pub fn read_in_root(root: &OwnedFd, path: &str, limit: usize) -> io::Result<Vec<u8>> {
    let fd = open_in_root(root, path, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} is not a regular file"),
        ));
    }
    if meta.len() > limit as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} is larger than {limit} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(file, limit as u64 + 1), &mut out)?;
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} grew past {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Whether `path` (relative) under `root`, resolved as in [`read_in_root`],
/// is a regular file (e.g. the container's `bin/sh`, through its symlinks).
pub fn exists_in_root(root: &OwnedFd, path: &str) -> bool {
    open_in_root(root, path, libc::O_PATH)
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

/// Whether `path` (relative) under `root`, resolved as in [`read_in_root`],
/// is a procfs mount (where `/proc/self/exe` works).
pub fn is_procfs_in_root(root: &OwnedFd, path: &str) -> bool {
    let Ok(fd) = open_in_root(root, path, libc::O_PATH | libc::O_DIRECTORY) else {
        return false;
    };
    // SAFETY: statfs is plain data; fstatfs fills it in for an open descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if syscall!(fstatfs(fd.as_raw_fd(), &mut st)).is_err() {
        return false;
    }
    // The two types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    let procfs = st.f_type as i64 == libc::PROC_SUPER_MAGIC as i64;
    procfs
}

/// `openat2(root, path, flags)` resolving as if `root` were `/`.
fn open_in_root(root: &OwnedFd, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // openat2 refuses flags that mean nothing with O_PATH (O_NOCTTY).
    let extra = if flags & libc::O_PATH != 0 {
        0
    } else {
        libc::O_NOCTTY
    };
    how.flags = (flags | extra | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `how` (of the size given) and the NUL-terminated
    // path; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The user to become inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (the primary one included).
    pub groups: Vec<u32>,
    /// Home directory, entered when it exists.
    pub home: Option<CString>,
}

/// A step of [`Entry::enter`], as reported when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `setns` into this namespace.
    Setns(Namespace),
    /// `fchdir` to the leader's root and `chroot` there.
    Chroot,
    /// Limiting the capabilities to the leader's.
    Capabilities,
    /// `setgroups`.
    SetGroups,
    /// `setresgid`.
    SetGid,
    /// `setresuid`.
    SetUid,
    /// `fork` into the pid namespace.
    Fork,
}

impl Step {
    /// What the step does, in words.
    pub fn text(self) -> &'static str {
        match self {
            Step::Setns(Namespace::User) => "entering the container's user namespace",
            Step::Setns(Namespace::Cgroup) => "entering the container's cgroup namespace",
            Step::Setns(Namespace::Ipc) => "entering the container's ipc namespace",
            Step::Setns(Namespace::Uts) => "entering the container's uts namespace",
            Step::Setns(Namespace::Net) => "entering the container's net namespace",
            Step::Setns(Namespace::Pid) => "entering the container's pid namespace",
            Step::Setns(Namespace::Mnt) => "entering the container's mnt namespace",
            Step::Setns(Namespace::Time) => "entering the container's time namespace",
            Step::Chroot => "changing root to the container's",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
            Step::Fork => "forking into the container's pid namespace",
            Step::Capabilities => "limiting capabilities to the container's",
        }
    }
}

/// A raw `syscall(2)` return as a result: `-1` reads `errno`.
fn raw_result(rc: libc::c_long) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as libc::c_int)
    }
}

/// A name and meaning for the errno values the steps can fail with.
fn errno_name(errno: libc::c_int) -> &'static str {
    match errno {
        libc::EPERM => "EPERM (operation not permitted)",
        libc::EACCES => "EACCES (permission denied)",
        libc::EINVAL => "EINVAL (invalid argument)",
        libc::ENOENT => "ENOENT (no such file or directory)",
        libc::ENOTDIR => "ENOTDIR (not a directory)",
        libc::EBADF => "EBADF (bad file descriptor)",
        libc::ENOMEM => "ENOMEM (out of memory)",
        libc::EAGAIN => "EAGAIN (resource temporarily unavailable)",
        libc::EUSERS => "EUSERS (too many users)",
        libc::ENOSPC => "ENOSPC (no space left)",
        _ => "another error",
    }
}

/// Everything the child needs to enter a container, prepared before fork.
/// The descriptors stay open as long as the `Entry` lives: keep it alive
/// until the program is spawned.
#[derive(Debug)]
pub struct Entry {
    namespaces: Vec<(Namespace, OwnedFd)>,
    root: OwnedFd,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    home: Option<CString>,
    limits: Limits,
}

impl Entry {
    /// Prepare to enter `leader`'s namespaces (those that differ from
    /// ours) and root as `creds`.
    pub fn new(leader: &Leader, creds: Credentials) -> io::Result<Entry> {
        let mut namespaces = Vec::new();
        for ns in Namespace::ORDER {
            if let Some(fd) = leader.namespace_if_other(ns)? {
                namespaces.push((ns, fd));
            }
        }
        Ok(Entry {
            namespaces,
            root: leader.root()?,
            uid: creds.uid,
            gid: creds.gid,
            groups: creds.groups,
            home: creds.home,
            limits: leader.limits()?,
        })
    }

    /// Whether a namespace is entered that applies only to children (pid,
    /// time), so [`enter`](Entry::enter) forks once more.
    pub fn needs_fork(&self) -> bool {
        self.namespaces
            .iter()
            .any(|(ns, _)| matches!(ns, Namespace::Pid | Namespace::Time))
    }

    /// Whether namespace `ns` is one that will be entered (the leader's
    /// differs from ours).
    pub fn enters(&self, ns: Namespace) -> bool {
        self.namespaces.iter().any(|(n, _)| *n == ns)
    }

    /// Enter, in the forked child before exec. Async-signal-safe: system
    /// calls on prepared data only, no allocation.
    pub fn enter(&self) -> io::Result<()> {
        for (ns, fd) in &self.namespaces {
            self.step(Step::Setns(*ns), syscall!(setns(fd.as_raw_fd(), ns.flag())))?;
        }
        self.step(Step::Chroot, syscall!(fchdir(self.root.as_raw_fd())))?;
        self.step(Step::Chroot, syscall!(chroot(c".".as_ptr())))?;
        self.step(Step::Chroot, syscall!(chdir(c"/".as_ptr())))?;
        self.limit_capabilities()?;
        self.step(
            Step::SetGroups,
            syscall!(setgroups(self.groups.len(), self.groups.as_ptr())),
        )?;
        self.step(
            Step::SetGid,
            syscall!(setresgid(self.gid, self.gid, self.gid)),
        )?;
        self.step(
            Step::SetUid,
            syscall!(setresuid(self.uid, self.uid, self.uid)),
        )?;
        if self.limits.no_new_privs {
            self.step(
                Step::Capabilities,
                syscall!(prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
            )?;
        }
        if let Some(home) = &self.home {
            // A missing or unreadable home is not an error: stay in `/`.
            let _ = syscall!(chdir(home.as_ptr()));
        }
        if self.needs_fork() {
            self.fork_inside()?;
        }
        Ok(())
    }

    /// Cut our capabilities to the leader's limits (before the ids change:
    /// dropping from the bounding set needs `CAP_SETPCAP`).
    fn limit_capabilities(&self) -> io::Result<()> {
        for cap in 0..64 {
            if self.limits.bounding & (1u64 << cap) != 0 {
                continue;
            }
            match syscall!(prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)) {
                // Past the kernel's last capability.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                other => self.step(Step::Capabilities, other)?,
            }
        }
        let clear = syscall!(prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0
        ));
        self.step(Step::Capabilities, clear)?;
        let mut header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: capget fills two CapData structs (version 3) and reads the header.
        let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        self.step(Step::Capabilities, raw_result(got))?;
        data[0].inheritable &= self.limits.inheritable as u32;
        data[1].inheritable &= (self.limits.inheritable >> 32) as u32;
        // SAFETY: capset reads the header and two CapData structs (version 3).
        let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        self.step(Step::Capabilities, raw_result(set))
    }

    /// Fork; in the parent, wait for the child and end as it ends (never
    /// returns); in the child, return to go on to exec.
    fn fork_inside(&self) -> io::Result<()> {
        // SAFETY: getpid has no preconditions.
        let middle = unsafe { libc::getpid() };
        let child = match syscall!(fork()) {
            Ok(pid) => pid,
            Err(e) => return self.step(Step::Fork, Err(e)),
        };
        if child == 0 {
            // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number; getppid
            // has no preconditions. A parent outside our pid namespace reads
            // as 0: any other value means it already died and we were
            // adopted, so the death signal will never come.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                let ppid = libc::getppid();
                if ppid != 0 && ppid != middle {
                    libc::_exit(1);
                }
            }
            return Ok(());
        }
        // SAFETY: from here this process only closes its descriptors, waits
        // for its child and exits; it never returns into the standard
        // library's child code. All calls are async-signal-safe.
        unsafe {
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..4096 {
                    libc::close(fd);
                }
            }
            let mut status = 0;
            loop {
                if libc::waitpid(child, &mut status, 0) == child {
                    break;
                }
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                libc::signal(sig, libc::SIG_DFL);
                libc::kill(middle, sig);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
    }

    /// Pass `res` through; when it failed, say which step on stderr and
    /// exit with status 1 (never returns).
    fn step(&self, step: Step, res: io::Result<libc::c_int>) -> io::Result<()> {
        let Err(e) = res else { return Ok(()) };
        let mut buf = [0u8; 160];
        let mut n = 0;
        for part in [
            "mitogen-setns: ",
            step.text(),
            " failed: ",
            errno_name(e.raw_os_error().unwrap_or(0)),
            "\n",
        ] {
            let take = part.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&part.as_bytes()[..take]);
            n += take;
        }
        // SAFETY: write(2) from a live stack buffer and _exit(2) are
        // async-signal-safe; nothing of the standard library's child code
        // runs after this.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), n);
            libc::_exit(1)
        }
    }

    /// The step to run between fork and exec: [`enter`](Entry::enter).
    /// The entry, with its descriptors, lives as long as the step.
    pub fn into_pre_exec(self) -> super::PreExec {
        // SAFETY: `enter` makes only async-signal-safe system calls on
        // descriptors and buffers the closure owns, prepared before the fork.
        unsafe { super::PreExec::new(move || self.enter()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_words() {
        let mut all: Vec<Step> = Namespace::ORDER.into_iter().map(Step::Setns).collect();
        all.extend([
            Step::Chroot,
            Step::SetGroups,
            Step::SetGid,
            Step::SetUid,
            Step::Fork,
            Step::Capabilities,
        ]);
        for s in all {
            assert!(s.text().len() < 60, "{s:?} fits the message buffer");
        }
        assert!(errno_name(libc::EPERM).starts_with("EPERM"));
    }

    #[test]
    fn limits_are_read_from_proc_status() {
        let status = "Name:\tsleep\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
                      CapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\n";
        let l = Limits::parse(status).unwrap();
        assert_eq!(l.bounding, 0xa80425fb);
        assert_eq!(l.inheritable, 0);
        assert!(l.no_new_privs);
        assert_eq!(Limits::parse("CapInh:\t0\n"), None, "no CapBnd: refused");
        let me = Leader::open(std::process::id()).unwrap();
        assert!(me.limits().is_ok());
    }

    #[test]
    fn our_own_namespaces_are_not_entered_again() {
        let me = Leader::open(std::process::id()).unwrap();
        for ns in Namespace::ORDER {
            assert!(me.namespace_if_other(ns).unwrap().is_none(), "{ns:?}");
        }
        assert!(me.is_alive());
    }

    #[test]
    fn a_missing_leader_is_not_found() {
        // Pids above pid_max never exist.
        let e = Leader::open(i32::MAX as u32).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e}");
    }

    fn tree() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mitogen-setns-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        d
    }

    fn open_dir(p: &std::path::Path) -> OwnedFd {
        std::fs::File::open(p).unwrap().into()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tree();
        std::fs::write(d.join("etc/real"), "inside\n").unwrap();
        // Absolute and `..`-escaping links both stay in the tree.
        std::os::unix::fs::symlink("/etc/real", d.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/real", d.join("etc/group")).unwrap();
        let root = open_dir(&d);
        assert_eq!(read_in_root(&root, "etc/passwd", 100).unwrap(), b"inside\n");
        assert!(exists_in_root(&root, "etc/group"));
        assert!(!exists_in_root(&root, "etc"), "a directory is not a file");
        assert!(!is_procfs_in_root(&root, "etc"));
        let slash = open_dir(std::path::Path::new("/"));
        assert!(is_procfs_in_root(&slash, "proc"));
        assert_eq!(read_in_root(&root, "etc/group", 100).unwrap(), b"inside\n");
        // A link to a host file that does not exist in the tree fails.
        std::os::unix::fs::symlink("/etc/hostname", d.join("etc/host")).unwrap();
        let e = read_in_root(&root, "etc/host", 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fifos_and_large_files_are_refused() {
        let d = tree();
        let fifo =
            CString::new(d.join("etc/passwd").into_os_string().into_encoded_bytes()).unwrap();
        syscall!(mkfifo(fifo.as_ptr(), 0o600)).unwrap();
        std::fs::write(d.join("etc/group"), vec![b'x'; 101]).unwrap();
        let root = open_dir(&d);
        let e = read_in_root(&root, "etc/passwd", 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_in_root(&root, "etc/group", 100).unwrap_err();
        assert!(e.to_string().contains("larger than 100"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
