//! Every public method a user calls on the main types has an `# Examples`
//! section (issue 12): a text scan of the library's sources that lists each
//! missing one by `file:line`.
//!
//! Inside every inherent `impl <Type>` block (at the start of a line, for
//! the types in [`TYPES`]), each item at the block's own level that starts
//! with `pub fn` or `pub const fn` must have `# Examples` in the doc comment
//! above it. Items marked `#[doc(hidden)]` are not part of the documented
//! API and are skipped; `pub(crate)` functions are not public.

use std::path::{Path, PathBuf};

/// The types whose methods must all show an example.
const TYPES: &[&str] = &[
    "Router",
    "Context",
    "Receiver",
    "Sender",
    "Select",
    "Latch",
    "CallChain",
    "Channel",
    "AsyncCall",
    "ExternalContext",
];

#[test]
fn every_public_method_has_an_example() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        src.display()
    );

    let mut checked = 0;
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let shown = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(file);
        for method in public_methods(&text) {
            checked += 1;
            if !method.has_example {
                missing.push(format!(
                    "{}:{}: {}::{}",
                    shown.display(),
                    method.line,
                    method.owner,
                    method.name
                ));
            }
        }
    }
    // The scan itself must find the API, or a change in layout would make
    // this test pass by finding nothing.
    assert!(
        checked > 100,
        "found only {checked} public methods on {TYPES:?}: the scan no longer matches the sources"
    );
    assert!(
        missing.is_empty(),
        "{} of {checked} public methods have no `# Examples` section in their doc comment:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The scan on a small source: what counts, what does not.
#[test]
fn the_scan_sees_examples_nesting_and_hidden_items() {
    let text = r#"
impl Router {
    /// Documented.
    ///
    /// # Examples
    /// ```
    /// let s = "{ not a brace";
    /// ```
    pub fn good(&self) {
        let c = '{';
        let s = "}}}";
        if true { let _ = (c, s); }
    }

    /// No example.
    #[must_use]
    pub fn bad(&self) -> u8 { 0 }

    #[doc(hidden)]
    pub fn hidden(&self) {}

    pub(crate) fn internal(&self) {}
}

impl Default for Router {
    fn default() -> Self { todo!() }
    pub fn not_inherent() {}
}

impl<T> Latch<T> {
    pub const fn lonely() {}
}

impl Unrelated {
    pub fn ignored() {}
}
"#;
    let found: Vec<_> = public_methods(text)
        .into_iter()
        .map(|m| (m.owner, m.name, m.has_example, m.line))
        .collect();
    assert_eq!(
        found,
        vec![
            ("Router".to_string(), "good".to_string(), true, 9),
            ("Router".to_string(), "bad".to_string(), false, 17),
            ("Latch".to_string(), "lonely".to_string(), false, 31),
        ]
    );
}

/// One `pub fn` found in an inherent impl of one of [`TYPES`].
struct Method {
    owner: String,
    name: String,
    line: usize,
    has_example: bool,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The public methods of inherent impls of [`TYPES`] in `text`.
fn public_methods(text: &str) -> Vec<Method> {
    let lines: Vec<&str> = text.lines().collect();
    let depths = depth_at_line_start(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(owner) = inherent_impl_of(lines[i]) else {
            i += 1;
            continue;
        };
        let base = depths[i];
        let mut j = i + 1;
        // Until the block closes: the first line starting back at `base`.
        while j < lines.len() && depths[j] > base {
            let line = lines[j].trim_start();
            let name = ["pub fn ", "pub const fn "]
                .iter()
                .find_map(|p| line.strip_prefix(p));
            if let (Some(name), true) = (name, depths[j] == base + 1) {
                let doc = attached_doc(&lines[..j]);
                if !doc.iter().any(|l| l.contains("doc(hidden)")) {
                    out.push(Method {
                        owner: owner.to_string(),
                        name: name
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                        line: j + 1,
                        has_example: doc.iter().any(|l| l.trim() == "/// # Examples"),
                    });
                }
            }
            j += 1;
        }
        i = j;
    }
    out
}

/// The type of an inherent impl opened on this line (`impl Router {`,
/// `impl<T> Latch<T> {`), if it is one of [`TYPES`].
fn inherent_impl_of(line: &str) -> Option<&'static str> {
    let rest = line.strip_prefix("impl")?;
    if !line.trim_end().ends_with('{') || line.contains(" for ") {
        return None;
    }
    // Skip the impl's own generics, `<...>`, nesting included.
    let rest = if rest.starts_with('<') {
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(at, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(at + 1)
        })?;
        &rest[end..]
    } else {
        rest
    };
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    TYPES.iter().copied().find(|t| *t == name)
}

/// The doc comment and attribute lines right above the last line of
/// `before`'s successor.
fn attached_doc<'a>(before: &[&'a str]) -> Vec<&'a str> {
    before
        .iter()
        .rev()
        .map(|l| l.trim_start())
        .take_while(|l| l.starts_with("///") || l.starts_with("#["))
        .collect()
}

/// Brace depth at the start of each line, not counting braces inside
/// comments, strings, raw strings or character literals.
fn depth_at_line_start(text: &str) -> Vec<usize> {
    let chars: Vec<char> = text.chars().collect();
    let mut depths = vec![0];
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |depths: &mut Vec<usize>, depth: usize| depths.push(depth);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => newline(&mut depths, depth),
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        newline(&mut depths, depth);
                    }
                    i += 1;
                }
                i += 2;
                continue;
            }
            'r' if matches!(next, Some('"') | Some('#'))
                && !chars
                    .get(i.wrapping_sub(1))
                    .is_some_and(|p| p.is_alphanumeric() || *p == '_') =>
            {
                // A raw string: r"…", r#"…"#, …
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) == Some(&'"') {
                    j += 1;
                    loop {
                        match chars.get(j) {
                            None => break,
                            Some('\n') => newline(&mut depths, depth),
                            Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                                j += 1 + hashes;
                                break;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j;
                    continue;
                }
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' => i += 1,
                        '\n' => newline(&mut depths, depth),
                        _ => {}
                    }
                    i += 1;
                }
            }
            '\'' => {
                // A character literal ('{', '\'', '\u{7b}'), not a lifetime.
                if next == Some('\\') {
                    let close = (i + 3..chars.len()).find(|&k| chars[k] == '\'');
                    i = close.unwrap_or(i);
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 2;
                }
            }
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    depths
}
