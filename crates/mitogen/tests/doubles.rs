//! The container and jail methods these machines cannot run for real
//! (kubectl without a cluster, LXC, LXD, Incus, FreeBSD's jexec, systemd
//! machines), through a test double: a script in place of the program
//! that records the argv it was given and then runs the command at its
//! end (`/bin/sh -c '<first stage>'`) exactly as the real program would
//! inside the container. So our real code path runs end to end: argv,
//! spawn, first stage, bootstrap, calls, and the reading of the
//! program's error messages into kinds. docs/testing.md lists which
//! methods are tested against the real program and which against a double.

use std::path::{Path, PathBuf};

use mitogen::{
    ConnectFailure, ConnectionSpec, Context, IncusOptions, JailOptions, KubectlOptions,
    LocalOptions, LxcOptions, LxdOptions, MachinectlOptions, MethodOptions, Router,
};

#[mitogen::remote]
fn pid() -> u32 {
    std::process::id()
}

/// A double for a container program. It writes its arguments (all but
/// the first stage script) one per line to `<dir>/argv`, fails like the
/// real program when the command line names the container `missing` or
/// `stopped`, and otherwise runs its last three arguments.
struct Double {
    dir: tempfile::TempDir,
}

impl Double {
    fn new(not_found: &str, not_running: &str) -> Double {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("argv");
        let script = format!(
            r#"#!/bin/sh
n=$#
i=0
printf '%s\n' "$0" > '{log}'
for a in "$@"; do
    i=$((i + 1))
    [ "$i" -lt "$n" ] && printf '%s\n' "$a" >> '{log}'
done
for a in "$@"; do
    case "$a" in
    *missing*) echo '{not_found}' >&2; exit 1 ;;
    *stopped*) echo '{not_running}' >&2; exit 1 ;;
    esac
    [ "$a" = /bin/sh ] && break
done
shift $((n - 3))
exec "$@"
"#,
            log = log.display()
        );
        let path = dir.path().join("program");
        std::fs::write(&path, script).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
        Double { dir }
    }

    fn path(&self) -> String {
        self.dir.path().join("program").display().to_string()
    }

    /// The arguments the program was given, first stage excluded.
    fn argv(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("argv")).unwrap();
        text.lines().map(String::from).collect()
    }
}

fn answers(router: &Router, opts: impl Into<MethodOptions>) -> Context {
    let opts = opts.into();
    let method = opts.method_name();
    let ctx = router
        .connect(opts)
        .unwrap_or_else(|e| panic!("{method} through its double: {e}"));
    assert_ne!(ctx.call(pid::remote, ()).unwrap(), std::process::id());
    ctx
}

fn expect_kind(router: &Router, opts: impl Into<MethodOptions>, kind: ConnectFailure, said: &str) {
    let opts = opts.into();
    let method = opts.method_name();
    let e = router.connect(opts).unwrap_err();
    assert_eq!(e.connect_failure(), Some(kind), "{method}: {e}");
    let text = e.to_string();
    assert!(
        text.contains(said),
        "{method}: the error quotes the program: {text}"
    );
}

fn rest(argv: &[String], program: &str) -> Vec<String> {
    assert_eq!(argv[0], program);
    argv[1..].to_vec()
}

#[test]
fn kubectl_through_its_double() {
    let d = Double::new(
        r#"Error from server (NotFound): pods "missing" not found"#,
        "error: cannot exec into a container in a completed pod; current phase is Succeeded",
    );
    Router::with(|router| {
        let ctx = answers(
            &router,
            KubectlOptions::new("web-0")
                .namespace("shop")
                .container("app")
                .context("prod")
                .kubectl_path(d.path()),
        );
        assert_eq!(ctx.name(), "kubectl.web-0");
        assert_eq!(
            rest(&d.argv(), &d.path()),
            [
                "--context=prod",
                "--namespace=shop",
                "exec",
                "-i",
                "web-0",
                "--container=app",
                "--",
                "/bin/sh",
                "-c"
            ]
        );
        expect_kind(
            &router,
            KubectlOptions::new("missing").kubectl_path(d.path()),
            ConnectFailure::ContainerNotFound,
            r#"pods "missing" not found"#,
        );
        expect_kind(
            &router,
            KubectlOptions::new("stopped").kubectl_path(d.path()),
            ConnectFailure::ContainerNotRunning,
            "completed pod",
        );
    })
    .unwrap();
}

#[test]
fn lxc_through_its_double() {
    let d = Double::new(
        "lxc-attach: missing: attach.c: lxc_attach: 1102 Failed to get init pid",
        "lxc-attach: stopped: Failed to get init pid",
    );
    Router::with(|router| {
        let ctx = answers(&router, LxcOptions::new("web").lxc_attach_path(d.path()));
        assert_eq!(ctx.name(), "lxc.web");
        let argv = rest(&d.argv(), &d.path());
        assert_eq!(argv[0], "--clear-env");
        assert_eq!(argv[1], "--set-var");
        assert!(argv[2].starts_with("PATH=/usr/local/sbin:"), "{argv:?}");
        assert_eq!(argv[3..], ["--name", "web", "--", "/bin/sh", "-c"]);
        expect_kind(
            &router,
            LxcOptions::new("stopped").lxc_attach_path(d.path()),
            ConnectFailure::ContainerNotRunning,
            "Failed to get init pid",
        );
    })
    .unwrap();
}

