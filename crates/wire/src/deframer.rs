//! Turns a byte stream into frames.

use crate::header::{FrameError, Header, HEADER_LEN};

/// Bodies at least this long are read into a buffer of their own.
const LARGE_BODY: usize = 256 * 1024;

#[derive(Debug)]
struct LargeBody {
    /// `data[..received]` holds the body so far.
    data: Vec<u8>,
    received: usize,
    len: usize,
}

/// One decoded frame: header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The checked header.
    pub header: Header,
    /// Exactly `header.length` bytes.
    pub body: Vec<u8>,
}

/// Accumulates bytes and yields whole frames.
///
/// A declared length is checked against `max_len` as soon as the header is
/// complete, before any body byte is buffered, so a hostile length costs
/// nothing. After an error the deframer stays failed: the stream is corrupt.
///
/// # Example
/// ```
/// # use mitogen_wire::{Deframer, FrameError};
/// let mut d = Deframer::new(16);
/// d.push(b"garbage that is not a frame....");
/// assert!(matches!(d.next_frame(), Err(FrameError::BadMagic(_))));
/// ```
#[derive(Debug)]
pub struct Deframer {
    /// `buf[start..end]` is received data; `buf[end..]` is already
    /// initialised spare room, reused by [`Deframer::spare`] so a large body
    /// read in many small pieces is zero-filled once, not once per read.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_len: u32,
    pending: Option<Header>,
    /// A large body read straight into its own buffer (no copy at the end).
    large: Option<LargeBody>,
    /// The last `spare` was handed out of `large`.
    spare_in_large: bool,
    failed: Option<FrameError>,
}

