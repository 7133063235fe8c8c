//! The ssh target the ssh workloads and raw baselines use, and the
//! byte-counting wrapper around `ssh`.
//!
//! The runner starts one throw-away sshd for the whole run
//! ([`Fixture::start`], `mitogen_testkit::sshd::Sshd` on 127.0.0.1) and
//! hands the same [`Target`] to the Python script and to `__ours` as a JSON
//! argument (`--ssh '{...}'`). Every ssh invocation, ours, Python Mitogen's
//! and the raw ones, logs in as [`USER`] with the fixture's client key,
//! checks the host key strictly against the fixture's known_hosts file and
//! reads no ssh config (`-F /dev/null`); compression is on (ssh `-C` /
//! `-o Compression yes`, both libraries' default).
//!
//! Bytes on the wire: the runner writes a tiny shell script, `ssh-count`,
//! that execs this binary as `__ssh-count <count dir> ssh <args...>`
//! ([`count_main`]). That relay runs the real ssh with its stdin on a pipe,
//! copies its own stdin (the library's socket) into that pipe and, before
//! forwarding each chunk, rewrites `<count dir>/<pid>` with
//! `<argv bytes> <stdin bytes>`. A workload points the library's `ssh_path`
//! at the script, connects, makes one call, and reads the file as soon as
//! the reply is back ([`read_counts`]).

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use mitogen_testkit::fixture;
use mitogen_testkit::sshd::Sshd;
use serde_json::{json, Value};

/// The user every ssh workload logs in as.
pub const USER: &str = fixture::USER_A.name;

/// Where and how to reach the ssh target.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Client private key (root-owned 0600; the clients run as root).
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// The `ssh-count` wrapper script (use as `ssh_path`).
    pub wrapper: PathBuf,
    /// Where the wrapper leaves its counts.
    pub count_dir: PathBuf,
}

impl Target {
    pub fn to_json(&self) -> String {
        json!({
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key": self.key,
            "known_hosts": self.known_hosts,
            "wrapper": self.wrapper,
            "count_dir": self.count_dir,
        })
        .to_string()
    }

    pub fn from_json(s: &str) -> Result<Target, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| format!("--ssh: {e}"))?;
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or(format!("--ssh: {k} missing"))
        };
        Ok(Target {
            host: s("host")?,
            port: v["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("--ssh: port missing")?,
            user: s("user")?,
            key: s("key")?.into(),
            known_hosts: s("known_hosts")?.into(),
            wrapper: s("wrapper")?.into(),
            count_dir: s("count_dir")?.into(),
        })
    }

    /// The arguments both libraries get as `ssh_args` (Python: the same
    /// list): no config file, host keys checked against the fixture's file
    /// only.
    pub fn extra_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
        ]
    }

    /// A plain ssh command line equivalent to what the libraries run, up to
    /// and including the host (the raw baselines append `true` or `cat`).
    pub fn raw_command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-l", &self.user, "-p", &self.port.to_string()])
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "IdentitiesOnly=yes", "-C"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(self.extra_args())
            .arg(&self.host);
        cmd
    }
}

/// The sshd and the wrapper directory, alive for the whole run.
pub struct Fixture {
    // Dropped first: stops sshd and every session below it.
    _sshd: Sshd,
    dir: PathBuf,
    pub target: Target,
}

impl Fixture {
    /// `Err(reason)` when the machine fixture is missing or sshd won't start.
    pub fn start() -> Result<Fixture, String> {
        Sshd::available()?;
        let sshd = Sshd::start().map_err(|e| format!("starting sshd: {e}"))?;
        let dir = fresh_dir("mitogen-bench-ssh").map_err(|e| e.to_string())?;
        let count_dir = dir.join("counts");
        let wrapper = dir.join("ssh-count");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let setup = || -> io::Result<()> {
            std::fs::create_dir(&count_dir)?;
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec {} __ssh-count {} ssh \"$@\"\n",
                    sh_quote(&exe.to_string_lossy()),
                    sh_quote(&count_dir.to_string_lossy())
                ),
            )?;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        };
        setup().map_err(|e| format!("{}: {e}", dir.display()))?;
        let target = Target {
            host: mitogen_testkit::sshd::HOST.into(),
            port: sshd.port(),
            user: USER.into(),
            key: sshd.client_key(),
            known_hosts: sshd.known_hosts_file(),
            wrapper,
            count_dir,
        };
        // One login up front: fails early with sshd's log if anything is off.
        let out = target
            .raw_command()
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh {USER}@127.0.0.1 true failed: {}\nsshd log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                sshd.log()
            ));
        }
        Ok(Fixture {
            _sshd: sshd,
            dir,
            target,
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A new directory `/tmp/<prefix>.<pid>.<n>`, mode 0755.
pub fn fresh_dir(prefix: &str) -> io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}.{}.{n}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Empties the count directory before a measured session.
pub fn clear_counts(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        std::fs::remove_file(e?.path())?;
    }
    Ok(())
}

