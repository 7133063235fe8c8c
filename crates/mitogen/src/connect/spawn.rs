//! Start a connection command and turn it into a registered context.

use std::cell::RefCell;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen_wire::Deframer;

use super::stdio::{self, StdioMode};
use crate::bootstrap::child::NONCE_LEN;
use crate::bootstrap::first_stage::{FirstStage, Known};
use crate::bootstrap::parent::Conversation;
use crate::bootstrap::{ChildConfig, CHILD_ENV};
use crate::broker::lock;
use crate::broker::{Fds, Stream};
use crate::connect::fork::{self, ForkHooks};
use crate::connect::options::CommonOptions;
use crate::connect::prompt::{scrub_error, Prompts};
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::log::{self, Record};
use crate::router::Router;
use crate::sys;

/// What `connect` needs of a method's [`CommonOptions`], with the name
/// settled.
pub(crate) struct Common {
    pub method: &'static str,
    pub name: Option<String>,
    pub connect_timeout: Duration,
    pub debug: bool,
    pub forward_level: Option<tracing::Level>,
    pub cache_dir: Option<PathBuf>,
    pub max_message_size: Option<usize>,
    pub unidirectional: Option<bool>,
    pub profiling: bool,
}

impl Common {
    /// From a method's shared options; the default name is
    /// `<method>.<target>`, or `<method>.<pid>` without a target (settled
    /// in [`connect`] once the process runs).
    pub(crate) fn new(
        method: &'static str,
        opts: &CommonOptions,
        target: Option<String>,
    ) -> Common {
        Common {
            method,
            name: opts
                .remote_name
                .clone()
                .or_else(|| target.map(|t| format!("{method}.{t}"))),
            connect_timeout: opts.connect_timeout,
            debug: opts.debug,
            forward_level: opts.forward_level,
            cache_dir: opts.cache_dir.clone(),
            max_message_size: opts.max_message_size,
            unidirectional: opts.unidirectional,
            profiling: opts.profiling,
        }
    }
}

/// How the first stage is passed to the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstStageArg {
    /// No first stage: exec this binary directly.
    None,
    /// The script as one argument (after `sh -c`).
    Script,
    /// `sh -c '<script>'` as one command line for a shell (ssh, su -c).
    CommandLine,
}

/// The command to run.
pub(crate) struct Launch {
    /// Program and arguments; the first stage is appended.
    pub argv: Vec<OsString>,
    pub first_stage: FirstStageArg,
    pub stdio: StdioMode,
    pub prompts: Option<Box<dyn Prompts>>,
    /// A step run in the new process between fork and exec (entering a
    /// container's namespaces); only `sys` builds one.
    pub pre_exec: Option<sys::PreExec>,
    /// Instead of running `argv`, have this router's zygote fork the
    /// child, with these hooks (the `fork` method).
    pub fork: Option<ForkHooks>,
    /// The program prints its own errors on stdout before the first stage
    /// starts (docker exec: "unable to find user", "OCI runtime exec
    /// failed"): see [`Launch::program_output_on_stdout`].
    pub program_on_stdout: bool,
    /// Environment changes for the program: `Some` sets, `None` removes.
    pub env: Vec<(OsString, Option<OsString>)>,
}

impl Launch {
    /// Run this program's executable directly.
    pub(crate) fn exec_self() -> Result<Launch> {
        let exe = std::env::current_exe().map_err(|e| StreamError::Io {
            what: "finding this program's executable".into(),
            source: e,
        })?;
        Ok(Launch {
            argv: vec![exe.into()],
            first_stage: FirstStageArg::None,
            stdio: StdioMode::Socket,
            prompts: None,
            pre_exec: None,
            fork: None,
            program_on_stdout: false,
            env: Vec::new(),
        })
    }

    /// Run `argv` followed by the first stage, stdio on a socketpair, no
    /// prompts: the shape of most methods.
    pub(crate) fn shell<S: Into<OsString>>(
        argv: impl IntoIterator<Item = S>,
        first_stage: FirstStageArg,
    ) -> Launch {
        Launch {
            argv: argv.into_iter().map(Into::into).collect(),
            first_stage,
            stdio: StdioMode::Socket,
            prompts: None,
            pre_exec: None,
            fork: None,
            program_on_stdout: false,
            env: Vec::new(),
        }
    }

