//! This program's own executable, as uploaded to targets, and what its ELF
//! headers say it needs there (an interpreter, a glibc version).

use std::io::Write;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

/// The running executable: its bytes, their SHA-256, and a gzip copy made on first need.
pub(crate) struct Binary {
    pub(crate) sha256: String,
    /// Shared, so replies to many children reference one copy.
    pub(crate) bytes: Arc<[u8]>,
    /// What it needs from a target: the first stage checks before it
    /// installs it.
    pub(crate) needs: Needs,
    gzip: OnceLock<Vec<u8>>,
}

impl Binary {
    /// The running executable, read once per process.
    pub(crate) fn current() -> std::io::Result<Arc<Binary>> {
        static CURRENT: OnceLock<Arc<Binary>> = OnceLock::new();
        if let Some(b) = CURRENT.get() {
            return Ok(b.clone());
        }
        let bytes = std::fs::read("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::read))?;
        let b = Binary::from_bytes(bytes);
        Ok(CURRENT.get_or_init(|| b).clone())
    }

    /// A binary held in memory (one for another architecture).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Arc<Binary> {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let needs = Needs::of(&bytes);
        Arc::new(Binary {
            sha256,
            needs,
            bytes: bytes.into(),
            gzip: OnceLock::new(),
        })
    }

    /// The gzip-compressed bytes.
    pub(crate) fn gzip(&self) -> &[u8] {
        self.gzip.get_or_init(|| {
            // Debug builds are large and compressed often in tests: favour speed.
            let level = if cfg!(debug_assertions) { 1 } else { 6 };
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(&self.bytes).expect("writing to a Vec");
            enc.finish().expect("writing to a Vec")
        })
    }
}

/// What the ELF headers of a binary say it needs from the target to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The `PT_INTERP` path (the dynamic loader), `None` for a static
    /// binary or one not understood. Only plain path characters are kept
    /// (it is written into the first stage): anything else counts as
    /// unknown.
    pub(crate) interpreter: Option<String>,
    /// The highest `GLIBC_<major>.<minor>` symbol version it needs.
    pub(crate) glibc: Option<(u32, u32)>,
}

impl Needs {
    /// Read from the bytes of an ELF file (64-bit little-endian; anything
    /// else needs nothing we can name).
    pub(crate) fn of(bytes: &[u8]) -> Needs {
        let interpreter = elf_interpreter(bytes)
            .flatten()
            .filter(|p| is_plain_path(p));
        let glibc = interpreter.as_ref().and_then(|_| glibc_needed(bytes));
        Needs { interpreter, glibc }
    }
}

/// `true` for an absolute path of letters, digits and `/._+-` only: safe
/// inside single quotes and on a whitespace-separated line.
pub(crate) fn is_plain_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() < 256
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b))
}

/// Little-endian integers at byte `o` of `b`; `None` past the end (also
/// used by `profile::symbols`).
pub(crate) fn u16_at(b: &[u8], o: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(o..o.checked_add(2)?)?.try_into().ok()?) as usize)
}

pub(crate) fn u32_at(b: &[u8], o: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
    .ok()
}

pub(crate) fn u64_at(b: &[u8], o: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
    .ok()
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF file from its first
/// bytes (the program headers follow the ELF header, so 64 KiB is plenty):
/// `Some(None)` for a static binary, `None` when not understood.
pub(crate) fn elf_interpreter(head: &[u8]) -> Option<Option<String>> {
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (phoff, phentsize, phnum) = (
        u64_at(head, 0x20)?,
        u16_at(head, 0x36)?,
        u16_at(head, 0x38)?,
    );
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(head, ph)? == 3 {
            // PT_INTERP: p_offset at +8, p_filesz at +32.
            let (off, len) = (
                u64_at(head, ph.checked_add(8)?)?,
                u64_at(head, ph.checked_add(32)?)?,
            );
            let bytes = head.get(off..off.checked_add(len)?)?;
            let path = bytes.split(|b| *b == 0).next()?;
            return Some(Some(String::from_utf8(path.to_vec()).ok()?));
        }
    }
    Some(None)
}

