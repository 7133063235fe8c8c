"""Python Mitogen side of the mitogen-rs side-by-side benchmarks.

Run with the interpreter of bench/.venv (which has mitogen==0.3.54):

    bench/.venv/bin/python bench/py/workloads.py [--quick|--full]
        [--profile JSON] [--only a,b,...] [--ssh JSON]

Prints exactly one JSON object on stdout: {"workload_name": value_or_null, ...}.
Diagnostics go to stderr. Every workload runs against a fresh Broker/Router,
and the memory workloads run in a fresh interpreter of their own so that
earlier workloads (64 MiB buffers, hundreds of children) do not inflate them.

Each workload here has a one-for-one twin in bench/src/ours.rs; keep their
definitions in step (see docs/performance.md).

The functions the children run live in benchfuncs.py (next to this file),
which the children fetch from the master on first use.

The ssh workloads need --ssh JSON (host, port, user, key, known_hosts,
wrapper, count_dir), which the Rust runner passes when it has started its
throw-away sshd (see bench/src/ssh.rs); without it they report null.
"""

import gc
import json
import os
import subprocess
import sys
import time

import mitogen.core
import mitogen.master
import mitogen.select

from benchfuncs import (length, make_bytes, noop, peak_rss_kb, send_many,
                        stream_chunks)

MIB = 1024 * 1024
MB = 1e6


# --- Helpers ----------------------------------------------------------------


def vmrss_kb(pid, field='VmRSS:'):
    with open('/proc/%d/status' % (pid,)) as fp:
        for line in fp:
            if line.startswith(field):
                return float(line.split()[1])
    return None


def log(fmt, *args):
    sys.stderr.write('[py] ' + (fmt % args) + '\n')
    sys.stderr.flush()


def raise_nofile():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except Exception:
        pass


class Session(object):
    """A fresh Broker and Router, shut down (children and all) on exit."""

    def __enter__(self):
        self.broker = mitogen.master.Broker()
        self.router = mitogen.master.Router(self.broker)
        return self.router

    def __exit__(self, *exc):
        self.broker.shutdown()
        self.broker.join()
        gc.collect()
        return False


# --- Workloads --------------------------------------------------------------
#
# Each takes the iteration profile `p` (dict) and returns a float.


def w_local_connect_first_call_ms(p):
    """router.local() then one call of noop(); wall time, ms; median of n."""
    samples = []
    for _ in range(p['connect_n']):
        with Session() as router:
            t0 = time.perf_counter()
            ctx = router.local()
            ctx.call(noop)
            samples.append((time.perf_counter() - t0) * 1e3)
    return median(samples)


def w_fork_connect_first_call_ms(p):
    """router.fork() then one call of noop(); wall time, ms; median of n,
    all in one session after one untimed fork (ours starts its zygote then);
    each child is shut down, untimed, before the next."""
    samples = []
    with Session() as router:
        router.fork().call(noop)
        for _ in range(p['connect_n']):
            t0 = time.perf_counter()
            ctx = router.fork()
            ctx.call(noop)
            samples.append((time.perf_counter() - t0) * 1e3)
            ctx.shutdown(wait=True)
    return median(samples)


def w_call_roundtrip_us(p):
    """Sequential ctx.call(noop) on a warm local child; µs per call."""
    with Session() as router:
        ctx = router.local()
        for _ in range(p['rt_warm']):
            ctx.call(noop)
        n = p['rt_n']
        t0 = time.perf_counter()
        for _ in range(n):
            ctx.call(noop)
        return (time.perf_counter() - t0) * 1e6 / n


def w_pipelined_calls_per_s(p):
    """n noop calls with 100 in flight (call_async + Select); calls/s."""
    inflight = 100
    with Session() as router:
        ctx = router.local()
        for _ in range(p['rt_warm']):
            ctx.call(noop)
        n = p['pipe_n']
        sel = mitogen.select.Select(oneshot=True)
        t0 = time.perf_counter()
        issued = 0
        while issued < min(inflight, n):
            sel.add(ctx.call_async(noop))
            issued += 1
        done = 0
        while done < n:
            sel.get()  # unpickles the result; raises on a remote error
            done += 1
            if issued < n:
                sel.add(ctx.call_async(noop))
                issued += 1
        return n / (time.perf_counter() - t0)


def w_arg_64mib_mbps(p):
    """ctx.call(length, <64 MiB bytes>); MB/s (1e6 bytes), median of n."""
    size = 64 * MIB
    data = b'x' * size
    samples = []
    with Session() as router:
        ctx = router.local()
        ctx.call(noop)
        for _ in range(p['bulk_n']):
            t0 = time.perf_counter()
            got = ctx.call(length, data)
            dt = time.perf_counter() - t0
            assert got == size, got
            samples.append(size / MB / dt)
    return median(samples)


