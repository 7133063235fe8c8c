//! Start a connection command and turn it into a registered context.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitogen_wire::Deframer;

use crate::bootstrap::binary::Binary;
use crate::bootstrap::first_stage::FirstStage;
use crate::bootstrap::parent::Conversation;
use crate::bootstrap::{ChildConfig, CHILD_ENV};
use crate::broker::{Fds, Stream};
use crate::context::Context;
use crate::error::{Result, StreamError};
use crate::log::{self, Record};
use crate::router::Router;
use crate::sys;

/// Options every method shares.
pub(crate) struct Common {
    pub method: &'static str,
    pub name: Option<String>,
    pub connect_timeout: Duration,
    pub debug: bool,
}

/// The command to run.
pub(crate) struct Launch {
    /// Program and arguments; for a shell launch the first stage is appended.
    argv: Vec<OsString>,
    /// Exec this program directly: `argv[0]` is `mitogen:<name>`.
    direct: bool,
    /// Cache directory tried first by the first stage.
    cache_dir: Option<PathBuf>,
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
            direct: true,
            cache_dir: None,
        })
    }

    /// Run `prefix` followed by the first-stage script as one argument.
    pub(crate) fn shell(prefix: Vec<OsString>, cache_dir: Option<PathBuf>) -> Result<Launch> {
        Ok(Launch {
            argv: prefix,
            direct: false,
            cache_dir,
        })
    }
}

fn nonce() -> String {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let t = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64;
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Start `launch`, bootstrap over its stdio, and register the new context.
pub(crate) fn connect(router: &Router, common: Common, launch: Launch) -> Result<Context> {
    let id = router.allocate_id()?;
    let name = common
        .name
        .clone()
        .unwrap_or_else(|| format!("{}.{id}", common.method));
    let nonce = nonce();
    let io = |what: &str, e| StreamError::Io {
        what: format!("{what} for {name}"),
        source: e,
    };
    let (ours, theirs) = sys::socketpair_cloexec().map_err(|e| io("creating a socketpair", e))?;
    let (err_r, err_w) = sys::pipe_cloexec().map_err(|e| io("creating a pipe", e))?;
    let theirs2 = theirs
        .try_clone()
        .map_err(|e| io("duplicating a socket", e))?;

    let mut argv = launch.argv.clone();
    let mut cmd = Command::new(&argv[0]);
    if launch.direct {
        cmd.arg0(format!("mitogen:{name}")).env(CHILD_ENV, &nonce);
    } else {
        let binary = Binary::current().map_err(|e| io("reading this program's executable", e))?;
        let cache_dir = launch
            .cache_dir
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let stage = FirstStage {
            sha256: &binary.sha256,
            nonce: &nonce,
            name: &format!("mitogen:{name}"),
            cache_dir: cache_dir.as_deref(),
        };
        argv.push(stage.script().into());
    }
    cmd.args(&argv[1..])
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::from(theirs2))
        .stderr(Stdio::from(err_w));
    let mut child = cmd.spawn().map_err(|e| StreamError::Spawn {
        program: argv[0].to_string_lossy().into_owned(),
        source: e,
    })?;
    drop(cmd);
    let pid = child.id();

    let config = ChildConfig {
        context_id: id,
        parent_ids: std::iter::once(router.context_id())
            .chain(router.parent_ids())
            .collect(),
        name: name.clone(),
        max_message_size: router.max_message_size() as u32,
        debug: common.debug || router.inner.debug.load(Ordering::Relaxed),
        unidirectional: router.inner.unidirectional.load(Ordering::Relaxed),
        shutdown_timeout_ms: router.broker().shutdown_timeout().as_millis() as u64,
    };
    let conversation = Conversation {
        name: &name,
        nonce: &nonce,
        read_fd: ours.as_raw_fd(),
        write_fd: ours.as_raw_fd(),
        stderr_fd: Some(err_r.as_raw_fd()),
        deadline: Instant::now() + common.connect_timeout,
        timeout: common.connect_timeout,
    };
    let handshake = match conversation.run(&config) {
        Ok(h) => h,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    router
        .inner
        .binary_bytes_sent
        .fetch_add(handshake.binary_bytes, Ordering::Relaxed);
    let _ = sys::set_nonblocking(ours.as_raw_fd(), true);

    let stream = Arc::new(Stream::new(
        router.broker().new_token(),
        name.clone(),
        Fds {
            read: ours,
            write: None,
        },
        Some(pid),
        router.broker().clone(),
    ));
    stream.remote_id.store(id, Ordering::Relaxed);
    router.add_route(id, stream.clone());
    let context = Context::new(router, id, Some(&name));
    register(router, stream, handshake.leftover, err_r, pid, &name);
    // Tell the tree above: this id is reachable through us. Sent before any
    // reply of ours, so a `via=` caller learns the route first.
    router.propagate(mitogen_wire::handle::ADD_ROUTE, &(id, name));
    Ok(context)
}

/// Hand the new stream, its stderr and its process to the broker.
fn register(
    router: &Router,
    stream: Arc<Stream>,
    leftover: Vec<u8>,
    stderr: OwnedFd,
    pid: u32,
    name: &str,
) {
    let mut deframer = Deframer::new(router.max_message_size() as u32);
    deframer.push(&leftover);
    let events = router.events();
    let r2 = router.clone();
    let name = name.to_string();
    router.broker().defer_core(move |core| {
        core.add_stream(stream, deframer, events);
        let n2 = name.clone();
        core.add_lines(
            stderr,
            Box::new(move |line| {
                if let Some(line) = line {
                    log::emit(&Record {
                        level: 0,
                        target: "stderr".into(),
                        message: String::from_utf8_lossy(line).into_owned(),
                        context: n2.clone(),
                    });
                }
            }),
        );
        core.add_child(
            pid,
            Box::new(move |status| {
                tracing::debug!("{name} (pid {pid}) exited with wait status {status}");
                drop(r2);
            }),
        );
    });
}
