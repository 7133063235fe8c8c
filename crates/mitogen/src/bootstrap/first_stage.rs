//! The first stage: one line of POSIX shell that runs this program on a
//! target that has nothing but `sh`.
//!
//! Trust rule (the same in the loop that execs a cached binary and the loop
//! that picks a directory to install into): a candidate directory is used
//! only if it is not a symlink, and once the shell has `cd`'d into it, `.`
//! is owned by us with mode exactly `drwx------`. The binary is then run as
//! `./<sha256>`, a regular, non-symlink file owned by us. Nobody else can
//! add, rename or replace entries in a private directory, and the shell's
//! working directory can't be swapped under it, so nothing checked can
//! change before the `exec`. Directories are never `chmod`ed: one that
//! exists with another mode is skipped, so a planted symlink can't make us
//! change the mode of whatever it points at.

use crate::bootstrap::binary::is_plain_path;
use crate::bootstrap::{forward, CHILD_ENV, DYNAMIC, EXEC, FAIL, FULL, NEED, NODIR, PROBE};

/// A binary the first stage may find in, or install into, the cache.
pub(crate) struct Known<'a> {
    /// `uname -m` patterns of the targets it runs on (`x86_64|amd64`).
    pub machines: &'a str,
    /// Its SHA-256: the cache file name.
    pub sha256: &'a str,
    /// Its size, checked on a cache hit; `None`: only "not empty" is checked.
    pub size: Option<u64>,
}

/// Where and how the first stage looks for and installs the binary.
pub(crate) struct FirstStage<'a> {
    /// Every binary this side can supply.
    pub binaries: &'a [Known<'a>],
    /// 32 hex digits; echoed in every marker so they can't be confused
    /// with login noise, and passed to the child in `MITOGEN_CHILD`.
    pub nonce: &'a str,
    /// How long the child waits for its configuration frame, in ms.
    pub child_timeout_ms: u64,
    /// `argv[1]` of the child, `mitogen:<name>`, shown by `ps`.
    pub name: &'a str,
    /// Tried before the standard candidates.
    pub cache_dir: Option<&'a str>,
}

/// `vm`: `.` has mode exactly 0700 (the rest of the trust rule); also
/// used by [`diagnose_script`].
const VM: &str = "vm() { case $(LC_ALL=C ls -nd .) in drwx------*) return 0;; esac; return 1; }";

/// Quote `s` for POSIX sh with single quotes.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quote `s` so that both a POSIX shell and a csh-family login shell read
/// it back unchanged: single quotes, and `!` (csh history, even inside
/// quotes) outside them as `\!`. `s` must not contain a newline.
fn login_shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''").replace('!', r"'\!'"))
}

