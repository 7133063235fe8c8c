//! `setns`: a context inside a running container, entered directly by root.
//!
//! Program: first the container engine, once, to find the container's
//! leader process: for docker its API on `/var/run/docker.sock` when the
//! CLI would use it ([`docker_api`]: a millisecond, where the CLI costs
//! 10–20 ms), else `docker inspect --type container -f {{.State.Pid}} <c>`,
//! `lxc-info -n <c> -p -H`, `lxc info <c>` (its `Pid:`/`PID:` line) or
//! `machinectl show -p Leader <c>`, bounded by `connect_timeout`. Then no
//! program of the engine: a child enters the leader's namespaces, root,
//! capability limits and user before exec, forking once more to be inside
//! its pid namespace ([`crate::sys::Entry`] says how and in what order),
//! and execs, with [`Bootstrap::Exec`] (the default), this program itself
//! as `/proc/self/exe`: the host's file, run inside the container, with no
//! shell and no copy there (when the container has a procfs at `/proc` and
//! the binary's ELF interpreter, if any; otherwise, and with
//! [`Bootstrap::Shell`], `/bin/sh -c '<first stage>'`, the container's own
//! shell, which copies the binary into a cache in the container). The
//! user's ids and home come from the container's `/etc/passwd` and
//! `/etc/group`, read from the host inside the container's root only (a
//! symlink cannot lead out of it). `HOME`, `USER`, `LOGNAME`, `SHELL` and
//! `PATH` are set for that user; host paths (`TMPDIR`, `XDG_*`) and
//! `LD_PRELOAD`/`LD_LIBRARY_PATH` are removed. stdio is a socketpair.
//! Nothing inside the container is needed but the libraries a dynamically
//! linked binary loads (with the shell path: `/bin/sh` and the tools the
//! first stage uses).
//!
//! Prompts: none.
//!
//! Errors (`StreamError::Bootstrap`, the kind first in the reason, naming
//! the container, the engine and the cause): `PermissionDenied` when we
//! are not root or the kernel refuses a step (the step is quoted),
//! `ContainerNotFound`, `ContainerNotRunning`, `EngineUnavailable` (the
//! engine's program is missing, hangs or its daemon is unreachable),
//! `LeaderNotFound` (the engine answered something else, or the leader
//! exited), `UnknownUser`, `NoShell`; `InvalidOptions` for an empty
//! container name or one starting with `-`.
//!
//! Not done: a context joins neither the container's cgroup (resource
//! limits) nor its seccomp or LSM profile.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::docker_api::{self, Inspect};
use super::engine::EngineErrors;
use super::local::Bootstrap;
use super::method::{common_field, Method};
use super::options::{common_builders, CommonOptions};
use super::prompt::{Password, Prompts};
use super::spawn::{FirstStageArg, Launch};
use crate::context::Context;
use crate::error::{ConnectFailure, Error, Result, StreamError};
use crate::router::Router;

/// Which engine runs the container, i.e. how its leader process is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ContainerKind {
    /// Docker: `docker inspect`.
    Docker,
    /// LXC: `lxc-info`.
    Lxc,
    /// LXD: `lxc info`.
    Lxd,
    /// systemd-nspawn machines: `machinectl show`.
    Machinectl,
}

impl ContainerKind {
    /// Lowercase name, as Mitogen spells the `kind` argument.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mitogen::ContainerKind::Machinectl.name(), "machinectl");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ContainerKind::Docker => "docker",
            ContainerKind::Lxc => "lxc",
            ContainerKind::Lxd => "lxd",
            ContainerKind::Machinectl => "machinectl",
        }
    }
}

