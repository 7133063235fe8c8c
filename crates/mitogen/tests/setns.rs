//! The `setns` method against the real Docker engine and the project's
//! images (scripts/images/build.sh): a context inside a running container,
//! in its namespaces, as its users; each failure by kind. Needs root and
//! docker with the images; skips, saying why, otherwise.

use std::time::Duration;

use mitogen::{Bootstrap, ConnectFailure, ContainerKind, Context, Router, SetnsOptions};
use mitogen_testkit::docker::{self, Container};
use mitogen_testkit::fixture::ready_or_skip;

/// What a context sees of itself, read from `/proc` (no unsafe, no libc).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Inside {
    /// `/proc/self/ns/{pid,mnt,uts}` link texts.
    ns: Vec<String>,
    hostname: String,
    /// Real, effective, saved, filesystem ids.
    uids: Vec<u32>,
    gids: Vec<u32>,
    groups: Vec<u32>,
    pid: u32,
    home: String,
    user: String,
    cwd: String,
}

fn status_ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[mitogen::remote]
fn inside() -> Inside {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut groups = status_ids(&status, "Groups:");
    groups.sort();
    Inside {
        ns: ["pid", "mnt", "uts"]
            .iter()
            .map(|n| {
                std::fs::read_link(format!("/proc/self/ns/{n}"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|e| format!("error: {e}"))
            })
            .collect(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        uids: status_ids(&status, "Uid:"),
        gids: status_ids(&status, "Gid:"),
        groups,
        pid: std::process::id(),
        home: std::env::var("HOME").unwrap_or_default(),
        user: std::env::var("USER").unwrap_or_default(),
        cwd: std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

#[mitogen::remote]
fn add(a: i32, b: i32) -> i32 {
    a + b
}

fn ready(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let why = if status_ids(&status, "Uid:").get(1) == Some(&0) {
        docker::available()
    } else {
        Err("needs root".to_string())
    };
    ready_or_skip(test, why)
}

/// A running container of the debian image (a shell and coreutils for the
/// tests' checks) with a known host name.
fn debian() -> Container {
    Container::start_with(
        &docker::image("debian"),
        &["--hostname", "setns-test"],
        &["sleep", "1000000"],
    )
    .expect("starting a container")
}

fn leader_pid(ctr: &Container) -> u32 {
    let out = docker::docker(&["inspect", "-f", "{{.State.Pid}}", ctr.name()]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn opts(ctr: &Container, username: &str) -> SetnsOptions {
    let mut o = SetnsOptions::new(ctr.name(), ContainerKind::Docker);
    o.username = username.into();
    o.common.connect_timeout = Duration::from_secs(30);
    o
}

/// Pids of processes in the container's pid namespace, seen from the host.
fn processes_in(ctr: &Container) -> Vec<u32> {
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", leader_pid(ctr))).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
        })
        .collect()
}

fn connect_failure(r: mitogen::Result<Context>, what: &str) -> (ConnectFailure, String) {
    match r {
        Ok(c) => panic!("{what}: connected to {}", c.name()),
        Err(e) => (
            e.connect_failure()
                .unwrap_or_else(|| panic!("{what}: no connect failure kind in {e}")),
            e.to_string(),
        ),
    }
}

#[test]
fn setns_docker_root_answers_calls_in_the_containers_namespaces() {
    if !ready("setns_docker_root_answers_calls_in_the_containers_namespaces") {
        return;
    }
    let ctr = debian();
    let leader = leader_pid(&ctr);
    let expected: Vec<String> = ["pid", "mnt", "uts"]
        .iter()
        .map(|n| {
            std::fs::read_link(format!("/proc/{leader}/ns/{n}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        ours.to_string_lossy(),
        expected[0],
        "docker gave no pid namespace"
    );
    Router::with(|router| {
        let c = router.setns(opts(&ctr, "root")).unwrap();
        assert_eq!(c.call(add::remote, (2, 3)).unwrap(), 5);
        let i = c.call(inside::remote, ()).unwrap();
        assert_eq!(i.ns, expected, "{i:?}");
        assert_eq!(i.hostname, "setns-test");
        assert_eq!(i.uids, vec![0; 4]);
        assert_eq!(i.gids, vec![0; 4]);
        assert_eq!((i.home.as_str(), i.user.as_str()), ("/root", "root"));
        // Its pid is one of the container's: the leader is 1 there.
        assert!(i.pid > 1, "{i:?}");
        assert_eq!(c.name(), format!("setns.{}", ctr.name()));
        // The default bootstrap runs our executable from the host: nothing
        // is copied into the container.
        assert_eq!(router.binary_bytes_sent(), 0);
        c.shutdown(true).unwrap();
    })
    .unwrap();
    // Nothing of ours is left in the container.
    mitogen_testkit::wait_for(Duration::from_secs(10), "the context to leave", || {
        processes_in(&ctr) == vec![leader]
    });
}

#[test]
fn setns_as_app_has_its_ids_and_groups() {
    if !ready("setns_as_app_has_its_ids_and_groups") {
        return;
    }
    let ctr = debian();
    // The groups docker itself gives `app`.
    let out = docker::docker(&["exec", "-u", "app", ctr.name(), "id", "-G"]).unwrap();
    let mut groups: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert!(groups.contains(&1000), "{groups:?}");
    Router::with(|router| {
        let c = router.setns(opts(&ctr, "app")).unwrap();
        let i = c.call(inside::remote, ()).unwrap();
        assert_eq!(i.uids, vec![1000; 4], "real, effective, saved, fs: {i:?}");
        assert_eq!(i.gids, vec![1000; 4], "real, effective, saved, fs: {i:?}");
        assert_eq!(i.groups, groups, "no host group (root's 0) is kept");
        assert_eq!(i.user, "app");
        assert_eq!(i.home, "/home/app");
    })
    .unwrap();
}

#[test]
fn setns_failures_by_kind() {
    if !ready("setns_failures_by_kind") {
        return;
    }
    let ctr = debian();
    Router::with(|router| {
        let missing = format!("{}-missing", ctr.name());
        let mut o = opts(&ctr, "root");
        o.container = missing.clone();
        let (k, e) = connect_failure(router.setns(o), "missing container");
        assert_eq!(k, ConnectFailure::ContainerNotFound, "{e}");
        assert!(e.contains(&missing) && e.contains("docker"), "{e}");

        let (k, e) = connect_failure(router.setns(opts(&ctr, "nosuchuser")), "unknown user");
        assert_eq!(k, ConnectFailure::UnknownUser, "{e}");
        assert!(e.contains("nosuchuser") && e.contains(ctr.name()), "{e}");

        let mut o = opts(&ctr, "root");
        o.docker_path = "/nonexistent/docker".into();
        let (k, e) = connect_failure(router.setns(o), "no engine");
        assert_eq!(k, ConnectFailure::EngineUnavailable, "{e}");
        assert!(e.contains("/nonexistent/docker"), "{e}");

        let noshell = Container::start_with(
            &docker::image("noshell"),
            &[],
            &["/busybox", "sleep", "1000000"],
        )
        .unwrap();
        // Our static binary needs no shell there: it runs as /proc/self/exe...
        let c = router
            .setns(opts(&noshell, "root"))
            .expect("setns into a container without a shell");
        assert_eq!(c.call(add::remote, (2, 3)).unwrap(), 5);
        c.shutdown(true).unwrap();
        // ...but the shell bootstrap does.
        let (k, e) = connect_failure(
            router.setns(opts(&noshell, "root").bootstrap(Bootstrap::Shell)),
            "no shell",
        );
        assert_eq!(k, ConnectFailure::NoShell, "{e}");
        assert!(e.contains(noshell.name()), "{e}");

        let stopped = Container::start_with(&docker::image("debian"), &[], &["true"]).unwrap();
        mitogen_testkit::wait_for(Duration::from_secs(30), "the container to stop", || {
            let out = docker::docker(&["inspect", "-f", "{{.State.Running}}", stopped.name()]);
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "false")
        });
        let (k, e) = connect_failure(router.setns(opts(&stopped, "root")), "stopped");
        assert_eq!(k, ConnectFailure::ContainerNotRunning, "{e}");
        assert!(e.contains(stopped.name()), "{e}");
    })
    .unwrap();
}

/// The marker the unprivileged run prints when its check passed.
const NOT_ROOT_OK: &str = "SETNS-NOT-ROOT-OK";

/// Runs only when [`setns_needs_root`] starts this binary as `nobody`.
#[test]
fn setns_not_root_inner() {
    let Ok(name) = std::env::var("MITOGEN_SETNS_NOT_ROOT") else {
        return;
    };
    Router::with(|router| {
        let mut o = SetnsOptions::new(name, ContainerKind::Docker);
        o.common.connect_timeout = Duration::from_secs(10);
        let (k, e) = connect_failure(router.setns(o), "not root");
        assert_eq!(k, ConnectFailure::PermissionDenied, "{e}");
        assert!(e.contains("root"), "{e}");
        println!("{NOT_ROOT_OK}");
    })
    .unwrap();
}

#[test]
fn setns_needs_root() {
    if !ready("setns_needs_root") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let ctr = debian();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "setns_not_root_inner", "--nocapture"])
        .env("MITOGEN_SETNS_NOT_ROOT", ctr.name())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(NOT_ROOT_OK),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hostile container's `/etc/passwd` is an absolute symlink to a host
/// file: read from the host naively, it would resolve on the host. It must
/// resolve inside the container (where it does not exist), so the user the
/// host file names is unknown.
#[test]
fn setns_reads_passwd_inside_the_container_only() {
    if !ready("setns_reads_passwd_inside_the_container_only") {
        return;
    }
    let ctr = debian();
    let host_file = format!("/tmp/mitogen-setns-host-passwd-{}", std::process::id());
    std::fs::write(&host_file, "evil:x:0:0:evil:/:/bin/sh\n").unwrap();
    let link = format!("rm -f /etc/passwd && ln -s {host_file} /etc/passwd");
    let out = docker::docker(&["exec", ctr.name(), "/bin/sh", "-c", &link]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Router::with(|router| connect_failure(router.setns(opts(&ctr, "evil")), "evil"));
    let _ = std::fs::remove_file(&host_file);
    let (k, e) = r.unwrap();
    assert_eq!(k, ConnectFailure::UnknownUser, "{e}");
}

/// The method also runs in another context (`via`), like every method.
#[test]
fn setns_via_a_local_context() {
    if !ready("setns_via_a_local_context") {
        return;
    }
    let ctr = debian();
    Router::with(|router| {
        let relay = router.local(mitogen::LocalOptions::default()).unwrap();
        let c = router.setns(opts(&ctr, "app").via(&relay)).unwrap();
        let i = c.call(inside::remote, ()).unwrap();
        assert_eq!(i.uids, vec![1000; 4], "{i:?}");
        assert_eq!(i.hostname, "setns-test");
    })
    .unwrap();
}

/// With the shell bootstrap the container's `/bin/sh` runs the first stage,
/// which copies our binary into a cache inside the container; a second
/// connection finds it there and sends nothing.
#[test]
fn setns_shell_bootstrap_copies_the_binary_once() {
    if !ready("setns_shell_bootstrap_copies_the_binary_once") {
        return;
    }
    let ctr = debian();
    let sent = |router: &Router| {
        let c = router
            .setns(opts(&ctr, "app").bootstrap(Bootstrap::Shell))
            .unwrap();
        let i = c.call(inside::remote, ()).unwrap();
        assert_eq!(i.uids, vec![1000; 4], "{i:?}");
        router.binary_bytes_sent()
    };
    let cold = Router::with(|router| sent(&router)).unwrap();
    assert!(cold > 100_000, "the binary was sent: {cold} bytes");
    let warm = Router::with(|router| sent(&router)).unwrap();
    assert_eq!(warm, 0, "cached in the container");
    let out = docker::docker(&[
        "exec",
        "-u",
        "app",
        ctr.name(),
        "ls",
        "-a",
        "/home/app/.cache/mitogen",
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
