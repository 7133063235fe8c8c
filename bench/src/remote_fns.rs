//! The functions our workloads call in child contexts: the twins of
//! `bench/py/benchfuncs.py` (plus `pid`, Python's `os.getpid`).
//!
//! Registered with `#[mitogen::remote]`; the children are this same binary
//! re-executed by the library, which finds them by name.

use mitogen::Sender;

/// Python: `noop()`.
#[mitogen::remote]
pub fn noop() {}

/// Python: `os.getpid()`.
#[mitogen::remote]
pub fn pid() -> u32 {
    std::process::id()
}

/// Python: `length(data)`. `mitogen::Blob` rather than `Vec<u8>`: serde
/// encodes a `Vec<u8>` element by element through its sequence path, while
/// `Blob` goes through `serialize_bytes` (one length prefix and a memcpy)
/// and, on arrival, is a view into the received message (no copy).
/// The caller sends `&serde_bytes::Bytes` under the same name
/// ([`length_borrowed`]), which encodes identically and spares it a copy.
#[mitogen::remote]
pub fn length(data: mitogen::Blob) -> u64 {
    data.len() as u64
}

/// [`length()`] taking the buffer by reference on the caller's side (Python
/// passes its `bytes` object by reference too): the wire form of
/// `(&Bytes,)` is that of `(Blob,)`.
pub fn length_borrowed<'a>() -> mitogen::Remote<(&'a serde_bytes::Bytes,), u64> {
    mitogen::Remote::named(length::NAME)
}

/// Python: `make_bytes(n)`, `b'x' * n` built in the child; arrives as a
/// `Blob` viewing the reply message.
#[mitogen::remote]
pub fn make_bytes(n: u64) -> mitogen::Blob {
    mitogen::Blob::from(vec![b'x'; n as usize])
}

/// Python: `send_many(sender, n)`: `n` small messages (an integer each),
/// then close; returns `n`.
#[mitogen::remote]
pub fn send_many(to: Sender, n: u64) -> Result<u64, mitogen::Error> {
    for i in 0..n {
        to.send(&i)?;
    }
    to.close()?;
    Ok(n)
}

/// Python: `stream_chunks(sender, n, size)`: `n` messages of `size` bytes,
/// message `i` being `i` as 8 little-endian bytes then `size - 8` bytes of
/// `i % 256`; then close; returns `n`.
#[mitogen::remote]
pub fn stream_chunks(to: Sender, n: u64, size: u64) -> Result<u64, mitogen::Error> {
    let mut chunk = vec![0u8; size as usize];
    for i in 0..n {
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        chunk[8..].fill(i as u8);
        to.send(serde_bytes::Bytes::new(&chunk))?;
    }
    to.close()?;
    Ok(n)
}

/// Python: `peak_rss_kb()`: this process's `VmHWM` (kB), 0 if unreadable.
#[mitogen::remote]
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
            line.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}