/// Options of [`Router::setns`] (Mitogen's `setns()` arguments).
///
/// # Examples
/// ```
/// use mitogen::{ContainerKind, SetnsOptions};
/// let opts = SetnsOptions::new("web", ContainerKind::Docker).username("app");
/// assert_eq!(opts.username, "app");
/// assert_eq!(opts.docker_path, "docker");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetnsOptions {
    /// The container's name or id, as its engine knows it.
    pub container: String,
    /// Its engine.
    pub kind: ContainerKind,
    /// User to become inside it, looked up in its `/etc/passwd` (default
    /// `root`, which works without one).
    pub username: String,
    /// The docker program (default `docker`).
    pub docker_path: String,
    /// The lxc-info program (default `lxc-info`).
    pub lxc_info_path: String,
    /// The LXD client (default `lxc`).
    pub lxc_path: String,
    /// The machinectl program (default `machinectl`).
    pub machinectl_path: String,
    /// [`Bootstrap::Exec`] (default): run this program's own executable
    /// inside the container, falling back to the shell when the container
    /// cannot run it; [`Bootstrap::Shell`]: always the shell first stage,
    /// which copies the binary into the container.
    pub bootstrap: Bootstrap,
    /// Options every method shares (name, timeout, debug, via, …).
    pub common: CommonOptions,
}

impl SetnsOptions {
    /// Options for `container` of engine `kind`, everything else default.
    pub fn new(container: impl Into<String>, kind: ContainerKind) -> SetnsOptions {
        SetnsOptions {
            container: container.into(),
            kind,
            username: "root".into(),
            docker_path: "docker".into(),
            lxc_info_path: "lxc-info".into(),
            lxc_path: "lxc".into(),
            machinectl_path: "machinectl".into(),
            bootstrap: Bootstrap::Exec,
            common: CommonOptions::default(),
        }
    }

    /// The user to become inside the container (default `root`).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = username.into();
        self
    }

    /// The docker program (default `docker`).
    pub fn docker_path(mut self, path: impl Into<String>) -> Self {
        self.docker_path = path.into();
        self
    }

    /// The lxc-info program (default `lxc-info`).
    pub fn lxc_info_path(mut self, path: impl Into<String>) -> Self {
        self.lxc_info_path = path.into();
        self
    }

    /// The LXD client (default `lxc`).
    pub fn lxc_path(mut self, path: impl Into<String>) -> Self {
        self.lxc_path = path.into();
        self
    }

    /// The machinectl program (default `machinectl`).
    pub fn machinectl_path(mut self, path: impl Into<String>) -> Self {
        self.machinectl_path = path.into();
        self
    }

    /// How the context starts inside the container (default
    /// [`Bootstrap::Exec`]).
    pub fn bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    common_builders!();

    /// The engine command that finds the leader.
    fn leader_argv(&self) -> Vec<String> {
        let c = self.container.clone();
        match self.kind {
            ContainerKind::Docker => vec![
                self.docker_path.clone(),
                "inspect".into(),
                "--type".into(),
                "container".into(),
                "-f".into(),
                "{{.State.Pid}}".into(),
                c,
            ],
            ContainerKind::Lxc => vec![
                self.lxc_info_path.clone(),
                "-n".into(),
                c,
                "-p".into(),
                "-H".into(),
            ],
            ContainerKind::Lxd => vec![self.lxc_path.clone(), "info".into(), c],
            ContainerKind::Machinectl => vec![
                self.machinectl_path.clone(),
                "show".into(),
                "-p".into(),
                "Leader".into(),
                c,
            ],
        }
    }
}

impl Method for SetnsOptions {
    const NAME: &'static str = "setns";

    common_field!();

    fn target(&self) -> Option<String> {
        Some(self.container.clone())
    }

    fn prepare(&mut self) -> Result<()> {
        super::engine::check_name("setns", "container", &self.container)?;
        Ok(())
    }

    fn launch(&self, _: &Router) -> Result<Launch> {
        let deadline = Instant::now() + self.common.connect_timeout;
        let p = prepare(self, deadline).map_err(|f| {
            Error::from(StreamError::Bootstrap {
                name: self
                    .common
                    .remote_name
                    .clone()
                    .unwrap_or_else(|| format!("setns.{}", self.container)),
                reason: format!("{}: {}", f.why, f.reason),
                output: String::new(),
            })
        })?;
        let mut launch = if p.exec_self {
            let mut l = Launch::exec_self()?;
            // The host's executable, reachable after the chroot through
            // the container's procfs (the child is in its pid namespace).
            l.argv = vec!["/proc/self/exe".into()];
            l
        } else {
            Launch::shell(["/bin/sh", "-c"], FirstStageArg::Script)
        }
        .prompts(StepErrors);
        launch.env = p.env;
        launch.pre_exec = Some(p.entry.into_pre_exec());
        Ok(launch)
    }
}

