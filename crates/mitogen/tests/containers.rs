//! The container methods against the real engines of this machine: docker
//! (the Docker engine), podman and buildah, on the project's own images
//! (`scripts/images/build.sh`, docs/testing.md "Containers"). Each test
//! starts its containers through `mitogen_testkit::docker::Container`,
//! which removes them on drop. Skips, saying why, without an engine or the
//! images.

mod common;

use std::time::Duration;

use common::*;
use mitogen::{
    BuildahOptions, ConnectFailure, Context, DockerOptions, Error, MethodOptions, PodmanOptions,
    Router, SshOptions, SudoOptions,
};
use mitogen_testkit::docker::{self, image, Container, Engine};
use mitogen_testkit::fixture;
use mitogen_testkit::sshd::{Sshd, HOST};

/// `(uid, gid)` of this process, from `/proc/self/status`.
#[mitogen::remote]
fn ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// The working directory of this process.
#[mitogen::remote]
fn cwd() -> String {
    std::env::current_dir().unwrap().display().to_string()
}

/// An environment variable of this process.
#[mitogen::remote]
fn env_var(name: String) -> Option<String> {
    std::env::var(name).ok()
}

/// `/etc/hostname`: a container's short id, unless set otherwise.
#[mitogen::remote]
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn ready(test: &str) -> bool {
    fixture::ready_or_skip(test, docker::available())
}