impl FirstStage<'_> {
    /// The script: a single line, no newline characters, safe to pass as
    /// the argument of `sh -c`.
    ///
    /// It picks the hash and size of the binary for the target's
    /// `uname -m`, and for each candidate directory that passes the trust
    /// rule (module docs) execs `./<sha256>` if it is there with the right
    /// size; an entry of the wrong size is removed. Otherwise it picks the
    /// first candidate it can create (`mkdir` under `umask 077`), that
    /// passes the rule and can execute (checked by running a probe, since
    /// noexec mounts are common), prints
    /// `MITOGEN-NEED:<nonce>:<uname -s> <uname -m>:<gz or raw>`, reads a
    /// `<format> <bytes> <size> <sha256>` line and exactly `<bytes>` bytes,
    /// installs them under a temporary name, checks the size and the
    /// SHA-256 (with `sha256sum`, `shasum -a 256` or `openssl`, whichever
    /// exists), syncs the file, renames it to `<sha256>` and execs it.
    /// Just before either `exec` it prints `MITOGEN-EXEC:<nonce>`.
    pub(crate) fn script(&self) -> String {
        self.script_with(&|sha256| forward::needs_of(sha256).and_then(|n| n.interpreter))
    }

    /// [`script`](Self::script), with the ELF interpreter of each binary
    /// (by SHA-256) from `interpreter`: tests use a fake one.
    pub(crate) fn script_with(&self, interpreter: &dyn Fn(&str) -> Option<String>) -> String {
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
            .map(|b| {
                let size = b.size.map(|s| s.to_string()).unwrap_or_default();
                let interp = interpreter(b.sha256)
                    .filter(|p| is_plain_path(p))
                    .map(|p| sh_quote(&p))
                    .unwrap_or_default();
                format!("{}) h={}; e={size}; l={interp};; ", b.machines, b.sha256)
            })
            .collect();
        let t = self.nonce;
        let exec = self.exec_line();
        [
            "umask 077".to_string(),
            "unset CDPATH IFS".into(),
            "r=$PWD".into(),
            "u=$(id -u)".into(),
            "m=$(uname -m)".into(),
            format!("case \"$m\" in {arms}*) h=none; e=; l=;; esac"),
            format!("t={t}"),
            // vd DIR: cd into DIR if it is a real directory we own (builtins only).
            "vd() { cd \"$r\" 2>/dev/null; [ -n \"$1\" ] || return 1; [ -L \"$1\" ] && return 1; [ -d \"$1\" ] && cd \"$1\" 2>/dev/null && [ -O . ]; }".into(),
            VM.into(),
            // vf: ./$h is a regular file of ours, not a symlink, executable,
            // and non-empty (builtins only).
            "vf() { [ -L \"$h\" ] && return 1; [ -f \"$h\" ] && [ -O \"$h\" ] && [ -x \"$h\" ] && [ -s \"$h\" ]; }".into(),
            // vh: one `ls` for both `.` (mode 0700) and ./$h (a regular file
            // of the expected size); an entry of another size goes.
            "vh() { set -- $(LC_ALL=C ls -nd . \"./$h\" 2>/dev/null); case \"$1\" in drwx------*) ;; *) return 1;; esac; while [ $# -gt 0 ]; do [ \"$1\" = . ] && break; shift; done; [ $# -ge 6 ] || return 1; case \"$2\" in -*) ;; *) return 1;; esac; [ -z \"$e\" ] || [ \"$6\" = \"$e\" ] && return 0; rm -f \"$h\"; return 1; }".into(),
            // The candidates, once, as the positional parameters.
            format!("set -- {dirs}"),
            // The binary's ELF interpreter `$l` (none: static) must exist,
            // else any cached copy goes and the failure names the ELF
            // interpreters (C libraries) the target has.
            format!("[ -z \"$l\" ] || [ -e \"$l\" ] || {{ for d; do vd \"$d\" && vf && rm -f \"$h\"; done; echo \"{FAIL}:$t:{DYNAMIC} $m $l\" /lib*/ld-*; exit 1; }}"),
            format!("for d; do vd \"$d\" && vf && vh && {exec}; done"),
            "w=".into(),
            "for d; do cd \"$r\" 2>/dev/null; [ -L \"$d\" ] || mkdir -p \"$d\" 2>/dev/null; vd \"$d\" && vm || continue; p=.probe.$$; if printf '\\043\\041/bin/sh\\nexit 0\\n' > \"$p\" && chmod 700 \"$p\" && \"./$p\" 2>/dev/null; then rm -f \"$p\"; w=$d; break; fi; rm -f \"$p\"; done".into(),
            // None usable: the parent answers with `diagnose_script`, which
            // says why of each candidate (only a failure pays for it).
            format!("[ -n \"$w\" ] || {{ echo \"{FAIL}:$t:{NODIR}\"; read -r i && eval \"$i\"; exit 1; }}"),
            "z=raw; command -v gzip >/dev/null 2>&1 && z=gz".into(),
            format!("echo \"{NEED}:$t:$(uname -s) $m:$z\""),
            // The rest of the install arrives with the binary (`install_script`):
            // a warm start never pays for its bytes.
            "read -r i || exit 1".into(),
            "eval \"$i\"".into(),
        ]
        .join("; ")
    }

    /// The second half of the install, sent by the parent on stdin as one
    /// line before the binary when the first stage asks for it (`eval`ed
    /// there, in the chosen directory `$w`): read the
    /// `<format> <bytes> <size> <sha256>` line and exactly `<bytes>` bytes,
    /// check size and SHA-256, sync, rename into place and exec.
    pub(crate) fn install_script(&self) -> String {
        let exec = self.exec_line();
        let fail = |why: &str| format!("{{ echo \"{FAIL}:$t:{why}\"; rm -f \"$o\"; exit 1; }}");
        // A failed or short write: the partial file goes, then `df` says
        // how much room there is (`${11}`: "Available" of `df -P`'s 2nd line).
        let full = format!("{{ rm -f \"$o\"; set -- $(df -Pk . 2>/dev/null); printf '%s\\n' \"{FAIL}:$t:{FULL} $s ${{11:-?}} $w\"; exit 1; }}");
        [
            // `<format> <bytes> <size> <sha256> [<interpreter>]`: the check
            // runs again for a binary the first stage did not know.
            "read -r f c s h l || exit 1".to_string(),
            format!("[ -z \"$l\" ] || [ -e \"$l\" ] || {{ echo \"{FAIL}:$t:{DYNAMIC} $m $l\" /lib*/ld-*; exit 1; }}"),
            "o=\".$h.$$\"".into(),
            format!("if [ \"$f\" = gz ]; then head -c \"$c\" | gzip -dc > \"$o\"; else head -c \"$c\" > \"$o\"; fi || {full}"),
            format!("[ $(wc -c < \"$o\") -eq \"$s\" ] || {full}"),
            "k=; if command -v sha256sum >/dev/null 2>&1; then k=$(sha256sum < \"$o\"); elif command -v shasum >/dev/null 2>&1; then k=$(shasum -a 256 < \"$o\"); elif command -v openssl >/dev/null 2>&1; then k=$(openssl dgst -sha256 < \"$o\" 2>/dev/null); k=${k##* }; fi; k=${k%% *}".into(),
            format!("[ -z \"$k\" ] || [ \"$k\" = \"$h\" ] || {}", fail("checksum mismatch in $w/$o: got $k, expected $h")),
            "sync \"$o\" 2>/dev/null || sync".into(),
            format!("chmod 700 \"$o\" || {}", fail("could not install into $w")),
            // Run it once before it gets its cache name: a binary that
            // cannot start here (a C library too old, a library missing)
            // never stays. Its output becomes one line (no globbing).
            format!("x=$({CHILD_ENV}={PROBE} \"./$o\" </dev/null 2>&1) || {{ set -f; set -- $x; echo \"{FAIL}:$t:{PROBE} $m $*\"; rm -f \"$o\"; exit 1; }}"),
            format!("mv -f \"$o\" \"$h\" || {}", fail("could not install into $w")),
            exec,
        ]
        .join("; ")
    }

    /// Announce `MITOGEN-EXEC`, then exec `./$h` as the child.
    fn exec_line(&self) -> String {
        // Control characters would break the one-line promise; the name is
        // only shown by `ps`.
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        format!(
            "echo \"{EXEC}:$t\" && MITOGEN_CHILD=$t:{} MITOGEN_CWD=\"$r\" exec \"./$h\" {}",
            self.child_timeout_ms,
            sh_quote(&name)
        )
    }

    /// `sh -c '<script>'` as one command line for a remote login shell
    /// (any of sh, bash, ash, zsh, csh, tcsh).
    pub(crate) fn command_line(&self) -> String {
        format!("sh -c {}", login_shell_quote(&self.script()))
    }
}

