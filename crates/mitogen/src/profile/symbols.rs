//! Function names for addresses in this program, read from the ELF symbol
//! table (`.symtab`) of `/proc/self/exe`, for stack dumps.
//!
//! A small replacement for a full symboliser (gimli, addr2line): it reads
//! the section headers, the `SHT_SYMTAB` section and the string table it
//! links to, keeps the `STT_FUNC` symbols sorted by address and
//! binary-searches each address. It gives function names only (no inlined
//! frames, files or lines), demangled by [`demangle`]. A stripped
//! binary (our release profile, `strip = "symbols"`) has no `.symtab`:
//! every lookup then finds nothing and the caller prints an offset.
//!
//! The file is untrusted input: every offset and length is checked, the
//! tables are bounded ([`MAX_TABLE`] bytes each), and anything malformed
//! gives an empty table, never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::bootstrap::binary::{u16_at, u32_at, u64_at};

/// Largest symbol or string table read (bytes): about 2.8 million
/// symbols, far more than any program of ours has.
const MAX_TABLE: usize = 64 << 20;
/// Longest symbol name looked at (bytes).
const MAX_NAME: usize = 4096;
/// Size of one 64-bit section header and symbol.
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
const SHT_SYMTAB: usize = 2;
const STT_FUNC: u8 = 2;
const PT_LOAD: usize = 1;

/// One function: its link-time address, size (0 when unknown) and name's
/// offset in [`Symbols::names`].
#[derive(Clone, Copy)]
struct Func {
    start: usize,
    size: usize,
    name: usize,
}

/// The functions of one ELF file, sorted by address.
#[derive(Default)]
pub(crate) struct Symbols {
    funcs: Vec<Func>,
    names: Vec<u8>,
    /// Link-time address of the first mapped page, so that an offset from
    /// where the executable is mapped becomes a link-time address.
    first_page: usize,
}

impl Symbols {
    /// The functions of this program (empty when stripped or unreadable).
    pub(crate) fn of_this_program() -> Symbols {
        let Ok(file) = File::open("/proc/self/exe") else {
            return Symbols::default();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        Symbols::parse(&|offset, n| {
            let end = (offset as u64).checked_add(n as u64)?;
            if end > len {
                return None;
            }
            let mut buf = vec![0; n];
            file.read_exact_at(&mut buf, offset as u64).ok()?;
            Some(buf)
        })
        .unwrap_or_default()
    }

    /// Parse a 64-bit little-endian ELF file read through `read(offset,
    /// len)`, which returns exactly `len` bytes or `None`.
    fn parse(read: &dyn Fn(usize, usize) -> Option<Vec<u8>>) -> Option<Symbols> {
        let head = read(0, 64)?;
        if head.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        let first_page = first_load_page(read, &head)?;
        let (shoff, shentsize, shnum) = (
            u64_at(&head, 0x28)?,
            u16_at(&head, 0x3a)?,
            u16_at(&head, 0x3c)?,
        );
        if shentsize != SHDR_SIZE || shnum == 0 {
            return None;
        }
        // At most 65535 headers of 64 bytes: 4 MiB.
        let headers = read(shoff, shnum * SHDR_SIZE)?;
        let header = |i: usize| headers.get(i.checked_mul(SHDR_SIZE)?..)?.get(..SHDR_SIZE);
        let symtab =
            (0..shnum).find_map(|i| header(i).filter(|h| u32_at(h, 4) == Some(SHT_SYMTAB)))?;
        // sh_offset at +24, sh_size at +32, sh_link at +40.
        let table = |h: &[u8]| -> Option<Vec<u8>> {
            let size = u64_at(h, 32)?;
            (size <= MAX_TABLE).then_some(())?;
            read(u64_at(h, 24)?, size)
        };
        let syms = table(symtab)?;
        let names = table(header(u32_at(symtab, 40)?)?)?;
        let mut funcs: Vec<Func> = syms
            .chunks_exact(SYM_SIZE)
            .filter_map(|s| {
                // st_name +0, st_info +4 (type in the low nibble),
                // st_shndx +6 (0: undefined), st_value +8, st_size +16.
                let defined = u16_at(s, 6)? != 0;
                let func = s[4] & 0xf == STT_FUNC;
                let start = u64_at(s, 8)?;
                (defined && func && start != 0).then_some(Func {
                    start,
                    size: u64_at(s, 16)?,
                    name: u32_at(s, 0)?,
                })
            })
            .collect();
        // Aliases share an address: keep the one with a size.
        funcs.sort_unstable_by_key(|f| (f.start, std::cmp::Reverse(f.size)));
        funcs.dedup_by_key(|f| f.start);
        Some(Symbols {
            funcs,
            names,
            first_page,
        })
    }

    /// The demangled name of the function holding the byte at `offset`
    /// from the start of the executable's first mapping.
    pub(crate) fn name_at(&self, offset: usize) -> Option<String> {
        let addr = offset.checked_add(self.first_page)?;
        let i = self
            .funcs
            .partition_point(|f| f.start <= addr)
            .checked_sub(1)?;
        let f = self.funcs[i];
        let inside = if f.size != 0 {
            addr - f.start < f.size
        } else {
            // No size (assembly such as the signal trampoline): up to
            // the next function.
            self.funcs.get(i + 1).map_or(true, |next| addr < next.start)
        };
        if !inside {
            return None;
        }
        let rest = self.names.get(f.name..)?;
        let rest = &rest[..rest.len().min(MAX_NAME)];
        let raw = std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0)?]).ok()?;
        (!raw.is_empty()).then(|| demangle(raw))
    }

    /// How many functions are known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.funcs.len()
    }
}

