//! mitogen-bench: side-by-side benchmarks of mitogen-rs against Python
//! Mitogen 0.3.54, with raw baselines of the machine measured in the same run.
//!
//! Usually started by `bench/run.sh`, which prepares the Python venv. See
//! docs/performance.md for the method and the definitions.
//!
//! ```text
//! mitogen-bench [--quick|--full] [--rounds N] [--only a,b,...]
//!               [--python PATH] [--out PATH] [--no-python] [--no-ours] [--no-raw]
//!               [--build NAME=PATH ...]
//! ```
//!
//! `--build NAME=PATH` runs another build of this runner (PATH) for the
//! rows in [`workloads::BUILD_ROWS`], in every round right after ours; the
//! table shows them as `<row>@NAME`. `bench/run.sh` passes a dynamically
//! linked glibc build and a musl + mimalloc build.
//!
//! Hidden subcommands (the runner re-executes itself):
//! `__ours [--quick|--full] [--only a,b] [--no-isolate] [--ssh JSON]`,
//! `__raw-echo`, `__raw-sink BYTES`, `__ssh-count DIR PROGRAM ARGS...`.
//!
//! The ssh workloads and baselines need the machine fixture
//! (`scripts/fixture/setup.sh`, root): the runner then starts one sshd for
//! the whole run (`ssh::Fixture`) and passes its coordinates to both peers as
//! `--ssh JSON`; without it those rows stay null.

mod docker;
mod ours;
mod raw;
mod remote_fns;
mod setns;
mod ssh;
mod stats;
mod workloads;

/// With the `mimalloc` feature, mimalloc replaces the platform allocator
/// (musl's is slow: docs/design.md, "Portable binaries").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use stats::median_opt;
use workloads::{Better, Profile, Raw, Workload, BUILD_ROWS, FULL_ONLY_NOTE, SSH_NOTE, WORKLOADS};

const BENCH_DIR: &str = env!("CARGO_MANIFEST_DIR");