impl Router {
    /// Start a context inside a running container by entering its
    /// namespaces directly (Mitogen's `Router.setns`); needs root.
    ///
    /// # Errors
    /// [`Error::Stream`](crate::Error::Stream) with a
    /// [`kind`](crate::StreamError::kind): `PermissionDenied`,
    /// `ContainerNotFound`, `ContainerNotRunning`, `EngineUnavailable`,
    /// `LeaderNotFound`, `UnknownUser`, `NoShell`.
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen::{ContainerKind, SetnsOptions};
    /// # mitogen::Router::with(|router| {
    /// let web = router
    ///     .setns(SetnsOptions::new("web", ContainerKind::Docker).username("app"))
    ///     .unwrap();
    /// # }).unwrap();
    /// ```
    pub fn setns(&self, opts: SetnsOptions) -> Result<Context> {
        super::method::connect(self, opts)
    }
}

/// Reads the words a failed pre-exec step prints (`mitogen-setns: … failed:
/// EPERM …`); no prompts are answered.
struct StepErrors;

impl Prompts for StepErrors {
    fn on_output(&mut self, _: &str) -> Result<Option<Password>, Error> {
        Ok(None)
    }

    fn on_exit(&self, _: &str) -> Option<Error> {
        None
    }

    fn failure(&self, output: &str) -> Option<ConnectFailure> {
        let line = output.lines().find(|l| l.starts_with("mitogen-setns: "))?;
        (line.contains("EPERM") || line.contains("EACCES"))
            .then_some(ConnectFailure::PermissionDenied)
    }
}

/// A failure with its kind and words (naming container, engine and cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub why: ConnectFailure,
    pub reason: String,
}

/// At most this much of the engine's output is kept.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Larger `/etc/passwd` or `/etc/group` files are refused.
const DB_LIMIT: usize = 4 << 20;

/// Printable text of untrusted output: control characters become `?`, at
/// most 500 characters.
fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim()
        .chars()
        .take(500)
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

/// What the engine program printed and how it ended.
struct Answer {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Run `argv` with stdin closed, collecting at most [`OUTPUT_LIMIT`] of
/// stdout and stderr, killed and reaped at `deadline`.
fn run_bounded(argv: &[String], deadline: Instant) -> std::io::Result<Option<Answer>> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut open = [true, true];
    let mut buf = [0u8; 8192];
    while open.iter().any(|o| *o) {
        let fds = [
            if open[0] { out.as_raw_fd() } else { -1 },
            if open[1] { err.as_raw_fd() } else { -1 },
        ];
        let ready = crate::sys::poll_many(&fds, deadline)?;
        if ready.iter().all(|r| !r) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        for (i, sink) in [&mut stdout, &mut stderr].into_iter().enumerate() {
            if !ready[i] {
                continue;
            }
            let fd = if i == 0 {
                out.as_raw_fd()
            } else {
                err.as_raw_fd()
            };
            match crate::sys::read(fd, &mut buf)? {
                0 => open[i] = false,
                n if sink.len() < OUTPUT_LIMIT => sink.extend_from_slice(&buf[..n]),
                _ => {}
            }
        }
    }
    // Both pipes closed: the program is exiting; wait no longer than the deadline.
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let pidfd = crate::sys::pidfd_open(child.id())?;
        if !crate::sys::poll_readable(pidfd.as_raw_fd(), deadline)? {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
    };
    Ok(Some(Answer {
        status: status.code(),
        stdout,
        stderr,
    }))
}

impl SetnsOptions {
    fn fail(&self, why: ConnectFailure, cause: impl std::fmt::Display) -> Failure {
        Failure {
            why,
            reason: format!(
                "{} container {:?}: {cause}",
                self.kind.name(),
                self.container
            ),
        }
    }

