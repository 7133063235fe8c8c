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
