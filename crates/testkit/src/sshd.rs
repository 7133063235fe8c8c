//! A throwaway OpenSSH server on `127.0.0.1` for tests of the ssh
//! connection method against the real `ssh`.
//!
//! [`Sshd::start`] makes a temporary directory with fresh host and client
//! keys, writes an `sshd_config` there (a free port, key and password
//! logins, PAM, `LogLevel VERBOSE`), runs `/usr/sbin/sshd -D` as a child
//! and waits until it greets. Dropping the [`Sshd`] stops it and everything
//! it started (sessions included) and removes the directory.
//!
//! The client key is authorised for root and every fixture user (those of
//! [`fixture::USERS`] and [`fixture::SHELL_USERS`]) through
//! `AuthorizedKeysFile <dir>/authorized_keys/%u`, so nothing is written to
//! the users' home directories. Passwords are those of
//! [`crate::fixture`]. Needs root and `scripts/fixture/setup.sh`; see
//! [`Sshd::available`].
//!
//! ```no_run
//! use mitogen_testkit::{fixture, sshd::Sshd};
//! if !fixture::ready_or_skip("ssh_true", Sshd::available()) {
//!     return;
//! }
//! let sshd = Sshd::start().unwrap();
//! let status = std::process::Command::new("ssh")
//!     .args(sshd.ssh_key_args())
//!     .arg(sshd.destination("mitogen-a"))
//!     .arg("true")
//!     .status()
//!     .unwrap();
//! assert!(status.success(), "{}", sshd.log());
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture;
use crate::tempdir::TempDir;

/// The server binary the fixture runs.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Used to make keys.
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
/// The address the server listens on.
pub const HOST: &str = "127.0.0.1";

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const PORT_ATTEMPTS: usize = 5;

/// Options for [`Sshd::start_with`]; `Default` is what [`Sshd::start`]
/// uses.
#[derive(Clone, Debug, Default)]
pub struct SshdOptions {
    /// Text sshd sends before authentication (`Banner`); ssh prints it on
    /// stderr: login noise seen before any shell runs.
    pub banner: Option<String>,
    /// Extra `sshd_config` lines, appended (sshd takes the *first* value of
    /// most keywords, so these only add settings the fixture leaves unset;
    /// use `Match` blocks to override per user).
    pub extra_config: Vec<String>,
    /// Run sshd inside this network namespace (`ip netns exec`, as root),
    /// listening on this address of it instead of [`HOST`].
    pub netns: Option<(String, Ipv4Addr)>,
}

/// A running throwaway sshd; see the [module documentation](self).
pub struct Sshd {
    dir: TempDir,
    options: SshdOptions,
    port: u16,
    child: Option<Child>,
    /// `true` once [`Sshd::restart_with_other_host_key`] switched keys.
    other_key: bool,
}

impl Sshd {
    /// `Ok` when [`Sshd::start`] can work here; otherwise why not (for
    /// [`fixture::ready_or_skip`]).
    pub fn available() -> Result<(), String> {
        fixture::available()?;
        for tool in [SSHD, SSH_KEYGEN, "/usr/bin/ssh"] {
            if !Path::new(tool).exists() {
                return Err(format!("{tool} missing: run scripts/fixture/setup.sh"));
            }
        }
        Ok(())
    }

    /// Start a server with default options.
    pub fn start() -> std::io::Result<Sshd> {
        Sshd::start_with(SshdOptions::default())
    }

