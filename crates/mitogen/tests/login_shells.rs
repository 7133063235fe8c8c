//! The first stage under every common login shell: sshd runs the command
//! line through the target user's shell (`<shell> -c "sh -c '…'"`), so it
//! must survive dash, bash, busybox ash and tcsh (where a `!` anywhere,
//! even in single quotes, is a history event). Real ssh to the throwaway
//! sshd as one fixture user per shell, cold cache then warm. Skips unless
//! `scripts/fixture/setup.sh` (version 2) has run as root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mitogen::{Router, SshOptions};
use mitogen_testkit::fixture::{self, USER_A};
use mitogen_testkit::sshd::Sshd;

/// The real uid of the process this runs in.
#[mitogen::remote]
fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ssh(sshd: &Sshd, user: &str, cache: &Path) -> SshOptions {
    let mut o = ssh_options(sshd, user);
    o.common.cache_dir = Some(cache.to_path_buf());
    o
}

#[test]
fn login_shells_run_the_first_stage_cold_and_warm() {
    if !fixture::ready_or_skip(
        "login_shells_run_the_first_stage_cold_and_warm",
        Sshd::available().and_then(|()| fixture::available()),
    ) {
        return;
    }
    let sshd = Sshd::start().unwrap();
    // Each user's cache directory is made by its first stage, in a
    // sticky world-writable scratch directory.
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // mitogen-a's login shell is /bin/sh (dash on Debian).
    let users = std::iter::once((USER_A.name, "/bin/sh"))
        .chain(fixture::SHELL_USERS.iter().map(|u| (u.name, u.shell)));
    Router::with(|router| {
        for (user, shell) in users {
            let (uid, _, _) = fixture::passwd_entry(user).unwrap();
            let cache = shared.join(user);
            for round in ["cold", "warm"] {
                let sent = router.binary_bytes_sent();
                let c = router.ssh(ssh(&sshd, user, &cache)).unwrap_or_else(|e| {
                    panic!(
                        "{round} ssh as {user} (login shell {shell}): {e}\n{}",
                        sshd.log()
                    )
                });
                assert_eq!(
                    c.call(add::remote, (40, 2)).unwrap(),
                    42,
                    "{round}, {shell}"
                );
                assert_eq!(c.call(uid::remote, ()).unwrap(), uid, "{round}, {shell}");
                let uploaded = router.binary_bytes_sent() - sent;
                match round {
                    "cold" => assert!(uploaded > 0, "{shell}: a cold cache gets the binary"),
                    _ => assert_eq!(uploaded, 0, "{shell}: a warm cache gets nothing"),
                }
                // Not waiting: over ssh the stream only ends at the shutdown timeout.
                c.shutdown(false).unwrap();
            }
        }
    })
    .unwrap();
}