/// A Rust symbol in the legacy mangling (`_ZN` `<len><ident>`… `E`, the
/// default of stable Rust) as a path without its hash:
/// `mitogen::sys::stacks::on_signal::{{closure}}`. Anything else (C
/// names, v0 `_R` symbols, malformed names) comes back unchanged.
///
/// Our own few lines rather than the `rustc-demangle` crate, which adds
/// ~15 KB gzip to every uploaded binary for v0 names stable Rust does not
/// produce by default.
fn demangle(raw: &str) -> String {
    legacy(raw).unwrap_or_else(|| raw.to_string())
}

fn legacy(raw: &str) -> Option<String> {
    let mut rest = raw.strip_prefix("_ZN")?;
    let mut parts: Vec<&str> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let len: usize = rest.get(..digits)?.parse().ok()?;
        parts.push(rest.get(digits..digits.checked_add(len)?)?);
        rest = &rest[digits + len..];
    }
    // After the `E`: nothing, or a suffix such as `.llvm.1234`.
    if !(rest.len() == 1 || rest[1..].starts_with('.')) || parts.is_empty() {
        return None;
    }
    let hash = |p: &str| {
        p.len() == 17 && p.starts_with('h') && p[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    if parts.len() > 1 && parts.last().is_some_and(|p| hash(p)) {
        parts.pop();
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str("::");
        }
        // An identifier may not start with `$`: `_$LT$` stands for `<`.
        let part = if part.starts_with("_$") {
            &part[1..]
        } else {
            part
        };
        unescape(part, &mut out)?;
    }
    Some(out)
}

/// One identifier of a legacy symbol: `$LT$` is `<`, `$u7b$` is `{`,
/// `..` is `::`, and so on.
fn unescape(mut id: &str, out: &mut String) -> Option<()> {
    while !id.is_empty() {
        if let Some(after) = id.strip_prefix('$') {
            let end = after.find('$')?;
            let c = match &after[..end] {
                "SP" => '@',
                "BP" => '*',
                "RF" => '&',
                "LT" => '<',
                "GT" => '>',
                "LP" => '(',
                "RP" => ')',
                "C" => ',',
                code => char::from_u32(u32::from_str_radix(code.strip_prefix('u')?, 16).ok()?)?,
            };
            out.push(c);
            id = &after[end + 1..];
        } else if let Some(after) = id.strip_prefix("..") {
            out.push_str("::");
            id = after;
        } else {
            let c = id.chars().next()?;
            out.push(c);
            id = &id[c.len_utf8()..];
        }
    }
    Some(())
}