/// Bytes on the wire so far for the one session in the count directory:
/// argv bytes + stdin bytes. `None` unless exactly one wrapper ran.
pub fn read_counts(dir: &Path) -> io::Result<Option<u64>> {
    let mut total = None;
    for e in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(e?.path())?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(argv)), Some(Ok(stdin))) = (it.next(), it.next()) else {
            return Ok(None);
        };
        if total.is_some() {
            return Ok(None);
        }
        total = Some(argv + stdin);
    }
    Ok(total)
}

/// `__ssh-count COUNT_DIR PROGRAM ARGS...`: run PROGRAM with ARGS, its
/// stdin and stdout pipes relayed to and from ours, its stderr ours. Before
/// forwarding each chunk of stdin, rewrite `COUNT_DIR/<our pid>` with
/// `<argv bytes> <stdin bytes so far>`, where argv bytes = Σ (len + 1) over
/// ARGS (what ssh gets, NUL terminators included, the program name not).
/// Exits with PROGRAM's status.
///
/// stdout is relayed too, not inherited: ssh makes its stdin and stdout
/// non-blocking, and our stdin and stdout are one socket (one open file
/// description), so an inherited stdout would turn our stdin non-blocking
/// under us.
pub fn count_main(args: &[String]) -> io::Result<i32> {
    let [dir, program, rest @ ..] = args else {
        return Err(io::Error::other("__ssh-count COUNT_DIR PROGRAM ARGS..."));
    };
    let argv_bytes: u64 = rest.iter().map(|a| a.len() as u64 + 1).sum();
    let file = std::fs::File::create(Path::new(dir).join(std::process::id().to_string()))?;
    let record = move |stdin_bytes: u64| {
        // Fixed width: each rewrite covers the previous one entirely.
        let line = format!("{argv_bytes:>20} {stdin_bytes:>20}\n");
        file.write_all_at(line.as_bytes(), 0)
    };
    record(0)?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().expect("piped stdin");
    let mut from_child = child.stdout.take().expect("piped stdout");
    let out = std::thread::spawn(move || {
        let mut stdout = io::stdout().lock();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(k @ 1..) = from_child.read(&mut buf) {
            if stdout
                .write_all(&buf[..k])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let k = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => k,
            };
            total += k as u64;
            // Counted before ssh sees the bytes, so the count is complete
            // by the time any reply to them can arrive.
            if record(total).is_err() || to_child.write_all(&buf[..k]).is_err() {
                break;
            }
        }
        // Closes ssh's stdin.
    });
    let status = child.wait()?;
    let _ = out.join();
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Makes sure no cache directory of the target user holds this binary, so
/// the next connect has to upload it. The library's first stage looks for
/// `<dir>/<sha256 of the binary>` in the given `cache_dir` and then in
/// these standard places, all of which are removed for our hash.
pub fn evict_cached_binary(user: &str) -> io::Result<()> {
    let (uid, _, home) =
        fixture::passwd_entry(user).ok_or_else(|| io::Error::other(format!("no user {user}")))?;
    let sha = sha256_of_self()?;
    let dirs = [
        format!("{home}/.cache/mitogen"),
        format!("/tmp/mitogen-{uid}"),
        format!("/var/tmp/mitogen-{uid}"),
        format!("/dev/shm/mitogen-{uid}"),
        format!("/run/user/{uid}/mitogen"),
    ];
    for d in dirs {
        match std::fs::remove_file(Path::new(&d).join(&sha)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn sha256_of_self() -> io::Result<String> {
    use std::sync::OnceLock;
    static SHA: OnceLock<String> = OnceLock::new();
    if let Some(s) = SHA.get() {
        return Ok(s.clone());
    }
    // The running file, even if the path has been rebuilt since.
    let out = Command::new("sha256sum")
        .arg(format!("/proc/{}/exe", std::process::id()))
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text
        .split_whitespace()
        .next()
        .filter(|s| s.len() == 64)
        .ok_or_else(|| io::Error::other(format!("sha256sum: {text}")))?;
    Ok(SHA.get_or_init(|| sha.to_owned()).clone())
}

/// A fresh, empty cache directory for one cold sample: owned by `user`,
/// mode 0700, removed on drop.
pub struct ColdCache(PathBuf);

impl ColdCache {
    pub fn new(user: &str) -> io::Result<ColdCache> {
        let (uid, gid, _) = fixture::passwd_entry(user)
            .ok_or_else(|| io::Error::other(format!("no user {user}")))?;
        let path = fresh_dir("mitogen-bench-cold")?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(ColdCache(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ColdCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
