//! The workload table shared by the runner, our side and the report, and the
//! iteration profiles (which must match `PROFILES` in `bench/py/workloads.py`).

/// Which direction is good for a workload's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

/// A raw baseline measured by `raw.rs` in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Raw {
    /// One-byte ping-pong over a socketpair between two processes, µs per
    /// round trip.
    PingPongUs,
    /// Bulk throughput over a socketpair between two processes, MB/s.
    SocketpairMbps,
    /// `fork`+`exec`+`wait` of `/bin/true`, ms.
    SpawnTrueMs,
    /// `ssh <the libraries' options> mitogen-a@127.0.0.1 true` against the
    /// fixture's sshd, ms (median).
    SshTrueMs,
    /// One-byte round trips through one long-lived `ssh ... cat`, µs per
    /// round trip.
    SshEchoUs,
    /// `docker exec <container> true` on a running `mitogen-test/debian`
    /// container, ms (median).
    DockerExecTrueMs,
}

impl Raw {
    pub const ALL: [Raw; 6] = [
        Raw::PingPongUs,
        Raw::SocketpairMbps,
        Raw::SpawnTrueMs,
        Raw::SshTrueMs,
        Raw::SshEchoUs,
        Raw::DockerExecTrueMs,
    ];

    /// Needs the ssh fixture.
    pub fn needs_ssh(self) -> bool {
        matches!(self, Raw::SshTrueMs | Raw::SshEchoUs)
    }

    pub fn name(self) -> &'static str {
        match self {
            Raw::PingPongUs => "raw_pingpong_us",
            Raw::SocketpairMbps => "raw_socketpair_mbps",
            Raw::SpawnTrueMs => "raw_spawn_true_ms",
            Raw::SshTrueMs => "raw_ssh_true_ms",
            Raw::SshEchoUs => "raw_ssh_echo_roundtrip_us",
            Raw::DockerExecTrueMs => "raw_docker_exec_true_ms",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Raw::PingPongUs => "us",
            Raw::SocketpairMbps => "MB/s",
            Raw::SpawnTrueMs | Raw::SshTrueMs | Raw::DockerExecTrueMs => "ms",
            Raw::SshEchoUs => "us",
        }
    }
}

pub struct Workload {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// The raw baseline that bounds this workload, if any.
    pub limit: Option<Raw>,
    /// The peers report an absolute figure; the table shows it minus this
    /// raw baseline measured in the same round (an overhead).
    pub minus: Option<Raw>,
    /// Needs the ssh fixture (`scripts/fixture/setup.sh`, root).
    pub ssh: bool,
    /// Run in a fresh process of its own (memory figures).
    pub isolated: bool,
    /// Shown in the table and written to the JSON.
    pub note: Option<&'static str>,
}

const fn w(name: &'static str, unit: &'static str, better: Better) -> Workload {
    Workload {
        name,
        unit,
        better,
        limit: None,
        minus: None,
        ssh: false,
        isolated: false,
        note: None,
    }
}

const fn limit(mut wl: Workload, raw: Raw) -> Workload {
    wl.limit = Some(raw);
    wl
}

const fn isolated(mut wl: Workload) -> Workload {
    wl.isolated = true;
    wl
}

const fn minus(mut wl: Workload, raw: Raw) -> Workload {
    wl.minus = Some(raw);
    wl
}

const fn ssh(mut wl: Workload) -> Workload {
    wl.ssh = true;
    wl
}

const fn note(mut wl: Workload, note: &'static str) -> Workload {
    wl.note = Some(note);
    wl
}

/// A memory row (kB, lower is better) measured in a fresh process, with a note.
const fn memory(name: &'static str, text: &'static str) -> Workload {
    isolated(note(w(name, "kB", Lower), text))
}

/// The note of every ssh row when the fixture is missing.
pub const SSH_NOTE: &str = "needs scripts/fixture/setup.sh as root";
pub const FULL_ONLY_NOTE: &str = "--full only";
/// Python Mitogen has no cache on the target: its cold figure is its warm one.
const PY_NO_CACHE: &str = "Python: no cache, cold = warm";