/// The highest `GLIBC_x.y` version named in the `.gnu.version_r` section
/// (`SHT_GNU_verneed`) of a whole 64-bit little-endian ELF file; `None`
/// when there is none or the file is not understood. Every offset is
/// checked and every walk bounded by the section's size.
pub(crate) fn glibc_needed(elf: &[u8]) -> Option<(u32, u32)> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(elf, 0x28)?, u16_at(elf, 0x3a)?, u16_at(elf, 0x3c)?);
    let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let verneed = (0..shnum).find_map(|i| {
        let sh = section(i)?;
        (u32_at(elf, sh.checked_add(4)?)? == 0x6fff_fffe).then_some(sh)
    })?;
    let (off, size) = (
        u64_at(elf, verneed.checked_add(24)?)?,
        u64_at(elf, verneed.checked_add(32)?)?,
    );
    let strtab = section(u32_at(elf, verneed.checked_add(40)?)?)?;
    let (str_off, str_size) = (
        u64_at(elf, strtab.checked_add(24)?)?,
        u64_at(elf, strtab.checked_add(32)?)?,
    );
    let strings = elf.get(str_off..str_off.checked_add(str_size)?)?;
    let name = |at: usize| -> Option<&[u8]> { strings.get(at..)?.split(|b| *b == 0).next() };
    let end = off.checked_add(size)?;
    let mut best = None;
    let (mut entry, mut steps) = (off, 0);
    // Each record is at least 16 bytes: the walk cannot take more steps.
    let max_steps = size / 16 + 1;
    while entry < end && steps < max_steps {
        let (count, aux, next) = (
            u16_at(elf, entry.checked_add(2)?)?,
            u32_at(elf, entry.checked_add(8)?)?,
            u32_at(elf, entry.checked_add(12)?)?,
        );
        let mut a = entry.checked_add(aux)?;
        for _ in 0..count {
            steps += 1;
            if a >= end || steps > max_steps {
                break;
            }
            let version = name(u32_at(elf, a.checked_add(8)?)?)
                .and_then(|n| n.strip_prefix(b"GLIBC_"))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| {
                    let (major, minor) = v.split_once('.')?;
                    let minor = minor.split('.').next()?;
                    Some((major.parse().ok()?, minor.parse().ok()?))
                });
            best = best.max(version);
            let step = u32_at(elf, a.checked_add(12)?)?;
            if step == 0 {
                break;
            }
            a = a.checked_add(step)?;
        }
        steps += 1;
        if next == 0 {
            break;
        }
        entry = entry.checked_add(next)?;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF header with one program header of type `ptype` whose
    /// segment is `seg`.
    fn elf_with_segment(ptype: u32, seg: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[0x40..0x44].copy_from_slice(&ptype.to_le_bytes());
        let off = b.len() as u64;
        b[0x48..0x50].copy_from_slice(&off.to_le_bytes());
        b[0x60..0x68].copy_from_slice(&(seg.len() as u64).to_le_bytes());
        b.extend_from_slice(seg);
        b
    }

    #[test]
    fn interpreter_and_glibc_of_real_binaries_are_read() {
        // The workspace builds static binaries (.cargo/config.toml): no
        // interpreter, no glibc need.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(
            elf_interpreter(&exe),
            Some(None),
            "this test binary is static"
        );
        let needs = Needs::of(&exe);
        assert_eq!((needs.interpreter, needs.glibc), (None, None));
        // Debian's /bin/sh (dash) is dynamically linked against glibc.
        let sh = std::fs::read(std::fs::canonicalize("/bin/sh").unwrap()).unwrap();
        let path = elf_interpreter(&sh)
            .expect("an ELF file")
            .expect("a dynamic binary");
        assert!(std::path::Path::new(&path).is_file(), "{path}");
        let needs = Needs::of(&sh);
        assert_eq!(needs.interpreter.as_deref(), Some(path.as_str()));
        let (major, minor) = needs.glibc.expect("a glibc version");
        assert!(major == 2 && minor >= 2, "{major}.{minor}");
    }

    #[test]
    fn static_truncated_and_foreign_files_are_told_apart() {
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
        let dynamic = elf_with_segment(3, b"/lib/ld-musl-x86_64.so.1\0");
        assert_eq!(
            elf_interpreter(&dynamic),
            Some(Some("/lib/ld-musl-x86_64.so.1".into()))
        );
        assert_eq!(elf_interpreter(&dynamic[..40]), None, "truncated");
        assert_eq!(elf_interpreter(&dynamic[..dynamic.len() - 4]), None);
        // PT_LOAD only: static.
        assert_eq!(elf_interpreter(&elf_with_segment(1, b"x")), Some(None));
        assert_eq!(Needs::of(&elf_with_segment(1, b"x")), Needs::default());
        // No section headers: no glibc version, and no panic.
        assert_eq!(glibc_needed(&dynamic), None);
        // A 32-bit ELF is not understood.
        let mut elf32 = dynamic.clone();
        elf32[4] = 1;
        assert_eq!(elf_interpreter(&elf32), None);
    }

    #[test]
    fn an_odd_interpreter_path_is_not_trusted() {
        let odd = elf_with_segment(3, b"/lib/ld'$(reboot).so\0");
        assert_eq!(
            elf_interpreter(&odd),
            Some(Some("/lib/ld'$(reboot).so".into()))
        );
        assert_eq!(Needs::of(&odd).interpreter, None);
        assert!(is_plain_path("/lib64/ld-linux-x86-64.so.2"));
        assert!(!is_plain_path("lib/ld.so") && !is_plain_path("/a b"));
    }

    /// Garbage after a valid header never panics or loops.
    #[test]
    fn garbage_section_tables_are_bounded() {
        let mut b = elf_with_segment(3, b"/lib/ld.so\0");
        for shoff in [0u64, 8, u64::MAX, 0x40] {
            b[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            b[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
            assert_eq!(glibc_needed(&b), None);
        }
    }
}
