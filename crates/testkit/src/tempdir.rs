//! A throwaway directory, removed on drop (kept when `MITOGEN_KEEP_FIXTURE`
//! is set, for looking at logs after a failure).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new directory `<tmp>/<prefix>.<pid>.<n>.<nanos>`, mode 0755 (other
    /// users may need to read files inside).
    pub(crate) fn new(prefix: &str) -> std::io::Result<TempDir> {
        use std::os::unix::fs::PermissionsExt;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}.{}.{n}.{nanos:x}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MITOGEN_KEEP_FIXTURE").is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