use Better::{Higher, Lower};

/// The rows `bench/run.sh` also measures with other builds of the runner
/// (`--build`): the workspace builds static glibc by default, and these
/// show what that costs against a dynamic build and against musl +
/// mimalloc (docs/design.md, "Portable binaries"). `bench/run.sh` names
/// them too, to skip those builds when `--only` wants none: keep both in
/// step.
pub const BUILD_ROWS: &[&str] = &[
    "call_roundtrip_us",
    "pipelined_calls_per_s",
    "small_msgs_per_s",
    "arg_64mib_mbps",
    "result_64mib_mbps",
    "quickstart_cold_bootstrap_bytes",
];

/// Every workload, in table order.
pub const WORKLOADS: &[Workload] = &[
    limit(
        w("local_connect_first_call_ms", "ms", Lower),
        Raw::SpawnTrueMs,
    ),
    w("fork_connect_first_call_ms", "ms", Lower),
    limit(w("call_roundtrip_us", "us", Lower), Raw::PingPongUs),
    note(
        w("call_roundtrip_profiled_us", "us", Lower),
        "ours only: call_roundtrip_us with Router::enable_profiling; target <= 1.10x it",
    ),
    w("pipelined_calls_per_s", "calls/s", Higher),
    limit(w("arg_64mib_mbps", "MB/s", Higher), Raw::SocketpairMbps),
    limit(w("result_64mib_mbps", "MB/s", Higher), Raw::SocketpairMbps),
    w("small_msgs_per_s", "msgs/s", Higher),
    w("fanout_50_create_call_ms", "ms", Lower),
    w("chain_5_connect_ms", "ms", Lower),
    w("chain_5_roundtrip_us", "us", Lower),
    w("chain_10_roundtrip_us", "us", Lower),
    isolated(w("idle_child_rss_kb", "kB", Lower)),
    isolated(w("master_rss_50_children_kb", "kB", Lower)),
    ssh(minus(
        w("ssh_connect_overhead_warm_ms", "ms", Lower),
        Raw::SshTrueMs,
    )),
    ssh(note(
        minus(
            w("ssh_connect_overhead_cold_ms", "ms", Lower),
            Raw::SshTrueMs,
        ),
        PY_NO_CACHE,
    )),
    ssh(limit(w("ssh_roundtrip_us", "us", Lower), Raw::SshEchoUs)),
    ssh(w("ssh_bootstrap_bytes_warm", "bytes", Lower)),
    ssh(note(
        w("ssh_bootstrap_bytes_cold", "bytes", Lower),
        PY_NO_CACHE,
    )),
    ssh(note(
        w("quickstart_cold_bootstrap_bytes", "bytes", Lower),
        "ours only; bench cold bytes with quickstart's gzip swapped in",
    )),
    w("scale_10_create_call_ms", "ms", Lower),
    w("scale_100_create_call_ms", "ms", Lower),
    w("scale_500_create_call_ms", "ms", Lower),
    memory(
        "stream_1gib_slow_reader_peak_rss_kb",
        "master VmHWM: child streams 1 GiB, master reads 1 ms/msg for 1 s",
    ),
    memory(
        "stream_1gib_slow_reader_child_peak_rss_kb",
        "child VmHWM of that stream",
    ),
    memory(
        "tree_500_master_rss_kb",
        "ours only: 5 relays x 99 leaves via=",
    ),
    memory("tree_500_leaf_rss_kb", "ours only: one leaf of that tree"),
    note(
        limit(
            w("docker_connect_first_call_ms", "ms", Lower),
            Raw::DockerExecTrueMs,
        ),
        "each side on its own mitogen-test/debian container; Python runs its /usr/bin/python3",
    ),
    note(
        limit(
            w("setns_connect_first_call_ms", "ms", Lower),
            Raw::DockerExecTrueMs,
        ),
        "warm setns into a docker container (root, mitogen-test/debian)",
    ),
];

