//! Reading the marker lines of the bootstrap: what the first stage and a new
//! child print on stdout before the stream turns into frames.
//!
//! | line                                               | printed by                     |
//! |----------------------------------------------------|--------------------------------|
//! | `MITOGEN-NEED:<nonce>:<uname -s> <uname -m>:<gz\|raw>` | first stage, cache miss      |
//! | `MITOGEN-EXEC:<nonce>`                             | first stage, just before exec  |
//! | `MITOGEN-FAIL:<nonce>:<reason>`                    | first stage, giving up         |
//! | `MITOGEN-HELLO:<nonce>:<protocol>:<table hash>:<version>` | the child, once configured |
//!
//! Only pure parsing lives here (the conversation in `parent.rs` acts on
//! it), so `fuzz/fuzz_targets/marker.rs` can run it on any bytes. A marker
//! may follow login noise on the same line; it counts only with the
//! connection's nonce, so noise cannot forge one.

use super::{EXEC, FAIL, HELLO, NEED};

/// The marker in `line` that carries `nonce`, as `(kind, rest)`: `kind` is
/// one of `MITOGEN-NEED`, `-EXEC`, `-FAIL`, `-HELLO` (checked in that
/// order) and `rest` what follows `<kind>:<nonce>:` (empty for
/// `<kind>:<nonce>` at the end of the line). `None` for any other line:
/// `find("noise MITOGEN-EXEC:00ff", "00ff")` is `Some(("MITOGEN-EXEC", ""))`.
pub fn find<'l>(line: &'l str, nonce: &str) -> Option<(&'static str, &'l str)> {
    for kind in [NEED, EXEC, FAIL, HELLO] {
        for (pos, _) in line.match_indices(kind) {
            let rest = line[pos + kind.len()..]
                .strip_prefix(':')
                .and_then(|r| r.strip_prefix(nonce))
                .and_then(|r| r.strip_prefix(':').or(r.is_empty().then_some(r)));
            if let Some(rest) = rest {
                return Some((kind, rest));
            }
        }
    }
    None
}

/// What a `MITOGEN-NEED` marker asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need<'l> {
    /// `uname -sm` of the target as printed, e.g. `Linux x86_64`.
    pub uname: &'l str,
    /// Its first word, the kernel (`Linux`); empty when `uname` is blank.
    pub kernel: &'l str,
    /// Its last word, the machine (`x86_64`); empty when `uname` is blank.
    pub machine: &'l str,
    /// The target can decompress gzip (`:gz`); otherwise send raw bytes.
    pub gzip: bool,
}

/// Split the rest of a `MITOGEN-NEED` marker, `<uname -sm>:<gz|raw>` (a
/// missing format means raw).
pub fn need(rest: &str) -> Need<'_> {
    let (uname, format) = rest.rsplit_once(':').unwrap_or((rest, "raw"));
    let mut words = uname.split_whitespace();
    let kernel = words.next().unwrap_or("");
    Need {
        uname,
        kernel,
        machine: words.next_back().unwrap_or(kernel),
        gzip: format == "gz",
    }
}

/// What a child's `MITOGEN-HELLO` marker says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'l> {
    /// The protocol version it speaks, as printed (compare as text: a
    /// garbled number must not parse into ours).
    pub protocol: &'l str,
    /// The hash of its function table; empty when missing.
    pub table: &'l str,
    /// Its mitogen crate version (protocol 4 on); empty when missing.
    pub version: &'l str,
    /// Its process id, when it gave a valid one.
    pub pid: Option<u32>,
}

/// Split the rest of a `MITOGEN-HELLO` marker,
/// `<protocol>:<table hash>:<crate version>:<pid>` (before protocol 4
/// without the last two; a hash is hex and a crate version semver: neither
/// holds a `:`).
pub fn hello(rest: &str) -> Hello<'_> {
    let mut parts = rest.splitn(4, ':');
    Hello {
        protocol: parts.next().unwrap_or(""),
        table: parts.next().unwrap_or(""),
        version: parts.next().unwrap_or(""),
        pid: parts.next().and_then(|p| p.parse().ok()).filter(|&p| p > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn finds_each_kind_with_our_nonce() {
        let line = |kind: &str, tail: &str| format!("{kind}:{NONCE}{tail}");
        let need = line(NEED, ":Linux x86_64:gz");
        assert_eq!(find(&need, NONCE), Some((NEED, "Linux x86_64:gz")));
        assert_eq!(find(&line(EXEC, ""), NONCE), Some((EXEC, "")));
        let fail = line(FAIL, ":disk full: no space");
        assert_eq!(find(&fail, NONCE), Some((FAIL, "disk full: no space")));
        assert_eq!(find(&line(HELLO, ":2:ab"), NONCE), Some((HELLO, "2:ab")));
    }

    #[test]
    fn refuses_other_nonces_and_near_misses() {
        for line in [
            String::new(),
            "plain login noise".to_string(),
            format!("{EXEC}:{}", &NONCE[1..]),
            format!("{EXEC}:{NONCE}x"),
            format!("{EXEC}{NONCE}"),
            format!("{EXEC}:00{NONCE}"),
            format!("MITOGEN-EXE:{NONCE}"),
        ] {
            assert_eq!(find(&line, NONCE), None, "{line:?}");
        }
    }

    #[test]
    fn finds_a_marker_after_noise_that_names_a_kind() {
        let line = format!("banner {EXEC} {EXEC}:other {EXEC}:{NONCE}");
        assert_eq!(find(&line, NONCE), Some((EXEC, "")));
    }

    #[test]
    fn splits_need() {
        let n = need("Linux x86_64:gz");
        assert_eq!(n.uname, "Linux x86_64");
        assert_eq!((n.kernel, n.machine, n.gzip), ("Linux", "x86_64", true));
        let n = need("Linux aarch64");
        assert_eq!((n.kernel, n.machine, n.gzip), ("Linux", "aarch64", false));
        let n = need("FreeBSD  12 amd64:raw");
        assert_eq!((n.kernel, n.machine, n.gzip), ("FreeBSD", "amd64", false));
        assert_eq!(
            need(""),
            Need {
                uname: "",
                kernel: "",
                machine: "",
                gzip: false
            }
        );
    }

    #[test]
    fn splits_hello() {
        assert_eq!(
            hello("4:00ab:0.1.0:4242"),
            Hello {
                protocol: "4",
                table: "00ab",
                version: "0.1.0",
                pid: Some(4242)
            }
        );
        assert_eq!(
            hello("2:00ab"),
            Hello {
                protocol: "2",
                table: "00ab",
                version: "",
                pid: None
            }
        );
        assert_eq!(hello("2").table, "");
        assert_eq!(hello("4:a:b:c:d").pid, None);
        assert_eq!(hello("4:a:b:0").pid, None);
        assert_eq!(hello("4:a:b:12").pid, Some(12));
        assert_eq!(hello("4:a:b").pid, None);
    }
}