/// The page-aligned link-time address of the lowest `PT_LOAD` segment.
fn first_load_page(read: &dyn Fn(usize, usize) -> Option<Vec<u8>>, head: &[u8]) -> Option<usize> {
    let (phoff, phentsize, phnum) = (
        u64_at(head, 0x20)?,
        u16_at(head, 0x36)?,
        u16_at(head, 0x38)?,
    );
    if phentsize != 56 {
        return None;
    }
    let phdrs = read(phoff, phnum * 56)?;
    phdrs
        .chunks_exact(56)
        .filter(|p| u32_at(p, 0) == Some(PT_LOAD))
        .filter_map(|p| u64_at(p, 16))
        .min()
        .map(|vaddr| vaddr & !0xfff)
}

/// Where the executable is mapped in this process: the start of its
/// mapping at file offset 0.
pub(crate) fn exe_base() -> Option<usize> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let exe = exe.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    // "start-end perms offset dev inode path"
    let line = maps.lines().find(|l| {
        l.ends_with(exe)
            && l.split_whitespace()
                .nth(2)
                .is_some_and(|o| o.trim_start_matches('0').is_empty())
    })?;
    usize::from_str_radix(line.split('-').next()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Option<Symbols> {
        Symbols::parse(&|o, n| bytes.get(o..o.checked_add(n)?).map(<[u8]>::to_vec))
    }

    /// A minimal ELF file: one `PT_LOAD` at `0x1000`, a null section, a
    /// symbol table and its string table, with the given symbols
    /// `(name, value, size, type)`.
    fn elf(symbols: &[(&str, u64, u64, u8)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut syms = vec![0u8; SYM_SIZE]; // the null symbol
        for &(name, value, size, kind) in symbols {
            let mut s = [0u8; SYM_SIZE];
            s[..4].copy_from_slice(&(strings.len() as u32).to_le_bytes());
            s[4] = kind;
            s[6..8].copy_from_slice(&1u16.to_le_bytes());
            s[8..16].copy_from_slice(&value.to_le_bytes());
            s[16..24].copy_from_slice(&size.to_le_bytes());
            syms.extend_from_slice(&s);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        b[64 + 16..64 + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        let sym_off = b.len();
        b.extend_from_slice(&syms);
        let str_off = b.len();
        b.extend_from_slice(&strings);
        let shoff = b.len();
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&[0u8; SHDR_SIZE]);
        for (kind, off, size, link) in [
            (2u32, sym_off, syms.len(), 2u32),
            (3, str_off, strings.len(), 0),
        ] {
            let mut h = [0u8; SHDR_SIZE];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            b.extend_from_slice(&h);
        }
        b
    }

    const MANGLED: &str = "_ZN7mitogen7profile5probe17h0123456789abcdefE";

    fn sample() -> Vec<u8> {
        elf(&[
            (MANGLED, 0x1100, 0x40, STT_FUNC),
            ("trampoline", 0x1200, 0, STT_FUNC),
            ("after", 0x1300, 0x10, STT_FUNC),
            ("a_variable", 0x1400, 0x100, 1),
        ])
    }

    #[test]
    fn addresses_find_their_demangled_function() {
        let s = parse(&sample()).expect("a valid file");
        assert_eq!(s.len(), 3, "functions only");
        // Offsets count from the first mapped page, link address 0x1000.
        assert_eq!(s.name_at(0x100).as_deref(), Some("mitogen::profile::probe"));
        assert_eq!(s.name_at(0x13f).as_deref(), Some("mitogen::profile::probe"));
        assert_eq!(s.name_at(0x140), None, "past the function's size");
        assert_eq!(s.name_at(0xff), None, "before the first function");
        assert_eq!(
            s.name_at(0x2ff).as_deref(),
            Some("trampoline"),
            "no size: up to the next"
        );
        assert_eq!(s.name_at(0x30f).as_deref(), Some("after"));
        assert_eq!(s.name_at(0x400), None, "not a function");
        assert_eq!(s.name_at(usize::MAX), None);
    }

    #[test]
    fn truncated_and_malformed_files_give_no_symbols() {
        let good = sample();
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_none(), "truncated to {n} bytes");
        }
        assert!(parse(b"#!/bin/sh\necho not an ELF file\n").is_none());
        // Every single byte changed: no panic; whatever parses answers
        // lookups without panicking either.
        for i in 0..good.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Some(s) = parse(&bad) {
                    for off in [0, 0x100, 0x200, 0x300, usize::MAX] {
                        let _ = s.name_at(off);
                    }
                }
            }
        }
        // A huge symbol table size is refused before reading.
        let mut huge = good.clone();
        let shoff = u64_at(&huge, 0x28).unwrap();
        let size = shoff + SHDR_SIZE + 32;
        huge[size..size + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(parse(&huge).is_none());
        // No symbol table (a stripped binary): no names.
        let mut stripped = good.clone();
        stripped[shoff + SHDR_SIZE + 4] = 3;
        assert!(parse(&stripped).is_none());
        // A string table link out of range.
        let mut link = good;
        link[shoff + SHDR_SIZE + 40..shoff + SHDR_SIZE + 44].copy_from_slice(&9u32.to_le_bytes());
        assert!(parse(&link).is_none());
    }

    #[test]
    fn legacy_rust_names_are_demangled_and_others_kept() {
        for (raw, want) in [
            (MANGLED, "mitogen::profile::probe"),
            (
                "_ZN7mitogen3sys6stacks9on_signal28_$u7b$$u7b$closure$u7d$$u7d$17hc53c9cafbfb91aadE",
                "mitogen::sys::stacks::on_signal::{{closure}}",
            ),
            (
                "_ZN4core3ptr48drop_in_place$LT$std..rt..lang_start$LP$$RP$$GT$17h0000000000000000E",
                "core::ptr::drop_in_place<std::rt::lang_start()>",
            ),
            (
                "_ZN64_$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..ops..Drop$GT$4drop17h0123456789abcdefE.llvm.42",
                "<alloc::vec::Vec<T,A> as core::ops::Drop>::drop",
            ),
            ("__restore_rt", "__restore_rt"),
            ("_RNvCs1234_7mitogen4main", "_RNvCs1234_7mitogen4main"),
            ("_ZN7mitogen", "_ZN7mitogen"),
            ("_ZN99mitogenE", "_ZN99mitogenE"),
            ("_ZN3foo$ZZ$E", "_ZN3foo$ZZ$E"),
            ("_ZN5a$u$bE", "_ZN5a$u$bE"),
            ("_ZNE", "_ZNE"),
            ("_ZN3fooEjunk", "_ZN3fooEjunk"),
        ] {
            assert_eq!(demangle(raw), want, "{raw}");
        }
    }

    /// Every legacy Rust name of this test binary demangles as the
    /// reference crate does.
    #[test]
    fn demangling_matches_rustc_demangle_on_this_binary() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let s = parse(&exe).expect("test binaries keep their symbols");
        let mut checked = 0;
        for f in &s.funcs {
            let rest = &s.names[f.name..];
            let raw =
                std::str::from_utf8(&rest[..rest.iter().position(|&b| b == 0).unwrap()]).unwrap();
            if raw.starts_with("_ZN") {
                let want = format!("{:#}", rustc_demangle::demangle(raw));
                assert_eq!(demangle(raw), want, "{raw}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} Rust names");
    }

    #[inline(never)]
    fn a_function_with_a_symbol() -> usize {
        std::hint::black_box(7)
    }

    #[test]
    fn this_test_binary_names_its_own_functions() {
        let s = Symbols::of_this_program();
        assert!(s.len() > 100, "test binaries keep their symbols");
        let base = exe_base().expect("the executable is mapped");
        let f = a_function_with_a_symbol as fn() -> usize as usize;
        assert_eq!(a_function_with_a_symbol(), 7);
        let offset = f + 1 - base;
        let name = s.name_at(offset).expect("a name");
        assert!(
            name.ends_with("a_function_with_a_symbol"),
            "{name} at offset {offset:#x} (function {f:#x}, executable mapped at {base:#x})"
        );
    }
}