/// Iteration counts. The fields from `connect_n` to `ssh_connect_n` mirror
/// `PROFILES` in `bench/py/workloads.py` one-for-one (keep both in step; the
/// runner also passes them to the script with `--profile`, which wins).
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub full: bool,
    /// `local_connect_first_call_ms`: samples (fresh session each); median.
    pub connect_n: usize,
    /// Warm-up calls (or raw round trips) before any timed sequence.
    pub rt_warm: usize,
    /// `call_roundtrip_us`, `ssh_roundtrip_us`, `raw_ssh_echo_roundtrip_us`:
    /// timed sequential calls / round trips.
    pub rt_n: usize,
    /// `pipelined_calls_per_s`: total calls (100 in flight).
    pub pipe_n: usize,
    /// `arg_64mib_mbps` / `result_64mib_mbps`: transfers; median.
    pub bulk_n: usize,
    /// `small_msgs_per_s`: messages sent by the child.
    pub msgs_n: usize,
    /// `chain_5_connect_ms`: samples (fresh session each); median.
    pub chain_n: usize,
    /// `chain_{5,10}_roundtrip_us`: timed sequential calls.
    pub chain_rt_n: usize,
    /// Largest `scale_N_create_call_ms` run in this mode (500 takes ~1.5 min
    /// of Python Mitogen on its own, so quick mode stops at 100).
    pub scale_max: usize,
    /// `ssh_connect_overhead_{warm,cold}_ms`: samples (fresh session each);
    /// median. More than `connect_n`: the figure is a small difference of
    /// two ~0.25 s times.
    pub ssh_connect_n: usize,

    // Raw baselines (Rust only).
    pub ping_warm: usize,
    pub ping_n: usize,
    pub bulk_bytes: usize,
    pub bulk_reps: usize,
    pub spawn_n: usize,
    /// `raw_ssh_true_ms`: samples; median.
    pub ssh_true_n: usize,
}

impl Profile {
    pub const QUICK: Profile = Profile {
        full: false,
        connect_n: 5,
        rt_warm: 50,
        rt_n: 1000,
        pipe_n: 5000,
        bulk_n: 2,
        msgs_n: 20000,
        chain_n: 1,
        chain_rt_n: 300,
        scale_max: 100,
        ssh_connect_n: 10,
        ping_warm: 1000,
        ping_n: 10000,
        bulk_bytes: 256 << 20,
        bulk_reps: 5,
        spawn_n: 50,
        ssh_true_n: 20,
    };

    pub const FULL: Profile = Profile {
        full: true,
        connect_n: 15,
        rt_warm: 200,
        rt_n: 5000,
        pipe_n: 30000,
        bulk_n: 5,
        msgs_n: 100000,
        chain_n: 3,
        chain_rt_n: 2000,
        scale_max: 500,
        ssh_connect_n: 20,
        ping_warm: 2000,
        ping_n: 50000,
        bulk_bytes: 1 << 30,
        bulk_reps: 5,
        spawn_n: 200,
        ssh_true_n: 40,
    };

    pub fn mode_flag(&self) -> &'static str {
        if self.full {
            "--full"
        } else {
            "--quick"
        }
    }

    /// The fields shared with Python, as the JSON object the runner passes
    /// to `workloads.py --profile`, so both sides run the same counts.
    pub fn py_json(&self) -> String {
        serde_json::json!({
            "connect_n": self.connect_n,
            "rt_warm": self.rt_warm,
            "rt_n": self.rt_n,
            "pipe_n": self.pipe_n,
            "bulk_n": self.bulk_n,
            "msgs_n": self.msgs_n,
            "chain_n": self.chain_n,
            "chain_rt_n": self.chain_rt_n,
            "scale_max": self.scale_max,
            "ssh_connect_n": self.ssh_connect_n,
        })
        .to_string()
    }

    /// The N of a `scale_N_create_call_ms` workload, if it is one.
    pub fn scale_n(name: &str) -> Option<usize> {
        name.strip_prefix("scale_")?
            .strip_suffix("_create_call_ms")?
            .parse()
            .ok()
    }

    /// Whether this mode runs the workload at all.
    pub fn runs(&self, name: &str) -> bool {
        match Profile::scale_n(name) {
            Some(n) => n <= self.scale_max,
            None => true,
        }
    }
}