def w_result_64mib_mbps(p):
    """ctx.call(make_bytes, 64 MiB) returning 64 MiB bytes; MB/s, median of n."""
    size = 64 * MIB
    samples = []
    with Session() as router:
        ctx = router.local()
        ctx.call(noop)
        for _ in range(p['bulk_n']):
            t0 = time.perf_counter()
            got = ctx.call(make_bytes, size)
            dt = time.perf_counter() - t0
            assert len(got) == size, len(got)
            del got
            samples.append(size / MB / dt)
    return median(samples)


def w_small_msgs_per_s(p):
    """Child sends n small messages through a Sender; master drains a
    Receiver; messages/s from the call being issued to the last one received."""
    n = p['msgs_n']
    with Session() as router:
        ctx = router.local()
        ctx.call(noop)
        recv = mitogen.core.Receiver(router)
        sender = recv.to_sender()
        t0 = time.perf_counter()
        call = ctx.call_async(send_many, sender, n)
        got = 0
        for msg in recv:  # stops at the dead message sender.close() sends
            got += 1
        dt = time.perf_counter() - t0
        call.get()
        assert got == n, (got, n)
        return n / dt


def create_and_call(router, n):
    """Create n local contexts one after the other, then call noop() once on
    each, one after the other. Returns (elapsed ms, contexts)."""
    t0 = time.perf_counter()
    ctxs = [router.local() for _ in range(n)]
    for ctx in ctxs:
        ctx.call(noop)
    return (time.perf_counter() - t0) * 1e3, ctxs


def w_fanout_50_create_call_ms(p):
    with Session() as router:
        return create_and_call(router, 50)[0]


def w_scale(n):
    def w(p):
        if n > p['scale_max']:
            return None  # --full only
        with Session() as router:
            return create_and_call(router, n)[0]
    return w


def chain(router, depth):
    ctx = None
    for _ in range(depth):
        ctx = router.local(via=ctx) if ctx is not None else router.local()
    return ctx


def w_chain_5_connect_ms(p):
    """Create a chain of 5 local contexts, each via= the previous one, then
    one noop() call on the deepest; ms."""
    samples = []
    for _ in range(p['chain_n']):
        with Session() as router:
            t0 = time.perf_counter()
            deepest = chain(router, 5)
            deepest.call(noop)
            samples.append((time.perf_counter() - t0) * 1e3)
    return median(samples)


def chain_roundtrip(p, depth):
    """Sequential noop() calls on the deepest of a chain; µs per call."""
    with Session() as router:
        deepest = chain(router, depth)
        for _ in range(p['rt_warm']):
            deepest.call(noop)
        n = p['chain_rt_n']
        t0 = time.perf_counter()
        for _ in range(n):
            deepest.call(noop)
        return (time.perf_counter() - t0) * 1e6 / n


def w_chain_5_roundtrip_us(p):
    return chain_roundtrip(p, 5)


def w_chain_10_roundtrip_us(p):
    return chain_roundtrip(p, 10)


def w_idle_child_rss_kb(p):
    """VmRSS (kB) of one local child after its first calls (os.getpid, then
    noop), settled for 0.2 s."""
    with Session() as router:
        ctx = router.local()
        pid = ctx.call(os.getpid)
        ctx.call(noop)
        time.sleep(0.2)
        return vmrss_kb(pid)


def w_master_rss_50_children_kb(p):
    """VmRSS (kB) of the master process (a fresh interpreter) once 50 local
    children have been created and called once each."""
    with Session() as router:
        create_and_call(router, 50)
        gc.collect()
        time.sleep(0.2)
        return vmrss_kb(os.getpid())


STREAM_MSGS = 16384
STREAM_CHUNK = 64 * 1024


