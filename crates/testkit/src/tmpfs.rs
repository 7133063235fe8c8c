//! A tmpfs mounted for one test (root only), unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory; unmounted on drop.
///
/// # Examples
/// ```no_run
/// let dir = std::path::Path::new("/tmp/my-test-dir/noexec");
/// let _mount = mitogen_testkit::Tmpfs::mount(dir, "noexec,size=64m");
/// ```
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Create `dir` if needed and mount a tmpfs with `options` (`mount -o`)
    /// on it; panics naming the options when `mount` fails (the caller
    /// checked [`is_root`](crate::is_root)).
    pub fn mount(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs -o {options} {} failed", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
