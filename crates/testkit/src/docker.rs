//! The Docker engine for container tests: the project's own images, built
//! from Debian packages by `scripts/images/build.sh` (nothing is pulled), and
//! a [`Container`] guard that removes its container on drop.
//!
//! | [`image`] name | What is inside |
//! |----------------|----------------|
//! | `busybox` | static busybox, `/bin/sh` and the applets as links, users `root` and `app` (1000:1000); no libc |
//! | `debian`  | libc6, libgcc-s1, dash, coreutils, gzip: dynamically linked programs (and Python) run there; same users |
//! | `noshell` | only `/busybox` (no `/bin/sh`); start it with `["/busybox", "sleep", "1000000"]` |
//!
//! Tests call [`available`] through [`crate::fixture::ready_or_skip`]:
//!
//! ```no_run
//! use mitogen_testkit::{docker, fixture};
//! if !fixture::ready_or_skip("docker_works", docker::available()) {
//!     return;
//! }
//! let ctr = docker::Container::start(&docker::image("debian")).unwrap();
//! assert!(ctr.is_running());
//! ```

use std::io;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The program tests run (found on `PATH`).
pub const DOCKER: &str = "docker";

/// The images `scripts/images/build.sh` builds, by short name.
pub const IMAGES: [&str; 3] = ["busybox", "debian", "noshell"];

/// How long any one `docker` command may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A container engine the tests drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The machine's Docker engine.
    Docker,
    /// podman (root, its own storage; `scripts/images/build.sh` copies the
    /// images there).
    Podman,
    /// buildah working containers (podman's storage).
    Buildah,
}

impl Engine {
    /// The program (found on `PATH`).
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Buildah => "buildah",
        }
    }

    /// Full reference of one of [`IMAGES`] in this engine's storage.
    ///
    /// # Examples
    /// ```
    /// use mitogen_testkit::docker::Engine;
    /// assert_eq!(Engine::Podman.image("busybox"), "localhost/mitogen-test/busybox:latest");
    /// ```
    pub fn image(self, name: &str) -> String {
        match self {
            Engine::Docker => image(name),
            Engine::Podman | Engine::Buildah => format!("localhost/{}", image(name)),
        }
    }

    /// Run `<program> <args>` and collect its output, bounded by
    /// [`COMMAND_TIMEOUT`].
    pub fn run(self, args: &[&str]) -> io::Result<Output> {
        let mut cmd = Command::new(self.program());
        cmd.args(args);
        run_bounded(&mut cmd, COMMAND_TIMEOUT)
    }

    /// `Ok` when this engine runs containers here and holds every image
    /// of [`IMAGES`]; otherwise why not.
    pub fn available(self) -> Result<(), String> {
        if self == Engine::Docker {
            return available();
        }
        let prog = self.program();
        let probe = self.run(&["--version"]).map_err(|e| {
            format!("cannot run {prog}: {e} (scripts/fixture/setup.sh installs it)")
        })?;
        if !probe.status.success() {
            return Err(format!("{prog} --version fails"));
        }
        for name in IMAGES {
            let img = self.image(name);
            let out = Engine::Podman
                .run(&["image", "exists", &img])
                .map_err(|e| format!("cannot run podman: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "image {img} missing in podman's storage: run scripts/images/build.sh as root"
                ));
            }
        }
        Ok(())
    }
}

/// Full reference of one of [`IMAGES`]: `mitogen-test/<name>:latest`.
///
/// # Examples
/// ```
/// assert_eq!(mitogen_testkit::docker::image("debian"), "mitogen-test/debian:latest");
/// ```
pub fn image(name: &str) -> String {
    format!("mitogen-test/{name}:latest")
}