fn start(name: &str) -> Container {
    Container::start(&image(name)).unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// The error of a connection that must fail.
fn failure(r: mitogen::Result<Context>, what: &str) -> Error {
    match r {
        Ok(c) => panic!("{what}: expected an error, got context {}", c.name()),
        Err(e) => e,
    }
}

/// Asserts `e` is of `kind` and its text names every one of `words`.
fn assert_failure(e: &Error, kind: ConnectFailure, words: &[&str]) {
    let text = e.to_string();
    assert_eq!(e.connect_failure(), Some(kind), "{text}");
    for w in words {
        assert!(text.contains(w), "{w:?} not in {text:?}");
    }
}

#[test]
fn docker_container_answers_calls_inside_the_container() {
    if !ready("docker_container_answers_calls_inside_the_container") {
        return;
    }
    let ctr = start("debian");
    Router::with(|router| {
        let c = router.docker(DockerOptions::container(ctr.name())).unwrap();
        assert_eq!(c.name(), format!("docker.{}", ctr.name()));
        assert_eq!(c.call(add::remote, (2, 3)).unwrap(), 5);
        assert!(ctr.id().starts_with(&c.call(hostname::remote, ()).unwrap()));
        assert_eq!(c.call(ids::remote, ()).unwrap(), (0, 0));
        // A second context reuses the binary cached in the container.
        let c2 = router.docker(DockerOptions::container(ctr.name())).unwrap();
        assert_eq!(c2.call(binary_fetches::remote, ()).unwrap(), 0);
        assert_ne!(
            c.call(pid::remote, ()).unwrap(),
            c2.call(pid::remote, ()).unwrap()
        );
    })
    .unwrap();
    // The contexts ended with the router: only the container's own
    // `sleep` is left in it (`docker top` lists its processes).
    mitogen_testkit::wait_for(
        Duration::from_secs(20),
        "the contexts' processes to leave the container",
        || {
            let top = docker::docker(&["top", ctr.name(), "-o", "pid,args"]).unwrap();
            let text = String::from_utf8_lossy(&top.stdout).to_string();
            text.lines().skip(1).count() == 1 && text.contains("sleep 1000000")
        },
    );
}

#[test]
fn docker_image_runs_a_container_removed_with_the_context() {
    if !ready("docker_image_runs_a_container_removed_with_the_context") {
        return;
    }
    let short_id = Router::with(|router| {
        let c = router
            .docker(DockerOptions::image(image("debian")))
            .unwrap();
        assert_eq!(c.call(add::remote, (20, 22)).unwrap(), 42);
        let id = c.call(hostname::remote, ()).unwrap();
        let running = docker::containers_with_id(&id).unwrap();
        assert_eq!(running.len(), 1, "container {id} not listed: {running:?}");
        c.shutdown(true).unwrap();
        id
    })
    .unwrap();
    // `docker run --rm`: the engine removes the container once its process
    // (our context) has exited.
    mitogen_testkit::wait_for(
        Duration::from_secs(30),
        &format!("container {short_id} to be removed"),
        || docker::containers_with_id(&short_id).unwrap().is_empty(),
    );
}

#[test]
fn docker_username_workdir_env() {
    if !ready("docker_username_workdir_env") {
        return;
    }
    let ctr = start("debian");
    Router::with(|router| {
        let c = router
            .docker(
                DockerOptions::container(ctr.name())
                    .username("app")
                    .workdir("/tmp")
                    .env("MITOGEN_TEST_VAR", "a value with spaces=and equals"),
            )
            .unwrap();
        assert_eq!(c.call(ids::remote, ()).unwrap(), (1000, 1000));
        assert_eq!(c.call(whoami::remote, ()).unwrap(), "app");
        assert_eq!(c.call(cwd::remote, ()).unwrap(), "/tmp");
        assert_eq!(
            c.call(env_var::remote, ("MITOGEN_TEST_VAR".to_string(),))
                .unwrap()
                .as_deref(),
            Some("a value with spaces=and equals")
        );
    })
    .unwrap();
}

#[test]
fn docker_errors_name_the_cause_and_the_container() {
    if !ready("docker_errors_name_the_cause_and_the_container") {
        return;
    }
    Router::with(|router| {
        // Not found.
        let missing = docker::unique_name();
        let e = failure(
            router.docker(DockerOptions::container(&missing)),
            "missing container",
        );
        assert_failure(&e, ConnectFailure::ContainerNotFound, &[&missing]);

        // Not running.
        let stopped = start("busybox");
        stopped.stop().unwrap();
        let e = failure(
            router.docker(DockerOptions::container(stopped.name())),
            "stopped container",
        );
        assert_failure(&e, ConnectFailure::ContainerNotRunning, &[stopped.name()]);

        // Paused.
        let paused = start("busybox");
        let out = docker::docker(&["pause", paused.name()]).unwrap();
        assert!(out.status.success(), "docker pause: {out:?}");
        let e = failure(
            router.docker(DockerOptions::container(paused.name())),
            "paused container",
        );
        assert_failure(
            &e,
            ConnectFailure::ContainerNotRunning,
            &[paused.name(), "paused"],
        );

        // Unknown user.
        let bb = start("busybox");
        let e = failure(
            router.docker(DockerOptions::container(bb.name()).username("ghost")),
            "unknown user",
        );
        assert_failure(&e, ConnectFailure::UnknownUser, &[bb.name(), "ghost"]);

        // No /bin/sh in the image.
        let ns = Container::start_with(&image("noshell"), &[], &["/busybox", "sleep", "1000000"])
            .unwrap();
        let e = failure(
            router.docker(DockerOptions::container(ns.name())),
            "no shell",
        );
        assert_failure(&e, ConnectFailure::NoShell, &[ns.name(), "/bin/sh"]);

        // No shell in image mode either.
        let e = failure(
            router.docker(DockerOptions::image(image("noshell"))),
            "no shell, image mode",
        );
        assert_failure(&e, ConnectFailure::NoShell, &["mitogen-test/noshell"]);
    })
    .unwrap();
}

/// A `docker_path` wrapper script in a fresh directory, removed on drop.
struct Wrapper {
    dir: std::path::PathBuf,
}

impl Wrapper {
    fn new(body: &str) -> Wrapper {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(docker::unique_name());
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("docker");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Wrapper { dir }
    }

    fn path(&self) -> String {
        self.dir.join("docker").display().to_string()
    }
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn docker_engine_unreachable_and_socket_permission_denied() {
    if !ready("docker_engine_unreachable_and_socket_permission_denied") {
        return;
    }
    let ctr = start("debian");
    Router::with(|router| {
        // The real docker client, pointed at a socket that does not exist.
        let unreachable = Wrapper::new("DOCKER_HOST=unix:///nonexistent exec docker \"$@\"");
        let e = failure(
            router.docker(DockerOptions::container(ctr.name()).docker_path(unreachable.path())),
            "unreachable engine",
        );
        assert_failure(
            &e,
            ConnectFailure::EngineUnavailable,
            &[ctr.name(), "docker"],
        );

        // The real docker client as a user who may not use the socket.
        if !mitogen_testkit::is_root() {
            eprintln!("SKIP socket permission denied: needs root (runuser)");
            return;
        }
        let denied = Wrapper::new("exec /usr/sbin/runuser -u nobody -- docker \"$@\"");
        let e = failure(
            router.docker(DockerOptions::container(ctr.name()).docker_path(denied.path())),
            "socket permission denied",
        );
        assert_failure(
            &e,
            ConnectFailure::PermissionDenied,
            &[ctr.name(), "docker"],
        );
    })
    .unwrap();
}

/// The workspace builds static binaries (`.cargo/config.toml`), so this
/// test binary itself runs as a child on a busybox-only target (no libc),
/// and a reconnect finds it cached. The dynamic build's clear failure there
/// is `tests/static_target.rs`.
#[test]
fn docker_busybox_image_runs_the_test_binary() {
    if !ready("docker_busybox_image_runs_the_test_binary") {
        return;
    }
    let bb = start("busybox");
    Router::with(|router| {
        let connect = || {
            let mut opts = DockerOptions::container(bb.name());
            opts.common.connect_timeout = Duration::from_secs(30);
            router
                .docker(opts)
                .expect("docker into the busybox container")
        };
        let c = connect();
        assert_eq!(c.call(add::remote, (20, 22)).unwrap(), 42);
        assert_eq!(c.call(ids::remote, ()).unwrap(), (0, 0));
        let cold = router.binary_bytes_sent();
        assert!(cold > 0, "the first connection uploaded nothing");
        c.shutdown(true).unwrap();
        let c = connect();
        assert_eq!(c.call(add::remote, (1, 2)).unwrap(), 3);
        assert_eq!(
            router.binary_bytes_sent(),
            cold,
            "the reconnect uploaded the binary again"
        );
    })
    .unwrap();
}

#[test]
fn docker_through_ssh_and_sudo() {
    if !fixture::ready_or_skip("docker_through_ssh_and_sudo", Sshd::available())
        || !ready("docker_through_ssh_and_sudo")
    {
        return;
    }
    let sshd = Sshd::start().expect("start sshd");
    let ctr = start("debian");
    Router::with(|router| {
        let mut o = SshOptions::new(HOST);
        o.username = Some("root".into());
        o.ssh_args = sshd.ssh_key_args();
        o.common.connect_timeout = Duration::from_secs(20);
        let ssh = router
            .ssh(o)
            .unwrap_or_else(|e| panic!("ssh: {e}\n{}", sshd.log()));
        let mut s = SudoOptions::default();
        s.common.via = Some(ssh.clone());
        let sudo = router.sudo(s).unwrap();
        let mut d = DockerOptions::container(ctr.name());
        d.common.via = Some(sudo.clone());
        let c = router.docker(d).unwrap();
        assert_eq!(c.call(add::remote, (1, 2)).unwrap(), 3);
        assert!(ctr.id().starts_with(&c.call(hostname::remote, ()).unwrap()));
        // Errors keep their kind across the hops.
        let mut d = DockerOptions::container("mitogen-test-no-such-container");
        d.common.via = Some(sudo.clone());
        let e = failure(router.docker(d), "missing container via sudo");
        assert_failure(
            &e,
            ConnectFailure::ContainerNotFound,
            &["mitogen-test-no-such-container"],
        );
    })
    .unwrap();
}

#[test]
fn podman_container_user_and_errors() {
    if !fixture::ready_or_skip(
        "podman_container_user_and_errors",
        Engine::Podman.available(),
    ) {
        return;
    }
    let ctr = Container::start_in(
        Engine::Podman,
        &Engine::Podman.image("debian"),
        &[],
        &["sleep", "1000000"],
    )
    .unwrap();
    Router::with(|router| {
        engine_basics(&router, "podman", ctr.name(), |name, user| {
            let o = PodmanOptions::container(name);
            match user {
                Some(u) => o.username(u).into(),
                None => o.into(),
            }
        });

        let stopped = Container::start_in(
            Engine::Podman,
            &Engine::Podman.image("busybox"),
            &[],
            &["sleep", "1000000"],
        )
        .unwrap();
        stopped.stop().unwrap();
        let e = failure(
            router.podman(PodmanOptions::container(stopped.name())),
            "stopped container",
        );
        assert_failure(&e, ConnectFailure::ContainerNotRunning, &[stopped.name()]);

        let ns = Container::start_in(
            Engine::Podman,
            &Engine::Podman.image("noshell"),
            &[],
            &["/busybox", "sleep", "1000000"],
        )
        .unwrap();
        let e = failure(
            router.podman(PodmanOptions::container(ns.name())),
            "no shell",
        );
        assert_failure(&e, ConnectFailure::NoShell, &[ns.name(), "/bin/sh"]);
    })
    .unwrap();
}

#[test]
fn buildah_container_user_and_errors() {
    if !fixture::ready_or_skip(
        "buildah_container_user_and_errors",
        Engine::Buildah.available(),
    ) {
        return;
    }
    let ctr =
        Container::start_in(Engine::Buildah, &Engine::Buildah.image("debian"), &[], &[]).unwrap();
    Router::with(|router| {
        engine_basics(&router, "buildah", ctr.name(), |name, user| {
            let o = BuildahOptions::container(name);
            match user {
                Some(u) => o.username(u).into(),
                None => o.into(),
            }
        });
    })
    .unwrap();
}

/// What every engine method does: a context in the container `ctr` as
/// its default user (root) and as `app`; a missing container and an
/// unknown user are refused with their kind, naming them. `opts` builds the
/// method's options for a container name and a user.
fn engine_basics(
    router: &Router,
    method: &str,
    ctr: &str,
    opts: impl Fn(&str, Option<&str>) -> MethodOptions,
) {
    let c = router.connect(opts(ctr, None)).unwrap();
    assert_eq!(c.name(), format!("{method}.{ctr}"));
    assert_eq!(c.call(add::remote, (2, 3)).unwrap(), 5);
    assert_eq!(c.call(ids::remote, ()).unwrap(), (0, 0));
    let app = router.connect(opts(ctr, Some("app"))).unwrap();
    assert_eq!(app.call(ids::remote, ()).unwrap(), (1000, 1000));

    let missing = docker::unique_name();
    let e = failure(router.connect(opts(&missing, None)), "missing container");
    assert_failure(&e, ConnectFailure::ContainerNotFound, &[&missing]);
    let e = failure(router.connect(opts(ctr, Some("ghost"))), "unknown user");
    assert_failure(&e, ConnectFailure::UnknownUser, &[ctr, "ghost"]);
}
