"""Functions the Python Mitogen benchmark calls in its child contexts.

Kept in their own tiny module (standard library only) so that a child's first
call fetches this small module from the master, not workloads.py and all of
mitogen.master with it, which would add ~200 ms to the first call and is not
what a user's first call costs.
"""


def noop():
    return None


def length(data):
    return len(data)


def make_bytes(n):
    return b'x' * n


def send_many(sender, n):
    """Send n small messages (an int each) to the master, then close."""
    send = sender.send
    for i in range(n):
        send(i)
    sender.close()
    return n


def stream_chunks(sender, n, size):
    """Send n messages of size bytes: message i is i as 8 little-endian
    bytes then size - 8 bytes of i % 256; then close; return n."""
    send = sender.send
    for i in range(n):
        send(i.to_bytes(8, 'little') + bytes((i & 255,)) * (size - 8))
    sender.close()
    return n


def peak_rss_kb():
    """VmHWM (kB) of this process, 0 if unreadable."""
    with open('/proc/self/status') as fp:
        for line in fp:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0