def stream_1gib_slow_reader(child):
    """A child streams 1 GiB (16384 x 64 KiB, each numbered) through a
    Sender; the master's Receiver sleeps 1 ms per message during the first
    second, checks every message, then asks the child for its VmHWM.
    Returns the master's VmHWM (kB), or the child's when `child`."""
    def w(p):
        with Session() as router:
            ctx = router.local()
            ctx.call(noop)
            recv = mitogen.core.Receiver(router)
            t0 = time.perf_counter()
            call = ctx.call_async(stream_chunks, recv.to_sender(),
                                  STREAM_MSGS, STREAM_CHUNK)
            seq = 0
            for msg in recv:  # stops at the dead message close() sends
                data = msg.unpickle()
                fill = bytes((seq & 255,))
                ok = (len(data) == STREAM_CHUNK and
                      data[:8] == seq.to_bytes(8, 'little') and
                      data.count(fill, 8) == STREAM_CHUNK - 8)
                assert ok, 'stream message %d is not what was sent' % (seq,)
                seq += 1
                del data, msg
                if time.perf_counter() - t0 < 1.0:
                    time.sleep(0.001)
            secs = time.perf_counter() - t0
            assert call.get().unpickle() == STREAM_MSGS
            assert seq == STREAM_MSGS, (seq, STREAM_MSGS)
            child_kb = float(ctx.call(peak_rss_kb))
            master_kb = vmrss_kb(os.getpid(), 'VmHWM:')
            log('stream_1gib_slow_reader: %.2f s, peak RSS master %s kB, '
                'child %s kB', secs, master_kb, child_kb)
            return child_kb if child else master_kb
    return w


# --- ssh workloads -------------------------------------------------------------
#
# Each takes the profile and the ssh target (dict from --ssh). The options
# are those bench/src/ours.rs passes (ssh_options): the fixture's client key,
# host keys enforced against the fixture's known_hosts file, no ssh config,
# compression on (the default on both sides), batch mode. Python Mitogen runs
# the target's /usr/bin/python3 (the venv's interpreter is not readable by
# the target user).


def ssh_kwargs(t, **extra):
    kw = dict(
        hostname=t['host'],
        port=t['port'],
        username=t['user'],
        identity_file=t['key'],
        check_host_keys='enforce',
        ssh_args=[
            '-F', '/dev/null',
            '-o', 'UserKnownHostsFile=%s' % (t['known_hosts'],),
            '-o', 'GlobalKnownHostsFile=/dev/null',
        ],
        python_path='/usr/bin/python3',
        connect_timeout=30,
    )
    kw.update(extra)
    return kw


def ssh_connect_ms(p, t):
    """One untimed connect + noop, then ssh_connect_n samples in fresh sessions:
    router.ssh() then ctx.call(noop); median ms (absolute: the runner
    subtracts raw_ssh_true_ms of the same round). Python Mitogen keeps
    nothing on the target, so warm and cold are the same procedure."""
    with Session() as router:
        router.ssh(**ssh_kwargs(t)).call(noop)
    samples = []
    for _ in range(p['ssh_connect_n']):
        with Session() as router:
            t0 = time.perf_counter()
            ctx = router.ssh(**ssh_kwargs(t))
            ctx.call(noop)
            samples.append((time.perf_counter() - t0) * 1e3)
    return median(samples)


def w_ssh_connect_overhead_warm_ms(p, t):
    return ssh_connect_ms(p, t)


def w_ssh_connect_overhead_cold_ms(p, t):
    return ssh_connect_ms(p, t)  # no cache on the target: cold = warm


def w_ssh_roundtrip_us(p, t):
    """Sequential ctx.call(noop) on an ssh context; µs per call."""
    with Session() as router:
        ctx = router.ssh(**ssh_kwargs(t))
        for _ in range(p['rt_warm']):
            ctx.call(noop)
        n = p['rt_n']
        t0 = time.perf_counter()
        for _ in range(n):
            ctx.call(noop)
        return (time.perf_counter() - t0) * 1e6 / n


def read_counts(count_dir):
    """argv bytes + stdin bytes recorded by the ssh-count wrapper of the one
    session in count_dir (see bench/src/ssh.rs)."""
    names = os.listdir(count_dir)
    if len(names) != 1:
        raise Exception('expected one ssh-count record, found %r' % (names,))
    with open(os.path.join(count_dir, names[0])) as fp:
        argv_bytes, stdin_bytes = map(int, fp.read().split())
    return float(argv_bytes + stdin_bytes)


def ssh_bootstrap_bytes(p, t):
    """Connect through the ssh-count wrapper (ssh_path) and call noop once;
    bytes of ssh's arguments plus bytes written to ssh's stdin until the
    call returned."""
    for name in os.listdir(t['count_dir']):
        os.unlink(os.path.join(t['count_dir'], name))
    with Session() as router:
        ctx = router.ssh(**ssh_kwargs(t, ssh_path=t['wrapper']))
        ctx.call(noop)
        return read_counts(t['count_dir'])


def w_ssh_bootstrap_bytes_warm(p, t):
    return ssh_bootstrap_bytes(p, t)


def w_ssh_bootstrap_bytes_cold(p, t):
    return ssh_bootstrap_bytes(p, t)  # no cache on the target: cold = warm