#[test]
fn lxd_and_incus_through_their_doubles() {
    let d = Double::new(
        "Error: Instance not found",
        "Error: Instance is not running",
    );
    Router::with(|router| {
        let ctx = answers(
            &router,
            LxdOptions::new("web")
                .remote("cluster")
                .project("shop")
                .uid(1000)
                .workdir("/srv")
                .lxc_path(d.path()),
        );
        assert_eq!(ctx.name(), "lxd.web");
        assert_eq!(
            rest(&d.argv(), &d.path()),
            [
                "--project=shop",
                "exec",
                "cluster:web",
                "--mode=non-interactive",
                "--user=1000",
                "--cwd=/srv",
                "--",
                "/bin/sh",
                "-c"
            ]
        );
        let ctx = answers(&router, IncusOptions::new("db").incus_path(d.path()));
        assert_eq!(ctx.name(), "incus.db");
        assert_eq!(
            rest(&d.argv(), &d.path()),
            [
                "exec",
                "db",
                "--mode=non-interactive",
                "--",
                "/bin/sh",
                "-c"
            ]
        );
        for opts in [
            MethodOptions::from(LxdOptions::new("missing").lxc_path(d.path())),
            IncusOptions::new("missing").incus_path(d.path()).into(),
        ] {
            expect_kind(
                &router,
                opts,
                ConnectFailure::ContainerNotFound,
                "Instance not found",
            );
        }
        expect_kind(
            &router,
            IncusOptions::new("stopped").incus_path(d.path()),
            ConnectFailure::ContainerNotRunning,
            "Instance is not running",
        );
    })
    .unwrap();
}

#[test]
fn jail_and_machinectl_through_their_doubles() {
    let d = Double::new(r#"jexec: jail "missing" not found"#, "unused");
    let m = Double::new("No machine missing known", "unused");
    Router::with(|router| {
        answers(
            &router,
            JailOptions::new("www")
                .username("deploy")
                .jexec_path(d.path()),
        );
        assert_eq!(
            rest(&d.argv(), &d.path()),
            ["-U", "deploy", "www", "/bin/sh", "-c"]
        );
        expect_kind(
            &router,
            JailOptions::new("missing").jexec_path(d.path()),
            ConnectFailure::ContainerNotFound,
            r#"jail "missing" not found"#,
        );
        let ctx = answers(
            &router,
            MachinectlOptions::new("vm1")
                .username("deploy")
                .systemd_run_path(m.path()),
        );
        assert_eq!(ctx.name(), "machinectl.vm1");
        assert_eq!(
            rest(&m.argv(), &m.path()),
            [
                "--machine=vm1",
                "--pipe",
                "--wait",
                "--quiet",
                "--collect",
                "--service-type=exec",
                "--uid=deploy",
                "--",
                "/bin/sh",
                "-c"
            ]
        );
        expect_kind(
            &router,
            MachinectlOptions::new("missing").systemd_run_path(m.path()),
            ConnectFailure::ContainerNotFound,
            "No machine missing known",
        );
    })
    .unwrap();
}

#[test]
fn option_like_names_are_refused_before_anything_runs() {
    let d = Double::new("unused", "unused");
    Router::with(|router| {
        for opts in [
            MethodOptions::from(KubectlOptions::new("-oevil").kubectl_path(d.path())),
            LxcOptions::new("").lxc_attach_path(d.path()).into(),
            LxdOptions::new("web")
                .remote("--force")
                .lxc_path(d.path())
                .into(),
            JailOptions::new("www")
                .username("-x")
                .jexec_path(d.path())
                .into(),
            MachinectlOptions::new("-M")
                .systemd_run_path(d.path())
                .into(),
        ] {
            let method = opts.method_name();
            let e = router.connect(opts).unwrap_err();
            assert_eq!(
                e.connect_failure(),
                Some(ConnectFailure::InvalidOptions),
                "{method}: {e}"
            );
        }
        assert!(
            !Path::new(&d.dir.path().join("argv")).exists(),
            "nothing ran"
        );
    })
    .unwrap();
}

#[test]
fn a_chain_through_a_relay_reaches_a_pod() {
    let d = Double::new("unused", "unused");
    let spec = ConnectionSpec::new()
        .then(LocalOptions::new().remote_name("relay"))
        .then(KubectlOptions::new("web-0").kubectl_path(d.path()));
    Router::with(|router| {
        let pod = router.connect_spec(&spec).unwrap();
        assert_eq!(pod.name(), "kubectl.web-0");
        assert_ne!(pod.call(pid::remote, ()).unwrap(), std::process::id());
        let recorded: PathBuf = d.dir.path().join("argv");
        assert!(recorded.exists(), "the relay ran the double");
    })
    .unwrap();
}