    /// Start a server with `options`. Errors carry the server's log.
    pub fn start_with(options: SshdOptions) -> std::io::Result<Sshd> {
        if let Err(why) = Sshd::available() {
            return Err(other(why));
        }
        // Privilege separation directory; on tmpfs, so gone after a reboot.
        std::fs::create_dir_all("/run/sshd")?;
        let dir = TempDir::new("mitogen-sshd")?;
        let d = dir.path();
        for key in ["host_ed25519", "host_ed25519_other", "client_ed25519"] {
            keygen(&d.join(key))?;
        }
        let client_pub = std::fs::read_to_string(d.join("client_ed25519.pub"))?;
        let keys_dir = d.join("authorized_keys");
        std::fs::create_dir(&keys_dir)?;
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o755))?;
        // sshd reads authorized keys with the user's privileges: each file
        // belongs to its user.
        let users = fixture::USERS.iter().map(|u| u.name);
        let shell_users = fixture::SHELL_USERS.iter().map(|u| u.name);
        for name in std::iter::once("root").chain(users).chain(shell_users) {
            let (uid, gid, _) =
                fixture::passwd_entry(name).ok_or_else(|| other(format!("user {name} missing")))?;
            let path = keys_dir.join(name);
            std::fs::write(&path, &client_pub)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        if let Some(banner) = &options.banner {
            std::fs::write(d.join("banner"), banner)?;
        }
        let mut sshd = Sshd {
            dir,
            options,
            port: 0,
            child: None,
            other_key: false,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            sshd.port = free_port()?;
            match sshd.launch() {
                Ok(()) => {
                    let line = sshd.known_hosts_line();
                    std::fs::write(sshd.known_hosts_file(), format!("{line}\n"))?;
                    return Ok(sshd);
                }
                // Someone else took the port between probe and bind.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| other("no free port")))
    }

    /// Stop the server (sessions stay) and start it again on the same port
    /// serving the second host key: clients using [`Sshd::known_hosts_file`]
    /// now see a changed host key.
    pub fn restart_with_other_host_key(&mut self) -> std::io::Result<()> {
        self.stop_listener();
        self.other_key = true;
        self.launch()
    }

    /// The port sshd listens on (at [`Sshd::host`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The fixture's directory (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Private key authorised for root and every fixture user (mode 0600,
    /// owned by root).
    pub fn client_key(&self) -> PathBuf {
        self.dir().join("client_ed25519")
    }

    /// Private host key currently served.
    pub fn host_key(&self) -> PathBuf {
        self.dir().join(if self.other_key {
            "host_ed25519_other"
        } else {
            "host_ed25519"
        })
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…` for the host key currently
    /// served.
    pub fn known_hosts_line(&self) -> String {
        let mut public = self.host_key().into_os_string();
        public.push(".pub");
        let text = std::fs::read_to_string(&public).expect("host public key");
        let mut fields = text.split_whitespace();
        let (kind, key) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        format!("[{}]:{} {kind} {key}", self.host(), self.port)
    }

    /// A known_hosts file holding the line for the *first* host key,
    /// written at start and never changed.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// `user@127.0.0.1`.
    pub fn destination(&self, user: &str) -> String {
        format!("{user}@{}", self.host())
    }

    /// Options every ssh invocation against this server wants: no user or
    /// system ssh config (`-F /dev/null`), the port, strict checking
    /// against [`Sshd::known_hosts_file`] only. Authentication is left to
    /// ssh's defaults; see [`Sshd::ssh_key_args`] and
    /// [`Sshd::ssh_password_args`].
    pub fn ssh_base_args(&self) -> Vec<String> {
        let known = self.known_hosts_file();
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ]
    }

    /// [`Sshd::ssh_base_args`] plus the client key, and nothing else tried.
    pub fn ssh_key_args(&self) -> Vec<String> {
        let mut args = self.ssh_base_args();
        args.extend([
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "PreferredAuthentications=publickey".into(),
        ]);
        args
    }

    /// [`Sshd::ssh_base_args`] plus options that make ssh use password
    /// authentication only (it then asks for the password on its terminal
    /// or through `SSH_ASKPASS`).
    pub fn ssh_password_args(&self) -> Vec<String> {
        let mut args = self.ssh_base_args();
        args.extend([
            "-o".into(),
            "PubkeyAuthentication=no".into(),
            "-o".into(),
            "PreferredAuthentications=password".into(),
            "-o".into(),
            "NumberOfPasswordPrompts=1".into(),
        ]);
        args
    }

    /// The server's log so far (`LogLevel VERBOSE`): put it in assertion
    /// messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// The address sshd listens on: [`HOST`], or the one given with
    /// [`SshdOptions::netns`].
    pub fn host(&self) -> Ipv4Addr {
        self.options
            .netns
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |(_, addr)| *addr)
    }

    /// Pid of the listening sshd, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn write_config(&self) -> std::io::Result<PathBuf> {
        let d = self.dir();
        let mut conf = format!(
            "# mitogen-testkit throwaway sshd\n\
             ListenAddress {host}:{port}\n\
             HostKey {host_key}\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys/%u\n\
             # The files live under /tmp (world-writable), which StrictModes rejects.\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\n\
             UsePAM yes\n\
             PermitRootLogin yes\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n\
             MaxStartups 100\n\
             MaxSessions 100\n\
             LoginGraceTime 60\n\
             Subsystem sftp internal-sftp\n",
            host = self.host(),
            port = self.port,
            host_key = self.host_key().display(),
            d = d.display(),
        );
        if self.options.banner.is_some() {
            conf.push_str(&format!("Banner {}/banner\n", d.display()));
        }
        for line in &self.options.extra_config {
            conf.push_str(line);
            conf.push('\n');
        }
        let path = d.join("sshd_config");
        std::fs::write(&path, conf)?;
        Ok(path)
    }

    /// Write the config and start sshd on `self.port`; `AddrInUse` when the
    /// port is taken.
    fn launch(&mut self) -> std::io::Result<()> {
        let config = self.write_config()?;
        let log = self.dir().join("sshd.log");
        let test = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .output()?;
        if !test.status.success() {
            return Err(other(format!(
                "sshd -t rejects {}: {}",
                config.display(),
                String::from_utf8_lossy(&test.stderr).trim()
            )));
        }
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut command = match &self.options.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        let mut child = command
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let new = text.get(log_start as usize..).unwrap_or(&text);
                let kind = if new.contains("Address already in use") {
                    std::io::ErrorKind::AddrInUse
                } else {
                    std::io::ErrorKind::Other
                };
                return Err(std::io::Error::new(
                    kind,
                    format!(
                        "sshd exited ({status}) on port {}: {}",
                        self.port,
                        new.trim()
                    ),
                ));
            }
            if greets(self.host(), self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other(format!(
                    "sshd did not greet on port {} within {START_TIMEOUT:?}; log: {}",
                    self.port,
                    self.log().trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the listening sshd only.
    fn stop_listener(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // SAFETY: kill has no memory preconditions; pid is our unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sshd {
    /// Stops sshd and every process below it: per-connection sshds and the
    /// users' sessions (which call `setsid`, so process groups don't find
    /// them). The tree is frozen with SIGSTOP until no new process appears,
    /// then killed; nothing below escapes by forking meanwhile. Processes
    /// that already left the tree (daemonised) are not found.
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let mut frozen = vec![pid];
        // SAFETY: kill has no memory preconditions; pid is our unreaped
        // child, the others were seen in /proc a moment ago below it.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        loop {
            let new: Vec<u32> = descendants(pid)
                .into_iter()
                .filter(|p| !frozen.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            for &p in &new {
                // SAFETY: as above.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGSTOP) };
            }
            frozen.extend(new);
        }
        for &p in &frozen {
            // SAFETY: as above.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

fn other(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn keygen(path: &Path) -> std::io::Result<()> {
    let out = Command::new(SSH_KEYGEN)
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "mitogen-testkit",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(other(format!(
            "ssh-keygen {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// `true` when something on `port` sends an SSH identification string.
fn greets(host: Ipv4Addr, port: u16) -> bool {
    let addr = SocketAddr::from((host, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    let ok = stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0-");
    // Say goodbye politely so the log shows a clean disconnect.
    let _ = stream.write_all(b"SSH-2.0-mitogen-testkit-probe\r\n");
    ok
}

/// Every process below `root`, from the ppid fields in `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == p)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    found.remove(0);
    found
}