/// Why no candidate directory is usable, sent by the parent as one line
/// when the first stage reports [`NODIR`] alone, and `eval`ed there (the
/// candidates are still `$@`; `vm` and `$r`, `$t`, `$u` still set). For
/// each candidate it finds the first reason it is refused: a symlink, not
/// a directory, cannot be created (with the OS's words), not owned by us,
/// not mode 0700, cannot be written (read-only, full: the OS's words) or
/// cannot run programs (noexec); then prints
/// `MITOGEN-FAIL:<nonce>:nodir; <dir>: <why>; <dir>: <why>...` and exits.
pub(crate) fn diagnose_script() -> String {
    let checks = [
        "if [ -L \"$d\" ]; then x='a symlink'",
        "elif [ -e \"$d\" ] && [ ! -d \"$d\" ]; then x='not a directory'",
        "elif [ ! -d \"$d\" ]; then e=$(LC_ALL=C mkdir -p \"$d\" 2>&1); x=\"cannot be created${e:+: ${e##*: }}\"",
        "elif ! cd \"$d\" 2>/dev/null; then x='cannot be entered'",
        "elif [ ! -O . ]; then set -- $(LC_ALL=C ls -nd .); x=\"owned by uid $3, not by us (uid $u)\"",
        "elif ! vm; then set -- $(LC_ALL=C ls -nd .); x=\"mode $1, not drwx------\"",
        // Written and run as in the first stage: its words if writing fails.
        "else p=.probe.$$; if ! e=$( { printf '\\043\\041/bin/sh\\nexit 0\\n' > \"$p\"; } 2>&1); then x=\"cannot be written${e:+: ${e##*: }}\"; elif chmod 700 \"$p\" 2>/dev/null && \"./$p\" 2>/dev/null; then x='usable now'; else x='cannot run programs (mounted noexec?)'; fi; rm -f \"$p\"",
        "fi",
    ]
    .join("; ");
    format!(
        "y=; for d; do cd \"$r\" 2>/dev/null; {checks}; y=\"$y; $d: $x\"; done; printf '%s\\n' \"{FAIL}:$t:{NODIR}$y\"; exit 1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage<'a>(bins: &'a [Known<'a>], cache_dir: Option<&'a str>) -> FirstStage<'a> {
        FirstStage {
            binaries: bins,
            nonce: "0123456789abcdef0123456789abcdef",
            child_timeout_ms: 30_000,
            name: "mitogen:it's",
            cache_dir,
        }
    }

    const BINS: &[Known<'static>] = &[Known {
        machines: "x86_64|amd64",
        sha256: "abc",
        size: Some(5),
    }];

    #[test]
    fn one_line_and_quoted() {
        let fs = stage(BINS, Some("/x y"));
        assert!(!fs.script().contains('\n'));
        assert!(fs.script().contains("'mitogen:it'\\''s'"));
    }

    /// csh and tcsh expand `!` even inside single quotes ("Event not found").
    #[test]
    fn command_line_has_no_bare_history_character() {
        let fs = FirstStage {
            name: "mitogen:wow!",
            ..stage(BINS, Some("/cache!dir"))
        };
        assert!(
            !fs.script().contains("#!"),
            "the probe's #! is written in octal"
        );
        let line = fs.command_line();
        assert!(!line.contains('\n'));
        for (i, _) in line.match_indices('!') {
            assert_eq!(&line[i - 1..i], "\\", "unescaped ! at {i} in {line}");
        }
    }

    #[test]
    fn control_characters_in_the_name_become_question_marks() {
        let fs = FirstStage {
            name: "mitogen:a\nb",
            ..stage(BINS, None)
        };
        assert!(fs.script().contains("'mitogen:a?b'"));
    }

    #[test]
    fn script_parses_under_sh() {
        let fs = stage(BINS, None);
        for script in [fs.script(), fs.install_script(), diagnose_script()] {
            assert!(!script.contains('\n'));
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// What every connection sends stays small: the install half travels
    /// only when the binary does.
    #[test]
    fn warm_command_line_stays_small() {
        let fs = stage(BINS, None);
        let line = fs.command_line();
        // The interpreter check (issue 11) costs ~135 bytes: 1665 before
        // it, 1800 after. Sending the no-directory diagnosis only on a
        // failure (`diagnose_script`) took it to 1712.
        assert!(line.len() < 1750, "{} bytes: {line}", line.len());
        assert!(!line.contains("sha256sum") && fs.install_script().contains("sha256sum"));
    }

    /// The POSIX shells here that can run a first stage: dash, busybox's
    /// ash, bash (each one printed and skipped when missing).
    fn shells() -> Vec<Vec<&'static str>> {
        let mut v = Vec::new();
        for argv in [vec!["dash"], vec!["busybox", "sh"], vec!["bash", "--posix"]] {
            let found = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .args(["-c", "exit 0"])
                .output()
                .is_ok_and(|o| o.status.success());
            if found {
                v.push(argv);
            } else {
                eprintln!("skipping {}: not installed", argv[0]);
            }
        }
        assert!(!v.is_empty(), "no POSIX shell at all");
        v
    }

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    /// A private cache directory (mode 0700) under a fresh temporary one,
    /// also used as `$HOME` and `$TMPDIR` so no other candidate is real.
    fn private_dir(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("mitogen-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = root.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        for d in [&root, &cache] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        (root, cache)
    }

    /// Run `script` under `shell` with `stdin`, bounded by `timeout`.
    fn run(shell: &[&str], script: &str, root: &std::path::Path, stdin: &[u8]) -> (i32, String) {
        use std::io::Write;
        let mut child = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .arg("-c")
            .arg(script)
            .env("HOME", root)
            .env("TMPDIR", root)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        // The shell may exit before it reads it all: ignore EPIPE.
        let _ = input.write_all(stdin);
        drop(input);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the first stage finished within 20 s")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn any_machine(sha256: &str) -> [Known<'_>; 1] {
        [Known {
            machines: "*",
            sha256,
            size: None,
        }]
    }

    /// A missing interpreter fails before anything is asked for or run,
    /// and a cached copy of that binary is removed.
    #[test]
    fn a_missing_interpreter_fails_first_and_clears_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        for shell in shells() {
            let (root, cache) = private_dir(&format!("missing-{}", shell[0]));
            let cached = cache.join("abc");
            std::fs::write(&cached, "#!/bin/sh\necho ran\n").unwrap();
            std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o700)).unwrap();
            let bins = any_machine("abc");
            let fs = stage(&bins, cache.to_str());
            let script = fs.script_with(&|_| Some("/nonexistent/ld-fake.so.2".into()));
            let (status, out) = run(&shell, &script, &root, b"");
            assert_eq!(status, 1, "{shell:?}: {out}");
            let want = format!("{FAIL}:{NONCE}:{DYNAMIC} ");
            assert!(out.starts_with(&want), "{shell:?}: {out}");
            assert!(
                out.contains(" /nonexistent/ld-fake.so.2"),
                "{shell:?}: {out}"
            );
            assert!(
                !out.contains(NEED) && !out.contains(EXEC) && !out.contains("ran"),
                "{out}"
            );
            assert_eq!(entries(&cache), Vec::<String>::new(), "{shell:?}");
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    /// With the interpreter there, the cached binary runs as before.
    #[test]
    fn a_present_interpreter_lets_the_cached_binary_run() {
        use std::os::unix::fs::PermissionsExt;
        for shell in shells() {
            let (root, cache) = private_dir(&format!("present-{}", shell[0]));
            let cached = cache.join("abc");
            std::fs::write(&cached, "#!/bin/sh\necho ran $MITOGEN_CHILD\n").unwrap();
            std::fs::set_permissions(&cached, std::fs::Permissions::from_mode(0o700)).unwrap();
            let bins = any_machine("abc");
            let fs = stage(&bins, cache.to_str());
            let script = fs.script_with(&|_| Some("/bin/sh".into()));
            let (status, out) = run(&shell, &script, &root, b"");
            assert_eq!(status, 0, "{shell:?}: {out}");
            assert_eq!(
                out,
                format!("{EXEC}:{NONCE}\nran {NONCE}:30000\n"),
                "{shell:?}"
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    /// The diagnosis names each refused candidate and why, under every
    /// shell, with the OS's words where a command failed.
    #[test]
    fn the_diagnosis_says_why_of_each_candidate() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        for shell in shells() {
            let (root, cache) = private_dir(&format!("diag-{}", shell[0]));
            let link = root.join("link");
            symlink(&cache, &link).unwrap();
            let file = root.join("file");
            std::fs::write(&file, "x").unwrap();
            let open = root.join("open");
            std::fs::create_dir(&open).unwrap();
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut dirs = vec![
                (link.clone(), "a symlink"),
                (file.clone(), "not a directory"),
                (file.join("sub"), "cannot be created: Not a directory"),
                (open.clone(), "mode drwxr-xr-x, not drwx------"),
                (cache.clone(), "usable now"),
            ];
            let theirs = root.join("theirs");
            if mitogen_testkit::is_root() {
                std::fs::create_dir(&theirs).unwrap();
                std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
                std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
                dirs.push((theirs.clone(), "owned by uid 65534, not by us (uid 0)"));
            }
            let quoted: Vec<String> = dirs
                .iter()
                .map(|(d, _)| sh_quote(d.to_str().unwrap()))
                .collect();
            let script = format!(
                "r=$PWD; u=$(id -u); t={NONCE}; {VM}; set -- {}; {}",
                quoted.join(" "),
                diagnose_script()
            );
            let (status, out) = run(&shell, &script, &root, b"");
            assert_eq!(status, 1, "{shell:?}: {out}");
            let want: String = dirs
                .iter()
                .map(|(d, why)| format!("; {}: {why}", d.display()))
                .collect();
            assert_eq!(out, format!("{FAIL}:{NONCE}:{NODIR}{want}\n"), "{shell:?}");
            assert_eq!(
                entries(&cache),
                Vec::<String>::new(),
                "{shell:?}: no probe left"
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    /// The cold path: the install half and the binary on stdin.
    fn cold(shell: &[&str], tag: &str, binary: &[u8], interp: &str) -> (i32, String, Vec<String>) {
        use sha2::{Digest, Sha256};
        let sha: String = Sha256::digest(binary)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (root, cache) = private_dir(&format!("{tag}-{}", shell[0]));
        let bins = [Known {
            machines: "*",
            sha256: &sha,
            size: None,
        }];
        let fs = stage(&bins, cache.to_str());
        // Unknown to the first stage: only the install half's check applies.
        let script = fs.script_with(&|_| None);
        let mut stdin = format!(
            "{}\nraw {} {} {sha} {interp}\n",
            fs.install_script(),
            binary.len(),
            binary.len()
        )
        .into_bytes();
        stdin.extend_from_slice(binary);
        let (status, out) = run(shell, &script, &root, &stdin);
        let left = entries(&cache);
        std::fs::remove_dir_all(&root).unwrap();
        (status, out, left)
    }

    #[test]
    fn the_install_half_checks_the_interpreter_before_writing() {
        for shell in shells() {
            let (status, out, left) = cold(
                &shell,
                "install",
                b"#!/bin/sh\nexit 0\n",
                "/nonexistent/ld.so",
            );
            assert_eq!(status, 1, "{shell:?}: {out}");
            assert!(out.contains(&format!("{FAIL}:{NONCE}:{DYNAMIC} ")), "{out}");
            assert!(!out.contains(EXEC), "{out}");
            assert_eq!(left, Vec::<String>::new(), "{shell:?}: nothing written");
        }
    }

    /// A new binary that does not start is removed and its words reported.
    #[test]
    fn a_binary_that_does_not_start_is_not_cached() {
        for shell in shells() {
            let broken = b"#!/bin/sh\necho \"cannot start: $MITOGEN_CHILD\" >&2\nexit 3\n";
            let (status, out, left) = cold(&shell, "probe", broken, "");
            assert_eq!(status, 1, "{shell:?}: {out}");
            assert!(out.contains(&format!("{FAIL}:{NONCE}:{PROBE} ")), "{out}");
            assert!(out.contains("cannot start: probe"), "{out}");
            assert_eq!(left, Vec::<String>::new(), "{shell:?}: nothing cached");
            // One that starts (exits 0 on the probe) is installed and exec'd.
            let good = b"#!/bin/sh\n[ \"$MITOGEN_CHILD\" = probe ] && exit 0\necho up\n";
            let (status, out, left) = cold(&shell, "good", good, "/bin/sh");
            assert_eq!(status, 0, "{shell:?}: {out}");
            assert!(out.ends_with(&format!("{EXEC}:{NONCE}\nup\n")), "{out}");
            assert_eq!(left.len(), 1, "{shell:?}: {left:?}");
        }
    }
}
