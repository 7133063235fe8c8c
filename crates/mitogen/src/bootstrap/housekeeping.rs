//! Cache housekeeping: old binaries do not pile up in a target's cache
//! directory.
//!
//! Policy, applied by a child started by the first stage, to the directory
//! it runs from, right after its hello (before it serves a call):
//!
//! - its own binary's modification time is set to now: in a cache
//!   directory, the mtime of a binary is when it last started;
//! - a cached binary (a 64-hex-digit name) is removed when it is not among
//!   the [`KEEP_NEWEST`] most recently started ones **and** has not started
//!   for [`MAX_UNUSED`]; a leftover install file (`.<sha256>.<pid>`) or
//!   first-stage probe (`.probe.<pid>`) older than [`MAX_TEMP_AGE`] goes
//!   too;
//! - nothing that is running is removed: every process's `/proc/<pid>/exe`
//!   is compared (device and inode) with the candidates, and without a
//!   readable `/proc` nothing is removed at all;
//! - only regular files owned by the owner of our own binary, in a
//!   directory that passes the first stage's trust rule (a real directory,
//!   same owner, mode 0700), are touched.
//!
//! A first stage of another connection that found a binary unused for a
//! week a moment before this removes it fails its `exec` ("not found");
//! the next attempt installs it again.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The most recently started binaries kept whatever their age.
pub(crate) const KEEP_NEWEST: usize = 5;
/// A binary that has not started for this long may go.
pub(crate) const MAX_UNUSED: Duration = Duration::from_secs(7 * 24 * 3600);
/// An unfinished install or probe file older than this is debris.
pub(crate) const MAX_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// What one pass removed and kept because it was running.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tidied {
    pub(crate) removed: Vec<String>,
    pub(crate) running: Vec<String>,
}

/// `true` for the name of a cached binary: 64 lowercase hex digits.
fn is_binary_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `true` for `.<sha256>.<pid>` or `.probe.<pid>`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((stem, pid)) = rest.rsplit_once('.') else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && (stem == "probe" || is_binary_name(stem))
}

/// Mark our own binary `exe` as just started and apply the policy to its
/// directory. Errors are ignored: housekeeping never stops a child.
pub(crate) fn after_start(exe: &Path) {
    let Ok(file) = std::fs::File::open(exe) else {
        return;
    };
    let _ = file.set_modified(SystemTime::now());
    if let Some(dir) = exe.parent() {
        let _ = tidy(dir, exe, SystemTime::now());
    }
}

/// Apply the policy (module docs) to `dir`, which holds our own binary
/// `own`, as of `now`.
pub(crate) fn tidy(dir: &Path, own: &Path, now: SystemTime) -> std::io::Result<Tidied> {
    let own_meta = std::fs::symlink_metadata(own)?;
    let uid = own_meta.uid();
    let dir_meta = std::fs::symlink_metadata(dir)?;
    if !dir_meta.is_dir() || dir_meta.uid() != uid || dir_meta.permissions().mode() & 0o777 != 0o700
    {
        return Ok(Tidied::default());
    }
    let age = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
    };
    let mut binaries = Vec::new();
    let mut due = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.file_type().is_file() || meta.uid() != uid {
            continue;
        }
        if is_binary_name(&name) {
            binaries.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                meta,
            ));
        } else if is_temp_name(&name) && age(&meta) > MAX_TEMP_AGE {
            due.push((name, meta));
        }
    }
    // Newest first; the first KEEP_NEWEST stay.
    binaries.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (_, name, meta) in binaries.into_iter().skip(KEEP_NEWEST) {
        let ours = (meta.dev(), meta.ino()) == (own_meta.dev(), own_meta.ino());
        if !ours && age(&meta) > MAX_UNUSED {
            due.push((name, meta));
        }
    }
    let mut done = Tidied::default();
    if due.is_empty() {
        return Ok(done);
    }
    let Some(running) = running_inodes() else {
        return Ok(done);
    };
    for (name, meta) in due {
        if running.contains(&(meta.dev(), meta.ino())) {
            done.running.push(name);
        } else if std::fs::remove_file(dir.join(&name)).is_ok() {
            done.removed.push(name);
        }
    }
    Ok(done)
}

/// `(device, inode)` of every process's executable we can see, `None`
/// when `/proc` cannot be read (then nothing can be known not to run).
fn running_inodes() -> Option<Vec<(u64, u64)>> {
    // Our own entry must be readable, or `/proc` is not what we think.
    std::fs::metadata("/proc/self/exe").ok()?;
    let mut v = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut exe = PathBuf::from("/proc");
        exe.push(&name);
        exe.push("exe");
        if let Ok(m) = std::fs::metadata(&exe) {
            v.push((m.dev(), m.ino()));
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_apart() {
        let h = "a".repeat(64);
        assert!(is_binary_name(&h));
        assert!(!is_binary_name(&"A".repeat(64)) && !is_binary_name(&"a".repeat(63)));
        assert!(is_temp_name(&format!(".{h}.123")) && is_temp_name(".probe.9"));
        for n in [
            format!(".{h}."),
            format!("{h}.1"),
            ".probe.x".into(),
            ".x.1".into(),
        ] {
            assert!(!is_temp_name(&n), "{n}");
        }
    }

    /// A directory that fails the trust rule is left alone, and an old
    /// binary goes from a private one.
    #[test]
    fn only_a_private_directory_is_tidied() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("b".repeat(64));
        let old = dir.path().join("c".repeat(64));
        for p in [&own, &old] {
            std::fs::write(p, b"x").unwrap();
        }
        let later = SystemTime::now() + 30 * MAX_UNUSED;
        // KEEP_NEWEST fresher ones, so the old one is past the newest.
        for i in 0..KEEP_NEWEST {
            let p = dir.path().join(format!("{i:064x}"));
            std::fs::write(&p, b"x").unwrap();
            std::fs::File::open(&p)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        let mode = |m| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(m));
        mode(0o755).unwrap();
        assert_eq!(tidy(dir.path(), &own, later).unwrap(), Tidied::default());
        assert!(old.exists());
        mode(0o700).unwrap();
        let done = tidy(dir.path(), &own, later).unwrap();
        assert_eq!(done.removed, vec!["c".repeat(64)]);
        assert!(!old.exists() && own.exists());
    }
}