    /// Fork a copy of this program from the zygote, running `hooks`.
    pub(crate) fn fork(hooks: ForkHooks) -> Launch {
        Launch {
            argv: Vec::new(),
            first_stage: FirstStageArg::None,
            stdio: StdioMode::Socket,
            prompts: None,
            pre_exec: None,
            fork: Some(hooks),
            program_on_stdout: false,
            env: Vec::new(),
        }
    }

    /// The same launch with `stdio`.
    pub(crate) fn stdio(mut self, stdio: StdioMode) -> Launch {
        self.stdio = stdio;
        self
    }

    /// The same launch with `prompts` reading the program's output.
    pub(crate) fn prompts(mut self, prompts: impl Prompts + 'static) -> Launch {
        self.prompts = Some(Box::new(prompts));
        self
    }

    /// The same launch, with the stdout lines printed before the first
    /// first-stage marker read as the program's own words by
    /// [`Prompts::failure`] (never by `on_output`: nothing is typed in
    /// answer to them). For programs that print their errors there.
    pub(crate) fn program_output_on_stdout(mut self) -> Launch {
        self.program_on_stdout = true;
        self
    }
}

/// A fresh 128-bit nonce from the system's random source, as 32 lowercase
/// hex digits. No fallback: a guessable nonce would let anyone who can
/// write to the child's stdin configure it.
fn nonce() -> Result<String> {
    let mut bytes = [0u8; NONCE_LEN / 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| StreamError::Io {
            what: "reading /dev/urandom for a connection nonce".into(),
            source: e,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What every connection settles before its process starts.
struct Plan {
    id: u32,
    name: String,
    nonce: String,
    max_message_size: usize,
    /// How long the child waits for its configuration frame.
    child_timeout_ms: u64,
    connect_timeout: Duration,
    deadline: Instant,
}

/// The new context's process.
enum Process {
    /// Our child, started from a command: reaped through its handle.
    Child(RefCell<Child>),
    /// Forked by the zygote: not ours to reap; its stream is its liveness.
    Forked(u32),
}

impl Process {
    /// The pid of our own child, which the broker reaps; `None` for a
    /// forked one (the zygote's child).
    fn child_pid(&self) -> Option<u32> {
        match self {
            Process::Child(c) => Some(c.borrow().id()),
            Process::Forked(_) => None,
        }
    }

    /// The process's pid, ours or forked.
    fn pid(&self) -> u32 {
        match self {
            Process::Child(c) => c.borrow().id(),
            Process::Forked(pid) => *pid,
        }
    }

    /// Stop a process whose bootstrap failed.
    fn kill(self) {
        match self {
            Process::Child(c) => {
                let mut child = c.into_inner();
                let _ = child.kill();
                let _ = child.wait();
            }
            // The zygote reaps it.
            Process::Forked(pid) => {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// A started process and the master's ends of its stdio.
struct Started {
    process: Process,
    /// Carries the protocol.
    ours: OwnedFd,
    /// A terminal watched for prompts (hybrid), kept open with the stream.
    tty: Option<OwnedFd>,
    /// The program's stderr.
    err_r: Option<OwnedFd>,
    /// The terminal's other side, held until the hello (see `start_command`).
    _slave: Option<OwnedFd>,
    /// The program's name, for error texts.
    program: String,
    /// The first stage's second half, when there is a first stage.
    install: Option<String>,
}

/// Start `launch`, bootstrap over its stdio, and register the new context.
pub(crate) fn connect(router: &Router, common: Common, mut launch: Launch) -> Result<Context> {
    let id = router.allocate_id()?;
    // Without a name or a target, Mitogen's `<method>.<pid>`: the pid is
    // known once the process runs, so until then (its process title, a
    // fork request) it is plain `<method>`; `ps` shows the pid anyway.
    let default_name = common.name.is_none();
    let name = common
        .name
        .clone()
        .unwrap_or_else(|| common.method.to_string());
    let mut plan = Plan {
        id,
        nonce: nonce()?,
        max_message_size: common
            .max_message_size
            .unwrap_or_else(|| router.max_message_size())
            .min(u32::MAX as usize),
        child_timeout_ms: common
            .connect_timeout
            .as_millis()
            .clamp(1, u32::MAX as u128) as u64,
        connect_timeout: common.connect_timeout,
        deadline: Instant::now() + common.connect_timeout,
        name,
    };
    let started = match launch.fork.take() {
        Some(hooks) => {
            let f = fork::fork_child(
                router,
                &hooks,
                &plan.nonce,
                &plan.name,
                plan.child_timeout_ms,
                plan.deadline,
            )?;
            Started {
                process: Process::Forked(f.pid),
                ours: f.stream,
                tty: None,
                err_r: Some(f.stderr),
                _slave: None,
                program: "fork".into(),
                install: None,
            }
        }
        None => start_command(router, &common, &plan, &mut launch)?,
    };
    if default_name {
        plan.name = format!("{}.{}", common.method, started.process.pid());
    }
    adopt(router, &common, plan, started, launch)
}

/// Run the launch's command with its stdio connected as it asks.
fn start_command(
    router: &Router,
    common: &Common,
    plan: &Plan,
    launch: &mut Launch,
) -> Result<Started> {
    let (name, nonce, child_timeout_ms) = (&plan.name, &plan.nonce, plan.child_timeout_ms);
    let mut argv = launch.argv.clone();
    let mut install = None;
    if launch.first_stage != FirstStageArg::None {
        let cache_dir = common
            .cache_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let binaries = router.known_binaries();
        let known: Vec<Known> = binaries
            .iter()
            .map(|(machines, sha256, size)| Known {
                machines,
                sha256,
                size: Some(*size),
            })
            .collect();
        let stage = FirstStage {
            binaries: &known,
            nonce,
            child_timeout_ms,
            name: &format!("mitogen:{name}"),
            cache_dir: cache_dir.as_deref(),
        };
        argv.push(match launch.first_stage {
            FirstStageArg::CommandLine => stage.command_line().into(),
            _ => stage.script().into(),
        });
        install = Some(stage.install_script());
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    for (key, value) in &launch.env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    if launch.first_stage == FirstStageArg::None {
        cmd.arg0(format!("mitogen:{name}"))
            .env(CHILD_ENV, format!("{nonce}:{child_timeout_ms}"));
    }
    let ends = stdio::connect(&mut cmd, launch.stdio, name)?;
    if let Some(step) = launch.pre_exec.take() {
        step.install(&mut cmd);
    }
    let child = cmd.spawn().map_err(|e| StreamError::Spawn {
        program: argv[0].to_string_lossy().into_owned(),
        source: e,
    })?;
    drop(cmd);
    let ends = ends.spawned();
    let program = Path::new(&argv[0])
        .file_name()
        .unwrap_or(argv[0].as_os_str())
        .to_string_lossy()
        .into_owned();
    Ok(Started {
        process: Process::Child(RefCell::new(child)),
        ours: ends.ours,
        tty: ends.tty,
        err_r: ends.err_r,
        _slave: ends.slave,
        program,
        install,
    })
}

/// Bootstrap over a started process's stdio and register the new context.
fn adopt(
    router: &Router,
    common: &Common,
    plan: Plan,
    started: Started,
    launch: Launch,
) -> Result<Context> {
    let (id, name, nonce) = (plan.id, plan.name, plan.nonce);
    let max_message_size = plan.max_message_size;
    let Started {
        process, ours, tty, ..
    } = started;
    let config = ChildConfig {
        nonce: nonce.clone(),
        context_id: id,
        parent_ids: std::iter::once(router.context_id())
            .chain(router.parent_ids())
            .collect(),
        name: name.clone(),
        max_message_size: max_message_size as u32,
        debug: common.debug || router.inner.debug.load(Ordering::Relaxed),
        forward_level: log::level_num(&common.forward_level.unwrap_or(router.forward_level())),
        unidirectional: common
            .unidirectional
            .unwrap_or_else(|| router.inner.unidirectional.load(Ordering::Relaxed)),
        shutdown_timeout_ms: router.broker().shutdown_timeout().as_millis() as u64,
        flow_window: router.flow_window(),
        keepalive_ms: router
            .keepalive()
            .map(|k| (k.interval.as_millis() as u64, k.misses)),
        profiling: common.profiling || crate::profile::enabled(),
    };
    let conversation = Conversation {
        router,
        name: &name,
        program: &started.program,
        nonce: &nonce,
        read_fd: ours.as_raw_fd(),
        write_fd: ours.as_raw_fd(),
        stderr_fd: started.err_r.as_ref().map(|f| f.as_raw_fd()),
        tty_fd: tty.as_ref().map(|f| f.as_raw_fd()),
        stdio_is_tty: launch.stdio == StdioMode::Tty,
        program_on_stdout: launch.program_on_stdout,
        config_first: launch.first_stage == FirstStageArg::None,
        install: started.install,
        deadline: plan.deadline,
        timeout: plan.connect_timeout,
        exit_status: &|until| match &process {
            Process::Child(child) => exit_status(child, until),
            // Not our child: its status is the zygote's to know.
            Process::Forked(_) => None,
        },
    };
    let mut prompts = launch.prompts;
    let handshake = match conversation.run(&config, &mut prompts) {
        Ok(h) => h,
        Err(e) => {
            process.kill();
            return Err(match &prompts {
                Some(p) => scrub_error(e, p.as_ref()),
                None => e,
            });
        }
    };
    router
        .inner
        .binary_bytes_sent
        .fetch_add(handshake.binary_bytes, Ordering::Relaxed);
    if let Some(pid) = handshake.pid {
        lock(&router.inner.pids).insert(id, pid);
    }
    let _ = sys::set_nonblocking(ours.as_raw_fd(), true);

    let stream = Arc::new(Stream::new(
        router.broker().new_token(),
        name.clone(),
        Fds {
            read: ours,
            write: None,
            _keep: tty,
        },
        process.child_pid(),
        router.broker().clone(),
    ));
    stream.remote_id.store(id, Ordering::Relaxed);
    router.add_route(id, stream.clone());
    // Its name was checked (a remote_name) or made here (a target may
    // hold `/`, which `Context::new` refuses from users).
    router.set_name_of(id, &name);
    let context = Context::new(router, id, None);
    let outputs = started.err_r.into_iter().collect();
    register(
        router,
        stream,
        handshake.leftover,
        outputs,
        process.child_pid(),
        &name,
        max_message_size,
    );
    // Tell the tree above: this id is reachable through us. Sent before any
    // reply of ours, so a `via=` caller learns the route first.
    router.propagate(mitogen_wire::handle::ADD_ROUTE, &(id, name));
    Ok(context)
}

/// Wait at most until `until` for `child` to exit; how it ended, or `None`
/// while it runs. The child is reaped through `child` only, so its pid is
/// never signalled after another process may have taken it.
fn exit_status(child: &RefCell<Child>, until: Instant) -> Option<ExitStatus> {
    let mut child = child.borrow_mut();
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pidfd = sys::pidfd_open(child.id()).ok()?;
    match sys::poll_readable(pidfd.as_raw_fd(), until) {
        Ok(true) => child.try_wait().ok().flatten(),
        _ => None,
    }
}

/// Hand the new stream, its stderr and its process to the broker.
/// `outputs` (stderr, a terminal) are kept open and their lines logged.
fn register(
    router: &Router,
    stream: Arc<Stream>,
    leftover: Vec<u8>,
    outputs: Vec<OwnedFd>,
    pid: Option<u32>,
    name: &str,
    max_message_size: usize,
) {
    let mut deframer = Deframer::new(max_message_size as u32);
    deframer.push(&leftover);
    let events = router.events();
    let r2 = router.clone();
    let name = name.to_string();
    let exited = stream.clone();
    router.broker().defer_core(move |core| {
        core.add_stream(stream, deframer, events);
        for fd in outputs {
            let n2 = name.clone();
            core.add_lines(
                fd,
                Box::new(move |line| {
                    if let Some(line) = line {
                        log::emit(
                            &Record {
                                level: 0,
                                target: "stderr".into(),
                                message: String::from_utf8_lossy(line).into_owned(),
                                context: n2.clone(),
                            },
                            None,
                        );
                    }
                }),
            );
        }
        // A forked child is not ours to reap: its stream is its liveness.
        if let Some(pid) = pid {
            core.add_child(
                pid,
                Box::new(move |status| {
                    tracing::debug!("{name} (pid {pid}) exited with wait status {status}");
                    crate::router::fire_exit(&exited, status);
                    drop(r2);
                }),
            );
        }
    });
}
