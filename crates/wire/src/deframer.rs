//! Turns a byte stream into frames.

use crate::header::{FrameError, Header, HEADER_LEN};

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
            failed: None,
        }
    }

    /// Change the largest body accepted from now on.
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// A writable tail of at least `min` bytes (more when a large body is
    /// expected), to read into directly; call [`Deframer::commit`] after.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
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
        let total = HEADER_LEN + header.length as usize;
        if self.buffered() < total {
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
}