const USAGE: &str = "\
usage: mitogen-bench [--quick|--full] [--rounds N] [--only a,b,...]
                     [--python PATH] [--out PATH]
                     [--no-python] [--no-ours] [--no-raw]
                     [--build NAME=PATH ...]

  --quick        small iteration counts, scale_500 skipped (default)
  --full         larger iteration counts, scale_500 included
  --rounds N     rounds; the median over rounds is reported
                 (default 3 quick, 5 full)
  --only a,b     only these workloads
  --python PATH  interpreter with mitogen==0.3.54 (default bench/.venv/bin/python)
  --out PATH     JSON results (default bench/results/latest.json for a
                 complete run, bench/results/partial.json with --only
                 or --no-*, so latest.json always holds a complete run)
  --no-python / --no-ours / --no-raw   skip a peer
  --build NAME=PATH  also run the build-comparison rows with this other
                 build of the runner, shown as <row>@NAME (bench/run.sh
                 passes the dynamic and the musl + mimalloc builds)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("__raw-echo") => raw::echo_main().map_err(|e| e.to_string()),
        Some("__raw-sink") => match args.get(1).and_then(|s| s.parse().ok()) {
            Some(total) => raw::sink_main(total).map_err(|e| e.to_string()),
            None => Err("__raw-sink BYTES".into()),
        },
        Some("__ours") => ours_main(&args[1..]),
        Some("__ssh-count") => match ssh::count_main(&args[1..]) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(format!("__ssh-count: {e}")),
        },
        _ => from_private_copy(&args).and_then(|copy| {
            let r = run_main(&args);
            if let Some(dir) = copy {
                let _ = std::fs::remove_dir_all(dir);
            }
            r
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mitogen-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Set (to the copy's directory) in the runner once it runs from a private
/// copy of its executable.
const COPY_ENV: &str = "MITOGEN_BENCH_PRIVATE_COPY";
/// Set to the directory the runner was built into (`target/<triple>/release`), where
/// `quickstart_cold_bootstrap_bytes` finds `examples/quickstart`.
pub const BUILD_DIR_ENV: &str = "MITOGEN_BENCH_BUILD_DIR";

/// Re-executes the runner from a private copy of its executable, so that a
/// `cargo build` replacing the runner's executable during the run
/// (others work in the same tree) can't break the processes it starts from
/// its own executable (`__ours`, the library's children, the raw peers, the
/// `ssh-count` wrapper). Returns the copy's directory (to remove at the end)
/// once running from it; `None` if copying failed (then runs in place).
fn from_private_copy(args: &[String]) -> Result<Option<PathBuf>, String> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = std::env::var_os(COPY_ENV) {
        return Ok(Some(dir.into()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = ssh::fresh_dir("mitogen-bench-exe").map_err(|e| e.to_string())?;
    let copy = dir.join("mitogen-bench");
    let err = match std::fs::copy(&exe, &copy) {
        Ok(_) => {
            let mut cmd = Command::new(&copy);
            cmd.args(args).env(COPY_ENV, &dir);
            if let Some(build_dir) = exe.parent() {
                cmd.env(BUILD_DIR_ENV, build_dir);
            }
            cmd.exec()
        }
        Err(e) => e,
    };
    eprintln!("mitogen-bench: running in place, not from a copy: {err}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(None)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Python,
    Raw,
    Ours,
}

struct Opts {
    profile: Profile,
    rounds: usize,
    only: Option<Vec<String>>,
    python: PathBuf,
    out: PathBuf,
    peers: Vec<Peer>,
    /// Other builds of this runner: (name, executable).
    builds: Vec<(String, PathBuf)>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut profile = Profile::QUICK;
    let mut rounds = None;
    let mut only = None;
    let mut python = Path::new(BENCH_DIR).join(".venv/bin/python");
    let mut out: Option<PathBuf> = None;
    let mut peers = vec![Peer::Python, Peer::Raw, Peer::Ours];
    let mut builds = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => profile = Profile::QUICK,
            "--full" => profile = Profile::FULL,
            "--rounds" => {
                let v = value("--rounds")?;
                rounds = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("--rounds: bad value {v:?}"))?,
                );
            }
            "--only" => only = Some(split_list(&value("--only")?)),
            "--python" => python = value("--python")?.into(),
            "--out" => out = Some(value("--out")?.into()),
            "--no-python" => peers.retain(|&p| p != Peer::Python),
            "--no-ours" => peers.retain(|&p| p != Peer::Ours),
            "--no-raw" => peers.retain(|&p| p != Peer::Raw),
            "--build" => {
                let v = value("--build")?;
                let (name, path) = v
                    .split_once('=')
                    .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                    .ok_or(format!("--build: expected NAME=PATH, got {v:?}"))?;
                builds.push((name.to_owned(), PathBuf::from(path)));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if let Some(only) = &only {
        for name in only {
            if !WORKLOADS.iter().any(|w| w.name == name) {
                return Err(format!("--only: unknown workload {name:?}"));
            }
        }
    }
    let rounds = rounds.unwrap_or(if profile.full { 5 } else { 3 });
    // latest.json always holds one complete run: partial runs go elsewhere.
    let complete = only.is_none() && peers.len() == 3;
    let out = out.unwrap_or_else(|| {
        Path::new(BENCH_DIR).join(if complete {
            "results/latest.json"
        } else {
            "results/partial.json"
        })
    });
    Ok(Opts {
        profile,
        rounds,
        only,
        python,
        out,
        peers,
        builds,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn selected<'a>(only: &'a Option<Vec<String>>) -> impl Iterator<Item = &'static Workload> + 'a {
    WORKLOADS.iter().filter(move |w| match only {
        Some(o) => o.iter().any(|n| n == w.name),
        None => true,
    })
}

type Values = HashMap<String, Option<f64>>;

/// Runs a peer process that prints one JSON object of results on stdout.
fn run_json_peer(label: &str, cmd: &mut Command) -> Values {
    let out = match cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("[{label}] cannot start {cmd:?}: {e}");
            return Values::new();
        }
    };
    if !out.status.success() {
        eprintln!("[{label}] {cmd:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let Some(line) = line else {
        eprintln!("[{label}] no JSON object on stdout");
        return Values::new();
    };
    match serde_json::from_str::<BTreeMap<String, Value>>(line) {
        Ok(map) => map
            .into_iter()
            .map(|(k, v)| (k, v.as_f64().filter(|x| x.is_finite())))
            .collect(),
        Err(e) => {
            eprintln!("[{label}] bad JSON ({e}): {line}");
            Values::new()
        }
    }
}

#[derive(Default)]
struct Samples {
    ours: Vec<Option<f64>>,
    mitogen: Vec<Option<f64>>,
}

fn run_main(args: &[String]) -> Result<(), String> {
    let o = parse_opts(args)?;
    let p = o.profile;
    let script = Path::new(BENCH_DIR).join("py/workloads.py");
    let only_arg = o.only.as_ref().map(|v| v.join(","));
    let wanted: Vec<&Workload> = selected(&o.only).collect();
    let compared = build_rows(&wanted, &o.builds);
    let wanted_raw: Vec<Raw> = Raw::ALL
        .into_iter()
        .filter(|r| {
            o.only.is_none()
                || wanted
                    .iter()
                    .any(|w| w.limit == Some(*r) || w.minus == Some(*r))
        })
        .collect();

    if o.peers.contains(&Peer::Python) && !o.python.exists() {
        return Err(format!(
            "{} not found: run bench/run.sh (it creates the venv), pass --python, or --no-python",
            o.python.display()
        ));
    }

    // One sshd for the whole run, if anything needs it and the machine can.
    let needs_ssh = wanted.iter().any(|w| w.ssh) || wanted_raw.iter().any(|r| r.needs_ssh());
    let fixture = if needs_ssh {
        match ssh::Fixture::start() {
            Ok(f) => {
                eprintln!(
                    "mitogen-bench: ssh target {}@{}:{} (throw-away sshd)",
                    f.target.user, f.target.host, f.target.port
                );
                Some(f)
            }
            Err(why) => {
                eprintln!("mitogen-bench: ssh rows stay null: {why}");
                None
            }
        }
    } else {
        None
    };
    let target = fixture.as_ref().map(|f| &f.target);
    let ssh_arg = target.map(ssh::Target::to_json);

    let mut samples: HashMap<&str, Samples> = HashMap::new();
    let mut raw_samples: HashMap<Raw, Vec<Option<f64>>> = HashMap::new();
    let started = Instant::now();
    eprintln!(
        "mitogen-bench: {} mode, {} round(s), peers {:?}",
        &p.mode_flag()[2..],
        o.rounds,
        o.peers
    );

    for round in 0..o.rounds {
        let mut order = o.peers.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        eprintln!("== round {}/{}: {:?}", round + 1, o.rounds, order);
        // This round's figures, kept until the round ends so that overhead
        // rows can subtract the raw baseline of the same round.
        let mut ours_vals = Values::new();
        let mut py_vals = Values::new();
        let mut raw_vals: HashMap<Raw, Option<f64>> = HashMap::new();
        for peer in order {
            let t0 = Instant::now();
            match peer {
                Peer::Python => {
                    let mut cmd = Command::new(&o.python);
                    cmd.arg(&script)
                        .arg(p.mode_flag())
                        .arg("--profile")
                        .arg(p.py_json());
                    if let Some(only) = &only_arg {
                        cmd.arg("--only").arg(only);
                    }
                    if let Some(t) = &ssh_arg {
                        cmd.arg("--ssh").arg(t);
                    }
                    py_vals = run_json_peer("py", &mut cmd);
                }
                Peer::Ours => {
                    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                    let mut cmd = Command::new(exe);
                    cmd.arg("__ours").arg(p.mode_flag());
                    if let Some(only) = &only_arg {
                        cmd.arg("--only").arg(only);
                    }
                    if let Some(t) = &ssh_arg {
                        cmd.arg("--ssh").arg(t);
                    }
                    ours_vals = run_json_peer("ours", &mut cmd);
                    for (build, exe) in &o.builds {
                        let rows: Vec<&str> = compared
                            .iter()
                            .filter(|c| &c.build == build)
                            .map(|c| c.base.name)
                            .collect();
                        let mut cmd = Command::new(exe);
                        cmd.args(["__ours", p.mode_flag(), "--only", &rows.join(",")]);
                        // Its own quick start, next to it (not ours, inherited).
                        if let Some(dir) = exe.parent() {
                            cmd.env(BUILD_DIR_ENV, dir);
                        }
                        if let Some(t) = &ssh_arg {
                            cmd.arg("--ssh").arg(t);
                        }
                        let vals = run_json_peer(&format!("ours@{build}"), &mut cmd);
                        for (k, v) in vals {
                            ours_vals.insert(format!("{k}@{build}"), v);
                        }
                    }
                }
                Peer::Raw => {
                    for &r in &wanted_raw {
                        let v = raw::measure(r, &p, target);
                        eprintln!("[raw] {:<28} {}", r.name(), fmt_opt(v));
                        raw_vals.insert(r, v);
                    }
                }
            }
            eprintln!("   {peer:?} took {:.1} s", t0.elapsed().as_secs_f64());
        }
        let ran = |peer| o.peers.contains(&peer);
        let all = wanted
            .iter()
            .map(|w| (*w, w.name))
            .chain(compared.iter().map(|c| (c.row, c.base.name)));
        for (w, python_name) in all {
            let figure = |vals: &Values, name: &str| {
                let v = vals.get(name).copied().flatten();
                match w.minus {
                    Some(r) => round_overhead(v, raw_vals.get(&r).copied().flatten()),
                    None => v,
                }
            };
            let s = samples.entry(w.name).or_default();
            if ran(Peer::Ours) {
                s.ours.push(figure(&ours_vals, w.name));
            }
            // A build-comparison row is compared with Python on its base row.
            if ran(Peer::Python) {
                s.mitogen.push(figure(&py_vals, python_name));
            }
        }
        for (r, v) in raw_vals {
            raw_samples.entry(r).or_default().push(v);
        }
    }

    let raw_med: HashMap<Raw, Option<f64>> = raw_samples
        .iter()
        .map(|(r, v)| (*r, median_opt(v)))
        .collect();
    let rows: Vec<Row> = wanted
        .iter()
        .copied()
        .chain(compared.iter().map(|c| c.row))
        .map(|w| {
            let s = samples.remove(w.name).unwrap_or_default();
            Row::new(
                w,
                &p,
                target.is_some(),
                median_opt(&s.ours),
                median_opt(&s.mitogen),
                |r| raw_med.get(&r).copied().flatten(),
            )
        })
        .collect();

    println!();
    println!(
        "mitogen-rs vs Python Mitogen 0.3.54 - {} mode, median of {} round(s), {:.0} s",
        &p.mode_flag()[2..],
        o.rounds,
        started.elapsed().as_secs_f64()
    );
    println!("ratio > 1: we are ahead; limit_ratio 1.0: at the raw limit, larger: further away");
    println!();
    print_table(&rows);
    if !wanted_raw.is_empty() {
        println!();
        println!("raw baselines (same run, median of rounds):");
        for r in &wanted_raw {
            println!(
                "  {:<22} {:>10} {}",
                r.name(),
                fmt_opt(raw_med.get(r).copied().flatten()),
                r.unit()
            );
        }
    }

    drop(fixture);
    let json = Value::Array(rows.iter().map(Row::to_json).collect());
    write_json(&o.out, &json)?;
    println!();
    println!("wrote {}", o.out.display());
    Ok(())
}

/// A row of the build comparison: `base` measured by another build.
struct Compared {
    build: String,
    base: &'static Workload,
    /// `base` renamed `<name>@<build>`, with a note naming the build.
    row: &'static Workload,
}

/// The build-comparison rows of this run: every wanted row of
/// [`workloads::BUILD_ROWS`] for every other build, in that order.
fn build_rows(wanted: &[&'static Workload], builds: &[(String, PathBuf)]) -> Vec<Compared> {
    let mut out = Vec::new();
    for (build, exe) in builds {
        for base in wanted.iter().filter(|w| BUILD_ROWS.contains(&w.name)) {
            // A handful per run: leaking them keeps Row's `&'static`.
            let name: &'static str = Box::leak(format!("{}@{build}", base.name).into_boxed_str());
            let note: &'static str =
                Box::leak(format!("other build: {}", exe.display()).into_boxed_str());
            let row = Box::leak(Box::new(Workload {
                name,
                note: Some(note),
                ..**base
            }));
            out.push(Compared {
                build: build.clone(),
                base,
                row,
            });
        }
    }
    out
}

struct Row {
    w: &'static Workload,
    ours: Option<f64>,
    mitogen: Option<f64>,
    ratio: Option<f64>,
    limit: Option<f64>,
    limit_ratio: Option<f64>,
    note: Option<&'static str>,
}

/// A peer's absolute figure minus the raw baseline of the same round.
fn round_overhead(v: Option<f64>, raw: Option<f64>) -> Option<f64> {
    Some(v? - raw?)
}

/// `a / b` when both are present and positive.
fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b).filter(|x| x.is_finite()),
        _ => None,
    }
}

impl Row {
    fn new(
        w: &'static Workload,
        p: &Profile,
        have_ssh: bool,
        ours: Option<f64>,
        mitogen: Option<f64>,
        raw: impl Fn(Raw) -> Option<f64>,
    ) -> Row {
        let limit = w.limit.and_then(raw);
        // Both ratios are "times better" / "times away", so > 1 reads the same
        // way whichever direction the unit goes.
        let (ratio, limit_ratio) = match w.better {
            Better::Lower => (div(mitogen, ours), div(ours, limit)),
            Better::Higher => (div(ours, mitogen), div(limit, ours)),
        };
        let note = if w.ssh && !have_ssh {
            Some(SSH_NOTE)
        } else if !p.runs(w.name) {
            Some(FULL_ONLY_NOTE)
        } else {
            w.note
        };
        Row {
            w,
            ours,
            mitogen,
            ratio,
            limit,
            limit_ratio,
            note,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.w.name,
            "unit": self.w.unit,
            "better": self.w.better.as_str(),
            "ours": self.ours,
            "mitogen": self.mitogen,
            "ratio": self.ratio,
            "limit": self.limit,
            "limit_ratio": self.limit_ratio,
            "note": self.note,
        })
    }

    fn cells(&self) -> [String; 8] {
        [
            self.w.name.to_owned(),
            fmt_opt(self.ours),
            fmt_opt(self.mitogen),
            self.w.unit.to_owned(),
            self.ratio.map_or("-".into(), |r| format!("{r:.2}")),
            if self.w.limit.is_some() {
                fmt_opt(self.limit)
            } else {
                "-".into()
            },
            self.limit_ratio.map_or("-".into(), |r| format!("{r:.2}")),
            self.note.unwrap_or("").to_owned(),
        ]
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), fmt_num)
}

fn print_table(rows: &[Row]) {
    const HEAD: [&str; 8] = [
        "workload",
        "ours",
        "mitogen",
        "unit",
        "ratio",
        "limit",
        "limit_ratio",
        "note",
    ];
    let cells: Vec<[String; 8]> = rows.iter().map(Row::cells).collect();
    let mut width = HEAD.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            width[i] = width[i].max(s.chars().count());
        }
    }
    let line = |c: &[&str; 8]| {
        let mut s = String::new();
        for (i, v) in c.iter().enumerate() {
            let pad = width[i] - v.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if matches!(i, 0 | 3 | 7) {
                s.push_str(v);
                if i != 7 {
                    s.push_str(&" ".repeat(pad));
                }
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(v);
            }
            if i != 7 {
                s.push_str("  ");
            }
        }
        println!("{}", s.trim_end());
    };
    line(&HEAD);
    let rule = width.map(|n| "-".repeat(n));
    line(&rule.each_ref().map(String::as_str));
    let mut in_scaling = false;
    let mut in_builds = false;
    for (row, c) in rows.iter().zip(&cells) {
        if !in_scaling && row.w.name.starts_with("scale_") {
            in_scaling = true;
            println!();
            println!("scaling: create N local contexts, then one call on each");
        }
        if !in_builds && row.w.name.contains('@') {
            in_builds = true;
            println!();
            println!("other builds of ours (the rows above are the default, static glibc)");
        }
        line(&c.each_ref().map(String::as_str));
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `__ours [--quick|--full] [--only a,b] [--no-isolate]`: our workloads in
/// this fresh process; the isolated ones each in a further fresh process.
/// Prints one JSON object, like `bench/py/workloads.py`.
fn ours_main(args: &[String]) -> Result<(), String> {
    let mut p = Profile::QUICK;
    let mut only = None;
    let mut isolate = true;
    let mut ssh_json = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => p = Profile::QUICK,
            "--full" => p = Profile::FULL,
            "--only" => only = Some(split_list(it.next().ok_or("--only needs a value")?)),
            "--no-isolate" => isolate = false,
            "--ssh" => ssh_json = Some(it.next().ok_or("--ssh needs a value")?.clone()),
            other => return Err(format!("__ours: unknown argument {other:?}")),
        }
    }
    let target = ssh_json
        .as_deref()
        .map(ssh::Target::from_json)
        .transpose()?;
    let mut out = serde_json::Map::new();
    for w in selected(&only) {
        let t0 = Instant::now();
        let v = if isolate && w.isolated {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut cmd = Command::new(exe);
            cmd.args(["__ours", p.mode_flag(), "--only", w.name, "--no-isolate"]);
            if let Some(j) = &ssh_json {
                cmd.arg("--ssh").arg(j);
            }
            run_json_peer("ours", &mut cmd)
                .get(w.name)
                .copied()
                .flatten()
        } else {
            std::panic::catch_unwind(|| ours::run(w.name, &p, target.as_ref())).unwrap_or_else(
                |_| {
                    eprintln!("[ours] {} panicked", w.name);
                    None
                },
            )
        };
        if v.is_some() {
            eprintln!(
                "[ours] {:<28} {}  ({:.1} s)",
                w.name,
                fmt_opt(v),
                t0.elapsed().as_secs_f64()
            );
        }
        out.insert(w.name.to_owned(), json!(v));
    }
    println!("{}", Value::Object(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, ours: Option<f64>, mitogen: Option<f64>, limit: f64) -> Row {
        let w = WORKLOADS.iter().find(|w| w.name == name).unwrap();
        Row::new(w, &Profile::QUICK, true, ours, mitogen, |_| Some(limit))
    }

    #[test]
    fn ratios_lower_is_better() {
        let r = row("call_roundtrip_us", Some(10.0), Some(100.0), 5.0);
        assert_eq!(r.ratio, Some(10.0));
        assert_eq!(r.limit, Some(5.0));
        assert_eq!(r.limit_ratio, Some(2.0));
    }

    #[test]
    fn ratios_higher_is_better() {
        let r = row("arg_64mib_mbps", Some(50.0), Some(10.0), 100.0);
        assert_eq!(r.ratio, Some(5.0));
        assert_eq!(r.limit_ratio, Some(2.0));
    }

    #[test]
    fn missing_values_give_null_ratios() {
        let r = row("call_roundtrip_us", None, Some(100.0), 5.0);
        assert_eq!((r.ratio, r.limit_ratio), (None, None));
        let r = row("arg_64mib_mbps", Some(50.0), None, 100.0);
        assert_eq!((r.ratio, r.limit_ratio), (None, Some(2.0)));
        // No raw baseline applies: limit stays null whatever is measured.
        let r = row("pipelined_calls_per_s", Some(50.0), Some(10.0), 100.0);
        assert_eq!((r.limit, r.limit_ratio), (None, None));
        let j = r.to_json();
        assert!(j["limit"].is_null() && j["ratio"].as_f64() == Some(5.0));
    }

    #[test]
    fn scale_500_is_full_only() {
        assert!(!Profile::QUICK.runs("scale_500_create_call_ms"));
        assert!(Profile::QUICK.runs("scale_100_create_call_ms"));
        assert!(Profile::FULL.runs("scale_500_create_call_ms"));
        let r = row("scale_500_create_call_ms", None, None, 1.0);
        assert_eq!(r.note, Some(FULL_ONLY_NOTE));
    }

    #[test]
    fn ssh_rows_without_the_fixture_say_why() {
        let w = WORKLOADS
            .iter()
            .find(|w| w.name == "ssh_roundtrip_us")
            .unwrap();
        let r = Row::new(w, &Profile::QUICK, false, None, None, |_| None);
        assert_eq!(r.note, Some(SSH_NOTE));
        let r = Row::new(w, &Profile::QUICK, true, None, None, |_| None);
        assert_eq!(r.note, None);
    }

    #[test]
    fn overheads_subtract_the_same_rounds_raw() {
        assert_eq!(round_overhead(Some(60.0), Some(52.5)), Some(7.5));
        assert_eq!(round_overhead(Some(60.0), None), None);
        assert_eq!(round_overhead(None, Some(1.0)), None);
    }
}
