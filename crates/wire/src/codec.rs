//! Body codec: serde values to compact bytes and back (postcard).

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A body could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} failed: {reason}")]
pub struct CodecError {
    what: &'static str,
    reason: String,
}

impl CodecError {
    /// An error for `what` ("decoding", "encoding") failing because of `reason`.
    pub fn new(what: &'static str, reason: impl Into<String>) -> CodecError {
        CodecError {
            what,
            reason: reason.into(),
        }
    }
}

/// Encode a value as a message body.
///
/// # Errors
/// Fails only for values serde cannot describe (e.g. a map with unknown length).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Encode a value, appending to `out` (lets callers reserve a header first).
///
/// # Errors
/// As [`encode`].
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    // Size first: one exact allocation instead of doubling (and copying and
    // faulting in) a large buffer several times.
    let size = postcard::serialize_with_flavor::<T, _, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .map_err(|e| CodecError {
        what: "encoding",
        reason: e.to_string(),
    })?;
    out.reserve(size);
    let taken = std::mem::take(out);
    match postcard::to_extend(value, taken) {
        Ok(v) => {
            *out = v;
            Ok(())
        }
        Err(e) => Err(CodecError {
            what: "encoding",
            reason: e.to_string(),
        }),
    }
}

/// Decode a message body. Trailing bytes are an error: a body holds exactly one value.
///
/// # Errors
/// The bytes do not describe a `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(CodecError {
            what: "decoding",
            reason: format!("{} trailing bytes after the value", rest.len()),
        }),
        Err(e) => Err(CodecError {
            what: "decoding",
            reason: e.to_string(),
        }),
    }
}

/// Decode one value from the front of `bytes`; return it and the rest
/// (for bodies made of a small prefix followed by raw bytes).
///
/// # Errors
/// The front of `bytes` does not describe a `T`.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    postcard::take_from_bytes(bytes).map_err(|e| CodecError {
        what: "decoding",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_rejected() {
        let mut b = encode(&7u32).unwrap();
        b.push(0);
        assert!(decode::<u32>(&b)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    #[test]
    fn encode_into_appends() {
        let mut out = vec![9u8];
        encode_into(&1u8, &mut out).unwrap();
        assert_eq!(out, vec![9, 1]);
    }
}
