//! The first stage: one line of POSIX shell that runs this program on a
//! target that has nothing but `sh`.

/// Where and how the first stage looks for and installs the binary.
pub(crate) struct FirstStage<'a> {
    /// `(uname -m patterns, sha256)` of every binary this side can supply:
    /// the cache file name to look for on a target of that machine type.
    pub binaries: &'a [(String, String)],
    /// Echoed by the child so markers can't be confused with login noise.
    pub nonce: &'a str,
    /// `argv[1]` of the child, `mitogen:<name>`, shown by `ps`.
    pub name: &'a str,
    /// Tried before the standard candidates.
    pub cache_dir: Option<&'a str>,
}

/// Quote `s` for POSIX sh with single quotes.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl FirstStage<'_> {
    /// The script: a single line, no newline characters, safe to pass as
    /// the argument of `sh -c`.
    ///
    /// It picks the hash of the binary for the target's `uname -m`, and
    /// for each candidate directory execs `<dir>/<sha256>` if present and
    /// executable. Otherwise it picks the first candidate it can create,
    /// owns, makes private (0700) and can execute in (checked by running a
    /// probe script, since noexec mounts are common), prints
    /// `MITOGEN-NEED:<nonce>:<uname -s> <uname -m>:<gz or raw>`, reads a
    /// `<format> <bytes> <size> <sha256>` line and exactly `<bytes>` bytes,
    /// installs them under a temporary name, checks the size, renames them
    /// to `<sha256>` and execs the result.
    pub(crate) fn script(&self) -> String {
        let dirs = [
            self.cache_dir.map(sh_quote).unwrap_or_default(),
            "\"${XDG_CACHE_HOME:-$HOME/.cache}/mitogen\"".into(),
            "\"${TMPDIR:-/tmp}/mitogen-$u\"".into(),
            "\"/var/tmp/mitogen-$u\"".into(),
            "\"/tmp/mitogen-$u\"".into(),
            "\"/dev/shm/mitogen-$u\"".into(),
            "\"${XDG_RUNTIME_DIR:-/nonexistent}/mitogen\"".into(),
        ]
        .iter()
        .filter(|d| !d.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
        let arms: String = self
            .binaries
            .iter()
            .map(|(pattern, hash)| format!("{pattern}) h={hash};; "))
            .collect();
        let t = self.nonce;
        let n = sh_quote(self.name);
        [
            "umask 077".to_string(),
            "u=$(id -u)".into(),
            "m=$(uname -m)".into(),
            format!("case \"$m\" in {arms}*) h=none;; esac"),
            format!("t={t}"),
            format!("for d in {dirs}; do [ -x \"$d/$h\" ] && [ -O \"$d/$h\" ] && MITOGEN_CHILD=$t exec \"$d/$h\" {n}; done"),
            "w=".into(),
            format!("for d in {dirs}; do mkdir -p \"$d\" 2>/dev/null && [ -O \"$d\" ] && chmod 700 \"$d\" && p=\"$d/.probe.$$\" && printf '#!/bin/sh\\nexit 0\\n' > \"$p\" && chmod 700 \"$p\" && \"$p\" 2>/dev/null && rm -f \"$p\" && w=$d && break; rm -f \"$p\" 2>/dev/null; done"),
            "[ -n \"$w\" ] || { echo \"MITOGEN-FAIL:$t:no candidate directory is writable, owned by us and allows executing programs (noexec everywhere?)\"; exit 1; }".into(),
            "z=raw; command -v gzip >/dev/null 2>&1 && z=gz".into(),
            "echo \"MITOGEN-NEED:$t:$(uname -s) $m:$z\"".into(),
            "read -r f c s h || exit 1".into(),
            "o=\"$w/.$h.$$\"".into(),
            "if [ \"$f\" = gz ]; then head -c \"$c\" | gzip -dc > \"$o\"; else head -c \"$c\" > \"$o\"; fi || { echo \"MITOGEN-FAIL:$t:could not write $o (disk full?)\"; rm -f \"$o\"; exit 1; }".into(),
            "[ \"$(wc -c < \"$o\")\" -eq \"$s\" ] || { echo \"MITOGEN-FAIL:$t:short write to $o (disk full?)\"; rm -f \"$o\"; exit 1; }".into(),
            "chmod 700 \"$o\" && mv -f \"$o\" \"$w/$h\" || { echo \"MITOGEN-FAIL:$t:could not install into $w\"; exit 1; }".into(),
            format!("MITOGEN_CHILD=$t exec \"$w/$h\" {n}"),
        ]
        .join("; ")
    }
}

impl FirstStage<'_> {
    /// `sh -c '<script>'` as one command line for a remote login shell.
    pub(crate) fn command_line(&self) -> String {
        format!("sh -c {}", sh_quote(&self.script()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_and_quoted() {
        let bins = [("x86_64|amd64".to_string(), "abc".to_string())];
        let fs = FirstStage {
            binaries: &bins,
            nonce: "n1",
            name: "mitogen:it's",
            cache_dir: Some("/x y"),
        };
        assert!(!fs.script().contains('\n'));
        assert!(fs.script().contains("'mitogen:it'\\''s'"));
    }

    #[test]
    fn script_parses_under_sh() {
        let bins = [("x86_64|amd64".to_string(), "abc".to_string())];
        let fs = FirstStage {
            binaries: &bins,
            nonce: "n1",
            name: "mitogen:x",
            cache_dir: None,
        };
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(fs.script())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