impl Deframer {
    /// A deframer that rejects bodies longer than `max_len`.
    pub fn new(max_len: u32) -> Deframer {
        Deframer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_len,
            pending: None,
            large: None,
            spare_in_large: false,
            failed: None,
        }
    }

    /// Change the largest body accepted from now on.
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start + self.large.as_ref().map_or(0, |l| l.received)
    }

    /// Append received bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if let Some(l) = self.large.as_mut() {
            let n = (l.len - l.received).min(bytes.len());
            let end = l.received + n;
            if l.data.len() >= end {
                l.data[l.received..end].copy_from_slice(&bytes[..n]);
            } else {
                l.data.truncate(l.received);
                l.data.extend_from_slice(&bytes[..n]);
            }
            l.received = end;
            bytes = &bytes[n..];
            if bytes.is_empty() {
                return;
            }
        }
        self.compact();
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// A writable tail of at least `min` bytes (more when a large body is
    /// expected), to read into directly; call [`Deframer::commit`] after.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.large.as_ref().is_some_and(|l| l.received < l.len) {
            let l = self.large.as_mut().expect("checked above");
            // Filled once; later calls reuse the tail.
            if l.data.len() < l.len {
                l.data.resize(l.len, 0);
            }
            self.spare_in_large = true;
            return &mut l.data[l.received..];
        }
        self.spare_in_large = false;
        self.compact();
        let want = match self.pending {
            Some(h) => (h.length as usize + HEADER_LEN).saturating_sub(self.buffered()),
            None => 0,
        }
        .max(min);
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Keep `n` bytes of the tail handed out by [`Deframer::spare`]; drop the rest.
    pub fn commit(&mut self, spare_len: usize, n: usize) {
        if self.spare_in_large {
            if let Some(l) = self.large.as_mut() {
                l.received = (l.data.len() - spare_len + n).min(l.len);
            }
            self.spare_in_large = false;
            return;
        }
        self.end = (self.buf.len() - spare_len + n).min(self.buf.len());
    }

    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.start >= self.end / 2 {
            self.buf.truncate(self.end);
            self.buf.drain(..self.start);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A [`FrameError`] when the stream is corrupt; every later call returns it too.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                if self.buffered() < HEADER_LEN {
                    return Ok(None);
                }
                let raw: &[u8; HEADER_LEN] = self.buf[self.start..self.start + HEADER_LEN]
                    .try_into()
                    .expect("slice of HEADER_LEN");
                let h = match Header::from_bytes(raw) {
                    Ok(h) if h.length > self.max_len => Err(FrameError::Oversize {
                        length: h.length,
                        max: self.max_len,
                    }),
                    other => other,
                };
                match h {
                    Ok(h) => {
                        self.pending = Some(h);
                        h
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let len = header.length as usize;
        if let Some(l) = &self.large {
            if l.received < l.len {
                return Ok(None);
            }
            let mut body = self.large.take().expect("checked above").data;
            body.truncate(len);
            self.pending = None;
            return Ok(Some(Frame { header, body }));
        }
        let total = HEADER_LEN + len;
        if self.buffered() < total {
            if len >= LARGE_BODY {
                // Move what we have of the body into a buffer of its own and
                // read the rest straight into it.
                let body_start = self.start + HEADER_LEN;
                let mut data = Vec::with_capacity(len);
                data.extend_from_slice(&self.buf[body_start..self.end]);
                self.start = self.end;
                self.large = Some(LargeBody {
                    received: data.len(),
                    data,
                    len,
                });
            }
            return Ok(None);
        }
        let body_start = self.start + HEADER_LEN;
        let body = self.buf[body_start..self.start + total].to_vec();
        self.start += total;
        self.pending = None;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(Frame { header, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(handle: u32, body: &[u8]) -> Vec<u8> {
        let h = Header {
            handle,
            length: body.len() as u32,
            ..Header::default()
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn byte_at_a_time() {
        let mut bytes = frame(1, b"abc");
        bytes.extend(frame(2, b""));
        let mut d = Deframer::new(10);
        let mut got = Vec::new();
        for b in bytes {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push((f.header.handle, f.body));
            }
        }
        assert_eq!(got, vec![(1, b"abc".to_vec()), (2, vec![])]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversize_rejected_before_body() {
        let mut d = Deframer::new(2);
        d.push(&frame(1, b"abc")[..HEADER_LEN]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::Oversize { length: 3, max: 2 })
        );
        assert!(d.next_frame().is_err(), "stays failed");
    }

    #[test]
    fn spare_and_commit() {
        let bytes = frame(7, &[5u8; 100]);
        let mut d = Deframer::new(1000);
        d.push(&bytes[..HEADER_LEN]);
        assert!(d.next_frame().unwrap().is_none());
        let spare = d.spare(4);
        assert!(spare.len() >= 100, "sized for the pending body");
        let n = spare.len();
        spare[..100].copy_from_slice(&bytes[HEADER_LEN..]);
        d.commit(n, 100);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.body.len(), 100);
    }

    #[test]
    fn large_body_mixing_push_and_spare() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = frame(1, b"small");
        bytes.extend(frame(2, &big));
        bytes.extend(frame(3, b"after"));
        for chunk in [1usize, 7, 4096, 65_536, 1 << 20] {
            let mut d = Deframer::new(1 << 20);
            let mut got = Vec::new();
            let mut pos = 0;
            let mut use_spare = false;
            while pos < bytes.len() {
                let n = chunk.min(bytes.len() - pos);
                if use_spare {
                    let spare = d.spare(16);
                    let len = spare.len();
                    let k = n.min(len);
                    spare[..k].copy_from_slice(&bytes[pos..pos + k]);
                    d.commit(len, k);
                    pos += k;
                } else {
                    d.push(&bytes[pos..pos + n]);
                    pos += n;
                }
                use_spare = !use_spare;
                while let Some(f) = d.next_frame().unwrap() {
                    got.push((f.header.handle, f.body));
                }
            }
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(got[0], (1, b"small".to_vec()));
            assert_eq!(got[1].0, 2);
            assert!(got[1].1 == big, "large body intact with chunk {chunk}");
            assert_eq!(got[2], (3, b"after".to_vec()));
            assert_eq!(d.buffered(), 0);
        }
    }
}