    /// Ask the engine for the leader's pid.
    pub(crate) fn find_leader(&self, deadline: Instant) -> Result<u32, Failure> {
        if self.kind == ContainerKind::Docker && docker_api::usable(&self.docker_path) {
            match docker_api::inspect(&self.container, deadline) {
                Some(Inspect::Running(pid)) => return Ok(pid),
                Some(Inspect::Stopped) => {
                    return Err(self.fail(ConnectFailure::ContainerNotRunning, "it is not running"))
                }
                Some(Inspect::Missing(said)) => {
                    return Err(self.fail(
                        ConnectFailure::ContainerNotFound,
                        format!("the docker engine said: {}", printable(said.as_bytes())),
                    ))
                }
                None => {} // Ask the CLI, whose words name the problem.
            }
        }
        let argv = self.leader_argv();
        let answer = match run_bounded(&argv, deadline) {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Err(self.fail(
                    ConnectFailure::EngineUnavailable,
                    format!("{} did not answer before the connect timeout", argv[0]),
                ))
            }
            Err(e) => {
                return Err(self.fail(
                    ConnectFailure::EngineUnavailable,
                    format!("could not run {}: {e}", argv[0]),
                ))
            }
        };
        self.parse_leader(&argv[0], &answer)
    }

    /// The leader's pid from the engine's answer, or why there is none.
    fn parse_leader(&self, program: &str, a: &Answer) -> Result<u32, Failure> {
        let out = String::from_utf8_lossy(&a.stdout);
        let err = String::from_utf8_lossy(&a.stderr);
        let said = || {
            let both = printable(&[a.stderr.as_slice(), a.stdout.as_slice()].concat());
            if both.is_empty() {
                format!("{program} printed nothing")
            } else {
                format!("{program} said: {both}")
            }
        };
        if a.status != Some(0) {
            // The engine's refusal in its own words, read as every
            // container method reads it (connect/engine.rs).
            if let Some(
                why @ (ConnectFailure::ContainerNotFound
                | ConnectFailure::EngineUnavailable
                | ConnectFailure::PermissionDenied),
            ) = EngineErrors.failure(&err)
            {
                return Err(self.fail(why, said()));
            }
            let how = match a.status {
                Some(s) => format!("exited with status {s}"),
                None => "was killed".into(),
            };
            return Err(self.fail(
                ConnectFailure::LeaderNotFound,
                format!("{program} {how}; {}", said()),
            ));
        }
        let pid_text = match self.kind {
            ContainerKind::Docker | ContainerKind::Lxc => Some(out.trim().to_string()),
            ContainerKind::Lxd => out.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                matches!(w.next(), Some("Pid:" | "PID:")).then(|| w.next().unwrap_or("").into())
            }),
            ContainerKind::Machinectl => out
                .lines()
                .find_map(|l| l.trim().strip_prefix("Leader=").map(str::to_string)),
        };
        let stopped = match self.kind {
            // docker prints 0 for a stopped container, lxc-info nothing.
            ContainerKind::Docker => pid_text.as_deref() == Some("0"),
            ContainerKind::Lxc => pid_text.as_deref() == Some(""),
            ContainerKind::Lxd => out.lines().any(|l| {
                let l = l.trim().to_lowercase();
                l.starts_with("status:") && !l.contains("running")
            }),
            ContainerKind::Machinectl => false,
        };
        if stopped {
            return Err(self.fail(ConnectFailure::ContainerNotRunning, "it is not running"));
        }
        match pid_text.as_deref().map(str::parse::<u32>) {
            Some(Ok(pid)) if pid > 0 => Ok(pid),
            _ => Err(self.fail(
                ConnectFailure::LeaderNotFound,
                format!("no leader pid in the answer; {}", said()),
            )),
        }
    }
}

/// A user of the container, from its `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    /// The primary group and every group listing the user as a member.
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