/// `Ok` when `docker` runs, the engine answers and every image of
/// [`IMAGES`] exists; otherwise why not (for
/// [`crate::fixture::ready_or_skip`]).
///
/// # Examples
/// ```no_run
/// if let Err(why) = mitogen_testkit::docker::available() {
///     eprintln!("SKIP: {why}");
/// }
/// ```
pub fn available() -> Result<(), String> {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"])
        .map_err(|e| format!("cannot run {DOCKER}: {e}"))?;
    if !info.status.success() {
        return Err(format!(
            "the Docker engine does not answer (docker info: {})",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    for name in IMAGES {
        let img = image(name);
        let out = docker(&["image", "inspect", "--format", "{{.Id}}", &img])
            .map_err(|e| format!("cannot run {DOCKER}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "image {img} missing: run scripts/images/build.sh (or scripts/fixture/setup.sh) as root"
            ));
        }
    }
    Ok(())
}

/// Run `docker <args>` and collect its output; killed after
/// [`COMMAND_TIMEOUT`] (an error of kind `TimedOut`).
///
/// # Examples
/// ```no_run
/// let out = mitogen_testkit::docker::docker(&["ps", "-a"]).unwrap();
/// assert!(out.status.success());
/// ```
pub fn docker(args: &[&str]) -> io::Result<Output> {
    let mut cmd = Command::new(DOCKER);
    cmd.args(args);
    run_bounded(&mut cmd, COMMAND_TIMEOUT)
}

/// Run `cmd` (stdin `/dev/null`) and collect its output, killing it and
/// failing with `TimedOut` after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain both pipes on threads so a chatty command cannot block.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} still running after {timeout:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// A fresh container name `mitogen-test-<pid>-<n>-<nanos>`.
pub fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("mitogen-test-{}-{n}-{nanos:x}", std::process::id())
}

/// Ids of all containers, running or not, whose id starts with `id` (empty
/// when none: `docker ps -a --filter id=<id>`).
pub fn containers_with_id(id: &str) -> io::Result<Vec<String>> {
    let filter = format!("id={id}");
    let out = docker(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter])?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "docker ps failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// A container started by the test, removed (`docker rm -f`, `podman rm
/// -f -t 0`, `buildah rm`) on drop.
#[derive(Debug)]
pub struct Container {
    engine: Engine,
    name: String,
    id: String,
}

impl Container {
    /// `docker run -d --name mitogen-test-<unique> <image> sleep 1000000`.
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen_testkit::docker::{image, Container};
    /// let ctr = Container::start(&image("busybox")).unwrap();
    /// println!("{}", ctr.name());
    /// ```
    pub fn start(image: &str) -> io::Result<Container> {
        Container::start_with(image, &[], &["sleep", "1000000"])
    }

    /// `docker run -d --name mitogen-test-<unique> <run_args> <image> <command>`.
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen_testkit::docker::{image, Container};
    /// let ctr = Container::start_with(&image("noshell"), &[], &["/busybox", "sleep", "1000000"]).unwrap();
    /// ```
    pub fn start_with(image: &str, run_args: &[&str], command: &[&str]) -> io::Result<Container> {
        Container::start_in(Engine::Docker, image, run_args, command)
    }

    /// A container of `engine`: `docker`/`podman run -d --name
    /// mitogen-test-<unique> <run_args> <image> <command>`, or `buildah from
    /// --pull=never --name mitogen-test-<unique> <image>` (a working
    /// container: `run_args` and `command` are not used).
    ///
    /// podman runs with `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`:
    /// its defaults exceed the hard limits this machine gives root, and
    /// runc then fails with "error setting rlimit type 7: operation not
    /// permitted" (docs/testing.md, Containers).
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen_testkit::docker::{Container, Engine};
    /// let ctr = Container::start_in(Engine::Podman, &Engine::Podman.image("debian"), &[], &["sleep", "1000000"]).unwrap();
    /// ```
    pub fn start_in(
        engine: Engine,
        image: &str,
        run_args: &[&str],
        command: &[&str],
    ) -> io::Result<Container> {
        let name = unique_name();
        let mut args: Vec<&str> = match engine {
            Engine::Docker => vec!["run", "-d", "--name", &name],
            Engine::Podman => vec![
                "run",
                "-d",
                "--name",
                &name,
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ],
            Engine::Buildah => vec!["from", "--pull=never", "--name", &name],
        };
        if engine != Engine::Buildah {
            args.extend_from_slice(run_args);
        }
        args.push(image);
        if engine != Engine::Buildah {
            args.extend_from_slice(command);
        }
        let mut ctr = Container {
            engine,
            name: name.clone(),
            id: String::new(),
        };
        // From here on a half-created container is removed by drop.
        let out = engine.run(&args)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{} {} {image} failed: {}",
                engine.program(),
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        ctr.id = id;
        Ok(ctr)
    }

    /// The container's name (`mitogen-test-…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `true` while the container runs (`docker inspect .State.Running`).
    pub fn is_running(&self) -> bool {
        self.engine
            .run(&["inspect", "--format", "{{.State.Running}}", &self.name])
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
            .unwrap_or(false)
    }

    /// Stop the container at once (`docker kill`) and wait until the engine
    /// reports it not running; it still exists until drop.
    pub fn stop(&self) -> io::Result<()> {
        let out = self.engine.run(&["kill", &self.name])?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "docker kill {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let out = self.engine.run(&["wait", &self.name])?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "docker wait {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `docker exec <name> <command>` (`podman exec`, `buildah run
    /// <name> --`), bounded by [`COMMAND_TIMEOUT`].
    pub fn exec(&self, command: &[&str]) -> io::Result<Output> {
        let mut args = match self.engine {
            Engine::Buildah => vec!["run", self.name.as_str(), "--"],
            _ => vec!["exec", self.name.as_str()],
        };
        args.extend_from_slice(command);
        self.engine.run(&args)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let args: &[&str] = match self.engine {
            Engine::Docker => &["rm", "-f", &self.name],
            Engine::Podman => &["rm", "-f", "-t", "0", &self.name],
            Engine::Buildah => &["rm", &self.name],
        };
        match self.engine.run(args) {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: {} rm {} failed: {}",
                self.engine.program(),
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!(
                "warning: {} rm {} failed: {e}",
                self.engine.program(),
                self.name
            ),
        }
    }
}
