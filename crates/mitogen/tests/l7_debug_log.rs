//! L7: the debug log is never opened through a planted symlink, nor in a
//! directory someone else controls; it is private (0600 in a 0700
//! directory of ours). Own binary: changes the environment and installs the
//! debug log as the global subscriber.

mod common;
mod logs;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use mitogen::{LocalOptions, Router};

/// uid and gid of `nobody`: the "other user" planting files.
const NOBODY: u32 = 65534;

fn plant_symlink(at: &Path, to: &Path) {
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(to, at).unwrap();
}

fn assert_private(log: &Path) {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let meta = std::fs::symlink_metadata(log).unwrap();
    assert!(meta.is_file(), "{} is a regular file", log.display());
    assert_eq!(meta.mode() & 0o777, 0o600, "{} mode", log.display());
    assert_eq!(meta.uid(), uid, "{} owner", log.display());
    let dir = log.parent().unwrap();
    let dmeta = std::fs::symlink_metadata(dir).unwrap();
    assert!(dmeta.is_dir(), "{} is a real directory", dir.display());
    assert_eq!(dmeta.mode() & 0o777, 0o700, "{} mode", dir.display());
    assert_eq!(dmeta.uid(), uid, "{} owner", dir.display());
}

#[test]
fn l7_debug_log_private() {
    if !mitogen_testkit::fixture::ready_or_skip(
        "l7_debug_log_private",
        if mitogen_testkit::is_root() {
            Ok(())
        } else {
            Err("needs root (plants files owned by another user)".into())
        },
    ) {
        return;
    }
    let pid = std::process::id();
    let scratch = tempfile::tempdir().unwrap();
    let victim = scratch.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();

    // Another user owns the usual directory (world-writable, as a planter
    // would leave it) and has planted a symlink at the predicted name; the
    // old fixed path is planted too.
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let taken = tmp.join("mitogen-0");
    std::fs::create_dir(&taken).unwrap();
    std::os::unix::fs::chown(&taken, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&taken, std::fs::Permissions::from_mode(0o777)).unwrap();
    plant_symlink(&taken.join(format!("mitogen.{pid}.log")), &victim);
    let old = PathBuf::from(format!("/tmp/mitogen.{pid}.log"));
    plant_symlink(&old, &victim);
    std::env::remove_var("XDG_RUNTIME_DIR");
    std::env::set_var("TMPDIR", &tmp);

    Router::with(|router| {
        router.enable_debug();
        tracing::info!("l7 marker line");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious\n",
            "the debug log was written through a planted symlink"
        );
        let open = logs::open_debug_logs();
        assert_eq!(open.len(), 1, "one debug log open: {open:?}");
        let log = &open[0];
        assert_private(log);
        assert!(
            !log.starts_with(&taken),
            "{} is not in the directory another user owns",
            log.display()
        );
        assert!(log.starts_with(&tmp), "{}", log.display());
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("l7 marker line"), "{text}");

        // A private directory of ours is used as it is; a symlink planted
        // in it (only we could) is still not followed.
        let runtime = scratch.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
        let ours = runtime.join("mitogen");
        std::fs::create_dir(&ours).unwrap();
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
        plant_symlink(&ours.join(format!("mitogen.{pid}.log")), &victim);
        router.enable_debug();
        let second = ours.join(format!("mitogen.{pid}.1.log"));
        assert_private(&second);

        // The tree keeps working with debug on.
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(child.call(add::remote, (1, 2)).unwrap(), 3);
    })
    .unwrap();

    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the symlinks' target was never written"
    );
    assert!(std::fs::symlink_metadata(&old).unwrap().is_symlink());
    let _ = std::fs::remove_file(&old);
}