/// Look `name` up in the text of a passwd and a group file. Malformed
/// lines are skipped. `root` without a passwd entry is uid 0, gid 0, home `/`.
pub(crate) fn find_user(passwd: &[u8], group: &[u8], name: &str) -> Option<User> {
    let passwd = String::from_utf8_lossy(passwd);
    let mut user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some(User {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            groups: Vec::new(),
            home: f[5].to_string(),
            shell: f[6].to_string(),
        })
    });
    if user.is_none() && name == "root" {
        user = Some(User {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/".into(),
            shell: String::new(),
        });
    }
    let mut user = user?;
    if user.shell.is_empty() {
        user.shell = "/bin/sh".into();
    }
    user.groups.push(user.gid);
    for l in String::from_utf8_lossy(group).lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || !f[3].split(',').any(|m| m == name) {
            continue;
        }
        if let Ok(gid) = f[2].parse::<u32>() {
            if !user.groups.contains(&gid) && user.groups.len() < 65536 {
                user.groups.push(gid);
            }
        }
    }
    Some(user)
}

/// Everything needed to start the context in the container.
pub(crate) struct Prepared {
    /// Pins the leader until the launch is built; read by tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub leader: crate::sys::Leader,
    pub entry: crate::sys::Entry,
    /// Environment changes: `Some` sets, `None` removes.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Run this executable as `/proc/self/exe` instead of the shell.
    pub exec_self: bool,
}

/// Host paths that mean nothing inside the container, and loader
/// variables that would make its libraries load the host's choices.
const ENV_REMOVE: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
];

/// Find the leader, resolve the user and open everything the child needs.
pub(crate) fn prepare(opts: &SetnsOptions, deadline: Instant) -> Result<Prepared, Failure> {
    if crate::sys::effective_uid() != 0 {
        return Err(opts.fail(
            ConnectFailure::PermissionDenied,
            format!(
                "entering a container's namespaces needs root (effective uid is {})",
                crate::sys::effective_uid()
            ),
        ));
    }
    let pid = opts.find_leader(deadline)?;
    let leader = crate::sys::Leader::open(pid).map_err(|e| {
        opts.fail(
            ConnectFailure::LeaderNotFound,
            format!("its leader process {pid} is gone: {e}"),
        )
    })?;
    tracing::debug!(
        "{} container {:?}: leader pid {}",
        opts.kind.name(),
        opts.container,
        leader.pid()
    );
    let root = leader.root().map_err(|e| {
        opts.fail(
            ConnectFailure::LeaderNotFound,
            format!("opening /proc/{pid}/root: {e}"),
        )
    })?;
    let read = |path: &str| match crate::sys::read_in_root(&root, path, DB_LIMIT) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(opts.fail(
            ConnectFailure::UnknownUser,
            format!("reading its /{path}: {e}"),
        )),
    };
    let (passwd, group) = (read("etc/passwd")?, read("etc/group")?);
    let user = find_user(&passwd, &group, &opts.username).ok_or_else(|| {
        opts.fail(
            ConnectFailure::UnknownUser,
            format!("no user {:?} in its /etc/passwd", opts.username),
        )
    })?;
    let creds = crate::sys::Credentials {
        uid: user.uid,
        gid: user.gid,
        groups: user.groups.clone(),
        home: CString::new(user.home.clone()).ok(),
    };
    let exec_self = opts.bootstrap == Bootstrap::Exec && can_exec_self(&root);
    if !exec_self && !crate::sys::exists_in_root(&root, "bin/sh") {
        return Err(opts.fail(
            ConnectFailure::NoShell,
            "it has no /bin/sh (needed: it has no procfs at /proc or not our binary's ELF interpreter)",
        ));
    }
    let entry = crate::sys::Entry::new(&leader, creds).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
            ConnectFailure::PermissionDenied
        } else {
            ConnectFailure::LeaderNotFound
        };
        opts.fail(why, format!("opening the namespaces of process {pid}: {e}"))
    })?;
    // A container has its own mount namespace; a process sharing ours is
    // not its leader (a pid reused after the container stopped).
    if !entry.enters(crate::sys::Namespace::Mnt) {
        return Err(opts.fail(
            ConnectFailure::LeaderNotFound,
            format!("process {pid} shares our mount namespace: it is not the container's"),
        ));
    }
    let mut env: Vec<(OsString, Option<OsString>)> = [
        ("HOME", user.home.as_str()),
        ("USER", opts.username.as_str()),
        ("LOGNAME", opts.username.as_str()),
        ("SHELL", user.shell.as_str()),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), Some(v.into())))
    .collect();
    env.extend(ENV_REMOVE.iter().map(|k| (OsString::from(k), None)));
    Ok(Prepared {
        leader,
        entry,
        env,
        exec_self,
    })
}

