//! The wire format of mitogen-rs, with no I/O.
//!
//! Every message travels as one *frame*: a fixed 28-byte [`Header`] followed by
//! `length` bytes of body. Bodies are encoded with [`encode`] and decoded with
//! [`decode`] (serde, compact binary). The [`Deframer`] turns a byte stream
//! into frames and never trusts a length it has not checked against its limit.
//! Well-known handles (`CALL_FUNCTION`, `ADD_ROUTE`, …) live in [`handle`].
//! `docs/protocol.md` describes the format byte by byte.
//!
//! # Example
//! ```
//! use mitogen_wire::{Deframer, Header, encode, decode, HEADER_LEN};
//!
//! let body = encode(&("hello", 42u32)).unwrap();
//! let header = Header { dst_id: 1, src_id: 0, auth_id: 0, handle: 1000,
//!                       reply_to: 0, flags: 0, length: body.len() as u32 };
//! let mut bytes = header.to_bytes().to_vec();
//! bytes.extend_from_slice(&body);
//!
//! let mut deframer = Deframer::new(1 << 20);
//! deframer.push(&bytes);
//! let frame = deframer.next_frame().unwrap().expect("one whole frame");
//! assert_eq!(frame.header.handle, 1000);
//! let (s, n): (String, u32) = decode(&frame.body).unwrap();
//! assert_eq!((s.as_str(), n), ("hello", 42));
//! assert_eq!(bytes.len(), HEADER_LEN + body.len());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod deframer;
pub mod handle;
mod header;

pub use codec::{decode, decode_prefix, encode, encode_into, CodecError};
pub use deframer::{Deframer, Frame};
pub use header::{FrameError, Header, FLAG_DEAD, FLAG_FLOW, HEADER_LEN, MAGIC, VERSION};

/// Default largest body accepted or sent: 128 MiB, as in Mitogen.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 128 * 1024 * 1024;