# --- Container workloads -------------------------------------------------------
#
# Each on its own container of mitogen-test/debian (scripts/images/build.sh;
# it has /usr/bin/python3 for this), started and removed here like
# bench/src/docker.rs and bench/src/setns.rs do for ours. Without a reachable
# engine or the image (or, for setns, without root) they report null and
# say why on stderr.

DOCKER = 'docker'
TEST_IMAGE = 'mitogen-test/debian:latest'
# The interpreter inside the image. Python Mitogen's default would be this
# process's own (the venv's), which the container does not have.
CONTAINER_PYTHON = '/usr/bin/python3'
DOCKER_TIMEOUT = 60


def docker_cmd(*args):
    """Run docker with args, bounded; (status, stdout+stderr text)."""
    try:
        proc = subprocess.run((DOCKER,) + args, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              timeout=DOCKER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, '%s %s: %s' % (DOCKER, args[0], e)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace').strip()


class Container(object):
    """docker run -d of TEST_IMAGE sleeping, removed (docker rm -f) on exit.
    `why` holds the reason when there is none (name is None then)."""

    seq = 0

    def __enter__(self):
        self.name = None
        status, out = docker_cmd('info', '--format', '{{.ServerVersion}}')
        if status != 0:
            self.why = 'the Docker engine does not answer (docker info: %s)' % (
                out,)
            return self
        status, out = docker_cmd('image', 'inspect', TEST_IMAGE)
        if status != 0:
            self.why = ('image %s missing: run scripts/images/build.sh as '
                        'root' % (TEST_IMAGE,))
            return self
        Container.seq += 1
        name = 'mitogen-test-py-%d-%d-%d' % (os.getpid(), Container.seq,
                                            time.time_ns())
        status, out = docker_cmd('run', '-d', '--name', name, TEST_IMAGE,
                                 'sleep', '1000000')
        if status != 0:
            docker_cmd('rm', '-f', name)
            self.why = 'docker run %s: %s' % (TEST_IMAGE, out)
            return self
        self.name = name
        return self

    def __exit__(self, *exc):
        if self.name is not None:
            status, out = docker_cmd('rm', '-f', self.name)
            if status != 0:
                log('docker rm -f %s: %s', self.name, out)
        return False


def container_connect_ms(what, n, connect):
    """One untimed connect(router) + noop in a fresh session (Python
    Mitogen keeps nothing in the container, but the container's python3
    writes its standard library's bytecode cache then, as on a real
    system), then n samples, each in a fresh session: start the clock,
    connect(router), one noop call, stop the clock. Median ms."""
    with Container() as ctr:
        if ctr.name is None:
            log('%s: %s', what, ctr.why)
            return None
        with Session() as router:
            connect(router, ctr.name).call(noop)
        samples = []
        for _ in range(n):
            with Session() as router:
                t0 = time.perf_counter()
                connect(router, ctr.name).call(noop)
                samples.append((time.perf_counter() - t0) * 1e3)
        return median(samples)


def w_docker_connect_first_call_ms(p):
    """router.docker(container=...) (docker exec -i <ctr> python3) then one
    noop call; ssh_connect_n samples as bench/src/docker.rs."""
    return container_connect_ms(
        'docker_connect_first_call_ms', p['ssh_connect_n'],
        lambda router, name: router.docker(container=name,
                                           python_path=CONTAINER_PYTHON))


def w_setns_connect_first_call_ms(p):
    """router.setns(container=..., kind='docker') as root then one noop
    call; connect_n samples as bench/src/setns.rs."""
    if os.geteuid() != 0:
        log('setns_connect_first_call_ms: needs root')
        return None
    return container_connect_ms(
        'setns_connect_first_call_ms', p['connect_n'],
        lambda router, name: router.setns(container=name, kind='docker',
                                          python_path=CONTAINER_PYTHON))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    if n % 2:
        return xs[n // 2]
    return (xs[n // 2 - 1] + xs[n // 2]) / 2.0


# Need --ssh; called with (profile, target).
SSH_WORKLOADS = [
    'ssh_connect_overhead_warm_ms',
    'ssh_connect_overhead_cold_ms',
    'ssh_roundtrip_us',
    'ssh_bootstrap_bytes_warm',
    'ssh_bootstrap_bytes_cold',
]

# Memory workloads run in a fresh interpreter each.
ISOLATED = ['idle_child_rss_kb', 'master_rss_50_children_kb',
            'stream_1gib_slow_reader_peak_rss_kb',
            'stream_1gib_slow_reader_child_peak_rss_kb']

WORKLOADS = [
    ('local_connect_first_call_ms', w_local_connect_first_call_ms),
    ('fork_connect_first_call_ms', w_fork_connect_first_call_ms),
    ('call_roundtrip_us', w_call_roundtrip_us),
    ('pipelined_calls_per_s', w_pipelined_calls_per_s),
    ('arg_64mib_mbps', w_arg_64mib_mbps),
    ('result_64mib_mbps', w_result_64mib_mbps),
    ('small_msgs_per_s', w_small_msgs_per_s),
    ('fanout_50_create_call_ms', w_fanout_50_create_call_ms),
    ('chain_5_connect_ms', w_chain_5_connect_ms),
    ('chain_5_roundtrip_us', w_chain_5_roundtrip_us),
    ('chain_10_roundtrip_us', w_chain_10_roundtrip_us),
    ('idle_child_rss_kb', w_idle_child_rss_kb),
    ('master_rss_50_children_kb', w_master_rss_50_children_kb),
    ('stream_1gib_slow_reader_peak_rss_kb', stream_1gib_slow_reader(False)),
    ('stream_1gib_slow_reader_child_peak_rss_kb',
     stream_1gib_slow_reader(True)),
    ('ssh_connect_overhead_warm_ms', w_ssh_connect_overhead_warm_ms),
    ('ssh_connect_overhead_cold_ms', w_ssh_connect_overhead_cold_ms),
    ('ssh_roundtrip_us', w_ssh_roundtrip_us),
    ('ssh_bootstrap_bytes_warm', w_ssh_bootstrap_bytes_warm),
    ('ssh_bootstrap_bytes_cold', w_ssh_bootstrap_bytes_cold),
    ('scale_10_create_call_ms', w_scale(10)),
    ('scale_100_create_call_ms', w_scale(100)),
    ('scale_500_create_call_ms', w_scale(500)),
    ('docker_connect_first_call_ms', w_docker_connect_first_call_ms),
    ('setns_connect_first_call_ms', w_setns_connect_first_call_ms),
]

# Iteration counts; mirrored by `Profile` in bench/src/workloads.rs, whose
# values the runner passes with --profile (overriding these).
# scale_max: largest scale_N workload run (500 alone takes ~1.5 min here).
PROFILES = {
    'quick': dict(connect_n=5, rt_warm=50, rt_n=1000, pipe_n=5000, bulk_n=2,
                  msgs_n=20000, chain_n=1, chain_rt_n=300, scale_max=100,
                  ssh_connect_n=10),
    'full': dict(connect_n=15, rt_warm=200, rt_n=5000, pipe_n=30000, bulk_n=5,
                 msgs_n=100000, chain_n=3, chain_rt_n=2000, scale_max=500,
                 ssh_connect_n=20),
}


def run_isolated(name, mode, profile):
    cmd = [sys.executable, os.path.abspath(__file__), '--' + mode,
           '--profile', json.dumps(profile),
           '--only', name, '--no-isolate', '--quiet']
    out = subprocess.check_output(cmd)
    return json.loads(out.decode())[name]


def main(argv):
    mode = 'quick'
    only = None
    isolate = True
    quiet = False
    ssh = None
    override = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ('--quick', '--full'):
            mode = a[2:]
        elif a == '--only':
            i += 1
            only = set(argv[i].split(','))
        elif a == '--no-isolate':
            isolate = False
        elif a == '--profile':
            i += 1
            override = json.loads(argv[i])
        elif a == '--quiet':
            quiet = True
        elif a == '--ssh':
            i += 1
            ssh = json.loads(argv[i])
        else:
            sys.stderr.write('usage: workloads.py [--quick|--full] '
                             '[--profile JSON] [--only a,b] [--no-isolate] '
                             '[--quiet] [--ssh JSON]\n')
            return 2
        i += 1

    raise_nofile()
    profile = dict(PROFILES[mode], **override)
    results = {}
    for name, fn in WORKLOADS:
        if only is not None and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            if name in SSH_WORKLOADS:
                value = fn(profile, ssh) if ssh is not None else None
            elif isolate and name in ISOLATED:
                value = run_isolated(name, mode, profile)
            else:
                value = fn(profile)
        except Exception as e:
            log('%s failed: %r', name, e)
            value = None
        skipped = value is None and (name.startswith('scale_') or
                                     (name in SSH_WORKLOADS and ssh is None))
        if not quiet and not skipped:
            log('%-28s %s  (%.1f s)', name, value, time.perf_counter() - t0)
        results[name] = value
    sys.stdout.write(json.dumps(results) + '\n')
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
