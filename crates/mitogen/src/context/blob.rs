//! [`Blob`]: bytes that are not copied when they arrive.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

thread_local! {
    /// The frame being decoded on this thread, if any: a `Blob` decoded
    /// from it becomes a view into it instead of a copy.
    static FRAME: RefCell<Option<Arc<Vec<u8>>>> = const { RefCell::new(None) };
}

/// Run `f` with `frame` as the frame whose bytes decoded `Blob`s may borrow.
pub(crate) fn with_frame<T>(frame: &Arc<Vec<u8>>, f: impl FnOnce(&[u8]) -> T) -> T {
    let previous = FRAME.with(|c| c.replace(Some(frame.clone())));
    let out = f(frame);
    FRAME.with(|c| *c.borrow_mut() = previous);
    out
}

/// A byte buffer for large arguments and results. On the receiving side a
/// `Blob` is a view into the message it arrived in, so a 64 MiB payload is
/// not copied (or faulted into fresh memory) a second time. Derefs to
/// `[u8]`; encodes like `serde_bytes`.
///
/// # Examples
/// ```
/// #[mitogen::remote]
/// fn checksum(data: mitogen::Blob) -> u64 {
///     data.iter().map(|b| *b as u64).sum()
/// }
///
/// # fn main() {
/// let blob = mitogen::Blob::from(vec![1u8, 2, 3]);
/// assert_eq!(&blob[..], &[1, 2, 3]);
/// assert_eq!(blob.into_vec(), vec![1, 2, 3]);
/// # }
/// ```
#[derive(Clone)]
pub struct Blob(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<u8>),
    View {
        frame: Arc<Vec<u8>>,
        start: usize,
        len: usize,
    },
}

impl Blob {
    /// The bytes as a vector: free for a blob built from one, a copy for a
    /// view into a received message.
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::View { frame, start, len } => frame[start..start + len].to_vec(),
        }
    }

    /// A view of `bytes` if they lie inside the frame being decoded.
    fn view_of(bytes: &[u8]) -> Option<Blob> {
        FRAME.with(|c| {
            let frame = c.borrow().clone()?;
            let base = frame.as_ptr() as usize;
            let at = bytes.as_ptr() as usize;
            (at >= base && at + bytes.len() <= base + frame.len()).then(|| {
                Blob(Repr::View {
                    frame,
                    start: at - base,
                    len: bytes.len(),
                })
            })
        })
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::View { frame, start, len } => &frame[*start..*start + *len],
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Blob {
        Blob(Repr::Owned(v))
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Blob {
        Blob(Repr::Owned(v.to_vec()))
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        **self == **other
    }
}

impl Eq for Blob {}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Blob, E> {
        Ok(Blob::view_of(v).unwrap_or_else(|| Blob::from(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
        Ok(Blob::from(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob::from(v))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        d.deserialize_bytes(BlobVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_inside_a_frame_is_a_view() {
        let frame = Arc::new(mitogen_wire::encode(&Blob::from(vec![9u8; 1000])).unwrap());
        let blob: Blob = with_frame(&frame, |bytes| mitogen_wire::decode(bytes).unwrap());
        assert!(matches!(blob.0, Repr::View { .. }), "no copy");
        assert_eq!(blob.len(), 1000);
        assert!(blob.iter().all(|b| *b == 9));
        // Outside a frame it is an ordinary copy.
        let copy: Blob = mitogen_wire::decode(&frame).unwrap();
        assert!(matches!(copy.0, Repr::Owned(_)));
        assert_eq!(copy, blob);
    }
}
