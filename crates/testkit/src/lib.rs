//! Test support for mitogen-rs (not published): bounded waits and process
//! and descriptor inspection through `/proc`, and the fixture for tests
//! against the real ssh, sudo, su and doas (`docs/testing.md`):
//!
//! * [`fixture`]: the users and rules `scripts/fixture/setup.sh` creates,
//!   and skipping (`SKIP <test>: <reason>`) when they are missing;
//! * [`sshd`]: a throwaway OpenSSH server on 127.0.0.1;
//! * [`silent`]: a TCP peer that never answers (connect timeouts);
//! * [`pty`]: running a command on a pseudo-terminal and answering prompts;
//! * [`docker`]: the project's container images and a container guard;
//! * [`Tmpfs`]: a tmpfs mounted for one test.

pub mod docker;
pub mod fixture;
pub mod pty;
pub mod silent;
pub mod sshd;
mod tempdir;
mod tmpfs;

pub use tmpfs::Tmpfs;

use std::time::{Duration, Instant};

/// Poll `done` until it returns `true`; panic naming `what` after `timeout`.
/// For conditions no event announces (a foreign process exiting), with a
/// hard bound and a clear failure message.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `true` when no process (not even a zombie) has this pid.
pub fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// State letter of a process from `/proc/<pid>/stat` (`Z` for a zombie).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Pids of this process's children.
pub fn child_pids() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path().join("children");
        if let Ok(s) = std::fs::read_to_string(path) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// Number of open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `true` when running as root (tests that mount or add users need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Put a `uname` in `dir/bin` that answers `uname -m` with `machine` (a
/// shell word: `"${FAKE_MACHINE:-fakearch}"` works) and runs the real one
/// otherwise, and put `dir/bin` first on this process's `PATH`, so first
/// stages started from here see another architecture. The whole process
/// sees it: call it only in a test binary of its own.
///
/// # Examples
/// ```no_run
/// let dir = std::path::Path::new("/tmp/my-test-dir");
/// mitogen_testkit::fake_uname_first_on_path(dir, "sparc64");
/// ```
pub fn fake_uname_first_on_path(dir: &std::path::Path, machine: &str) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uname = bin.join("uname");
    std::fs::write(
        &uname,
        format!(
            "#!/bin/sh\ncase \"$1\" in -m) echo {machine};; *) exec /bin/uname \"$@\";; esac\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);
}

/// The SHA-256 of this test executable (its cache name), by `sha256sum`.
pub fn own_sha256() -> String {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&exe)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Make `dir` private (mode 0700, as the first stage requires) and plant
/// there a cache entry under this executable's SHA-256 and of its size
/// that greets with `MITOGEN-HELLO:<nonce>:<hello>` and sleeps: what
/// another build of the program in the cache would say (`hello` is
/// `<protocol>:<table hash>[:<version>]`). The padding after the script
/// is never read.
///
/// # Examples
/// ```no_run
/// let dir = std::path::Path::new("/tmp/my-cache");
/// mitogen_testkit::plant_other_build(dir, "1:0123456789abcdef:0.0.1");
/// ```
pub fn plant_other_build(dir: &std::path::Path, hello: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut fake =
        format!("#!/bin/sh\necho \"MITOGEN-HELLO:${{MITOGEN_CHILD%%:*}}:{hello}\"\nexec sleep 5\n")
            .into_bytes();
    let exe = std::env::current_exe().unwrap();
    fake.resize(std::fs::metadata(&exe).unwrap().len() as usize, b'#');
    let planted = dir.join(own_sha256());
    std::fs::write(&planted, fake).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).unwrap();
}
