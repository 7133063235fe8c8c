//! The `marker` target: the bootstrap's marker-line parser
//! (`mitogen::__fuzz::{marker, need, hello}`, from `bootstrap/marker.rs`).

use mitogen::__fuzz::{hello, marker as find, need};

/// The nonce every `marker` run looks for (a real one is 32 hex digits).
pub const NONCE: &str = "0123456789abcdef0123456789abcdef";
/// The marker kinds, in the order the parser tries them.
pub const KINDS: [&str; 4] = [
    "MITOGEN-NEED",
    "MITOGEN-EXEC",
    "MITOGEN-FAIL",
    "MITOGEN-HELLO",
];

/// Does `line` hold `<kind>:<nonce>` followed by `:` or the end?
fn holds(line: &str, kind: &str) -> bool {
    let tag = format!("{kind}:{NONCE}");
    line.contains(&format!("{tag}:")) || line.ends_with(&tag)
}

/// `s` with no `MITOGEN` left in it, so it cannot hold a marker.
fn defuse(s: &str) -> String {
    s.replace("MITOGEN", "mitogen")
}

/// Check one parse of `line`; returns the index in [`KINDS`] found, if any.
fn parse(line: &str) -> Option<usize> {
    let Some((kind, rest)) = find(line, NONCE) else {
        for kind in KINDS {
            assert!(!holds(line, kind), "{kind} missed in {line:?}");
        }
        return None;
    };
    let k = KINDS.iter().position(|&x| x == kind).expect("a known kind");
    for earlier in &KINDS[..k] {
        assert!(!holds(line, earlier), "{kind} found before {earlier}");
    }
    let tag = format!("{kind}:{NONCE}");
    assert!(
        line.ends_with(&format!("{tag}:{rest}")) || (rest.is_empty() && line.ends_with(&tag)),
        "rest {rest:?} is not what follows {tag} in {line:?}"
    );
    let n = need(rest);
    assert!(rest.starts_with(n.uname), "uname is the front of the rest");
    let words: Vec<&str> = n.uname.split_whitespace().collect();
    assert_eq!(n.kernel, words.first().copied().unwrap_or(""));
    assert_eq!(n.machine, words.last().copied().unwrap_or(""));
    assert_eq!(n.gzip, rest.ends_with(":gz"));
    // A hello is `<protocol>:<table>:<version>:<pid>`, each part up to the
    // next `:` but the last; a pid that is not a positive number is none.
    let h = hello(rest);
    let parts: Vec<&str> = rest.splitn(4, ':').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    assert!(!h.protocol.contains(':') && !h.table.contains(':') && !h.version.contains(':'));
    assert_eq!(
        (h.protocol, h.table, h.version),
        (part(0), part(1), part(2))
    );
    assert_eq!(h.pid, part(3).parse().ok().filter(|&p: &u32| p > 0));
    Some(k)
}

/// What one `marker` run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MarkerRun {
    /// The kind found in the line as given (index in [`KINDS`]).
    pub found: Option<usize>,
    /// The marker built from the input was read back intact.
    pub built: bool,
}

/// Parse `data` (lossy UTF-8, as the parent reads lines) as a line, then
/// build a marker from it and parse that.
///
/// The first byte picks a kind; the rest splits at its first `|` into noise
/// and fields (any `MITOGEN` in either defused). The built line is
/// `<noise><kind>:<nonce>:<fields>`, with the fields shaped as the first
/// stage and the child print them; it must parse back to the same kind and
/// fields.
///
/// Checks: no panic; a marker is found exactly when the line holds one with
/// our nonce, the first kind in order wins, `rest` is what follows it, and
/// the `NEED`/`HELLO` splits agree with the text.
pub fn marker(data: &[u8]) -> MarkerRun {
    let text = String::from_utf8_lossy(data);
    let line = text.trim_end_matches(['\r', '\n']);
    let found = parse(line);

    let Some((&first, rest)) = data.split_first() else {
        return MarkerRun {
            found,
            built: false,
        };
    };
    let rest = String::from_utf8_lossy(rest);
    let (noise, fields) = rest.split_once('|').unwrap_or(("", &rest));
    let (noise, fields) = (defuse(noise), defuse(fields));
    let word = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect()
    };
    let k = usize::from(first) % KINDS.len();
    let (a, b) = fields.split_once(' ').unwrap_or((&fields, ""));
    let (a, b) = (word(a), word(b));
    let tail = match k {
        0 => format!(":{a} {b}:{}", if first & 0x80 != 0 { "gz" } else { "raw" }),
        1 => String::new(),
        2 => format!(":{fields}"),
        _ => format!(":{a}:{b}:{}:{}", a.len(), u32::from(first) + 1),
    };
    let built = format!("{noise}{}:{NONCE}{tail}", KINDS[k]);
    assert_eq!(parse(&built), Some(k), "built marker not found: {built:?}");
    let (_, got) = find(&built, NONCE).expect("parsed above");
    assert_eq!(got, tail.strip_prefix(':').unwrap_or(""));
    match k {
        0 => {
            let n = need(got);
            if !a.is_empty() && !b.is_empty() {
                assert_eq!((n.kernel, n.machine), (a.as_str(), b.as_str()));
            }
            assert_eq!(n.gzip, first & 0x80 != 0);
        }
        3 => {
            let h = hello(got);
            let version = a.len().to_string();
            assert_eq!(
                (h.protocol, h.table, h.version, h.pid),
                (
                    a.as_str(),
                    b.as_str(),
                    version.as_str(),
                    Some(u32::from(first) + 1)
                )
            );
        }
        _ => {}
    }
    MarkerRun { found, built: true }
}