/// Whether this executable can run inside the container root `root`: a
/// procfs at `/proc` (for `/proc/self/exe`) and, for a dynamically linked
/// binary, its ELF interpreter there.
fn can_exec_self(root: &std::os::fd::OwnedFd) -> bool {
    if !crate::sys::is_procfs_in_root(root, "proc") {
        return false;
    }
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    let mut head = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::Read::take(exe, 64 * 1024), &mut head).is_err() {
        return false;
    }
    match crate::bootstrap::binary::elf_interpreter(&head) {
        Some(None) => true,
        Some(Some(interp)) => crate::sys::exists_in_root(root, interp.trim_start_matches('/')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Namespace;

    fn answer(status: i32, stdout: &str, stderr: &str) -> Answer {
        Answer {
            status: Some(status),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn parse(kind: ContainerKind, a: Answer) -> Result<u32, Failure> {
        SetnsOptions::new("web", kind).parse_leader("prog", &a)
    }

    #[test]
    fn leaders_are_read_from_each_engine() {
        use ContainerKind::*;
        assert_eq!(parse(Docker, answer(0, "4242\n", "")), Ok(4242));
        assert_eq!(parse(Lxc, answer(0, "77\n", "")), Ok(77));
        let lxd = "Name: web\nStatus: RUNNING\nType: container\nPid: 515\n";
        assert_eq!(parse(Lxd, answer(0, lxd, "")), Ok(515));
        let lxd_new = "Name: web\nStatus: RUNNING\nPID: 516\n";
        assert_eq!(parse(Lxd, answer(0, lxd_new, "")), Ok(516));
        assert_eq!(parse(Machinectl, answer(0, "Leader=900\n", "")), Ok(900));
    }

    #[test]
    fn stopped_missing_and_unreachable_are_told_apart() {
        use ContainerKind::*;
        let why = |k, a| parse(k, a).unwrap_err().why;
        assert_eq!(
            why(Docker, answer(0, "0\n", "")),
            ConnectFailure::ContainerNotRunning
        );
        assert_eq!(
            why(Lxc, answer(0, "", "")),
            ConnectFailure::ContainerNotRunning
        );
        assert_eq!(
            why(Lxd, answer(0, "Name: web\nStatus: STOPPED\n", "")),
            ConnectFailure::ContainerNotRunning
        );
        assert_eq!(
            why(Docker, answer(1, "", "Error: No such container: web\n")),
            ConnectFailure::ContainerNotFound
        );
        assert_eq!(
            why(Lxc, answer(1, "", "web doesn't exist\n")),
            ConnectFailure::ContainerNotFound
        );
        assert_eq!(
            why(Machinectl, answer(1, "", "No machine 'web' known\n")),
            ConnectFailure::ContainerNotFound
        );
        let down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?";
        let e = parse(Docker, answer(1, "", down)).unwrap_err();
        assert_eq!(e.why, ConnectFailure::EngineUnavailable);
        assert!(
            e.reason
                .starts_with("docker container \"web\": prog said: Cannot connect"),
            "{}",
            e.reason
        );
        let e = parse(Docker, answer(0, "<no value>\x1b[2J\n", "")).unwrap_err();
        assert_eq!(e.why, ConnectFailure::LeaderNotFound);
        assert!(
            e.reason.contains("<no value>?[2J"),
            "control characters replaced: {}",
            e.reason
        );
    }

    #[test]
    fn users_come_with_their_groups() {
        let passwd =
            b"root:x:0:0:root:/root:/bin/bash\nbroken line\napp:x:1000:1000:App:/home/app:\n";
        let group = b"root:x:0:\napp:x:1000:\nstaff:x:50:app\naudio:x:29:root,app\nbad:x:zz:app\n";
        let app = find_user(passwd, group, "app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.groups, vec![1000, 50, 29]);
        assert_eq!(app.home, "/home/app");
        assert_eq!(app.shell, "/bin/sh", "an empty shell means /bin/sh");
        let root = find_user(passwd, group, "root").unwrap();
        assert_eq!((root.uid, root.groups.clone()), (0, vec![0, 29]));
        assert_eq!(find_user(passwd, group, "nobody"), None);
        assert_eq!(find_user(passwd, group, "broken line"), None);
        // No passwd file at all: root still works.
        let bare = find_user(b"", b"", "root").unwrap();
        assert_eq!((bare.uid, bare.gid, bare.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn a_hung_engine_is_bounded() {
        let t = Instant::now();
        let r = run_bounded(
            &["/bin/sh".into(), "-c".into(), "exec sleep 30".into()],
            Instant::now() + std::time::Duration::from_millis(200),
        )
        .unwrap();
        assert!(r.is_none(), "expected a timeout");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    /// A running container of the debian image, or why not.
    fn container(test: &str) -> Option<mitogen_testkit::docker::Container> {
        use mitogen_testkit::docker;
        let why = if crate::sys::effective_uid() != 0 {
            Err("needs root".to_string())
        } else {
            docker::available()
        };
        if !mitogen_testkit::fixture::ready_or_skip(test, why) {
            return None;
        }
        let ctr = docker::Container::start_with(
            &docker::image("debian"),
            &["--hostname", "setns-unit"],
            &["sleep", "1000000"],
        );
        Some(ctr.expect("starting a container"))
    }

    #[test]
    fn a_shell_enters_a_real_container_as_its_user() {
        let Some(ctr) = container("a_shell_enters_a_real_container_as_its_user") else {
            return;
        };
        let mut o = SetnsOptions::new(ctr.name(), ContainerKind::Docker);
        o.username = "app".into();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let p = prepare(&o, deadline).unwrap_or_else(|e| panic!("{}", e.reason));
        assert!(
            p.entry.needs_fork(),
            "docker gives a container its own pid namespace"
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(
            "readlink /proc/self/ns/pid /proc/self/ns/mnt /proc/self/ns/uts; \
             cat /proc/sys/kernel/hostname; id -u; id -g; id -G; echo $HOME $USER; pwd; \
             echo $$; while read k v; do [ $k = CapBnd: ] && echo $v; done </proc/self/status; \
             exec sh -c 'kill -TERM $$'",
        );
        for (k, v) in &p.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let expected: Vec<String> = [Namespace::Pid, Namespace::Mnt, Namespace::Uts]
            .into_iter()
            .map(|ns| p.leader.namespace_id(ns).unwrap())
            .collect();
        p.entry.into_pre_exec().install(&mut cmd);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The process we spawned stays outside the container's pid
        // namespace: it must be our own program, never the container's.
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // The middle process ends as the shell did: killed by SIGTERM.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGTERM),
            "{text} {}",
            printable(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..3], expected, "namespaces: {text}");
        assert_eq!(lines[3], "setns-unit");
        assert_eq!(lines[4..6], ["1000", "1000"], "ids: {text}");
        // The same groups docker itself gives the user.
        let theirs = Command::new("docker")
            .args(["exec", "-u", "app", ctr.name(), "id", "-G"])
            .output()
            .unwrap();
        let sorted = |s: &str| {
            let mut v: Vec<String> = s.split_whitespace().map(String::from).collect();
            v.sort();
            v
        };
        assert_eq!(
            sorted(lines[6]),
            sorted(&String::from_utf8_lossy(&theirs.stdout))
        );
        assert_eq!(lines[7], "/home/app app");
        assert_eq!(lines[8], "/home/app");
        let pid: u32 = lines[9].parse().unwrap();
        assert!(
            pid > 1 && pid < 1000,
            "a small pid of the container's namespace: {pid}"
        );
        let leader = std::fs::read_to_string(format!("/proc/{}/status", p.leader.pid())).unwrap();
        let bounding = leader
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap();
        assert_eq!(
            lines[10],
            bounding.trim(),
            "the leader's bounding set, not the host's"
        );
    }
}
