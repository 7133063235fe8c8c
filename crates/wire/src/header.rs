//! The fixed frame header.

use thiserror::Error;

/// First two bytes of every frame: `"MG"`.
pub const MAGIC: u16 = 0x4d47;
/// Protocol version carried in byte 2. Bumped on any incompatible change.
pub const VERSION: u8 = 2;
/// Size of an encoded [`Header`] in bytes.
pub const HEADER_LEN: usize = 28;
/// Flag bit: the message is *dead*: its body is a UTF-8 reason, and the
/// receiver's waiters should fail with it (Mitogen's `Message.is_dead`).
pub const FLAG_DEAD: u8 = 0x01;
/// Flag bit: the message counts against the receiver's flow-control window:
/// once it is consumed, the receiving context returns its body length as
/// credit to the sender on [`FLOW_CONTROL`](crate::handle::FLOW_CONTROL).
pub const FLAG_FLOW: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_DEAD | FLAG_FLOW;

/// The 28-byte frame header. All integers are big-endian on the wire.
///
/// | offset | size | field      |
/// |--------|------|------------|
/// | 0      | 2    | magic `MG` |
/// | 2      | 1    | version    |
/// | 3      | 1    | flags      |
/// | 4      | 4    | dst_id     |
/// | 8      | 4    | src_id     |
/// | 12     | 4    | auth_id    |
/// | 16     | 4    | handle     |
/// | 20     | 4    | reply_to   |
/// | 24     | 4    | length     |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Flag bits, see [`FLAG_DEAD`] and [`FLAG_FLOW`].
    pub flags: u8,
    /// Context the message is for.
    pub dst_id: u32,
    /// Context the message claims to come from.
    pub src_id: u32,
    /// Context whose authority the message carries; stamped by the first hop.
    pub auth_id: u32,
    /// Handle on the destination that receives the message.
    pub handle: u32,
    /// Handle on the source where replies go; 0 for none.
    pub reply_to: u32,
    /// Body length in bytes.
    pub length: u32,
}

/// Why a frame could not be decoded. Each variant means the stream is
/// corrupt or hostile: the connection carrying it should be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first two bytes are not `MG`.
    #[error(
        "bad frame magic {0:#06x} (expected 0x4d47): the stream is corrupt or not speaking mitogen"
    )]
    BadMagic(u16),
    /// The version byte is not [`VERSION`].
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// Unknown flag bits are set.
    #[error("unknown frame flags {0:#04x}")]
    BadFlags(u8),
    /// The declared body length exceeds the receiver's limit.
    #[error("frame body of {length} bytes exceeds the maximum message size of {max} bytes")]
    Oversize {
        /// Declared length.
        length: u32,
        /// Receiver's limit.
        max: u32,
    },
}

impl Header {
    /// `true` when [`FLAG_DEAD`] is set.
    pub fn is_dead(&self) -> bool {
        self.flags & FLAG_DEAD != 0
    }

    /// `true` when [`FLAG_FLOW`] is set.
    pub fn is_flow(&self) -> bool {
        self.flags & FLAG_FLOW != 0
    }

    /// Encode into the 28 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        b[2] = VERSION;
        b[3] = self.flags;
        let fields = [
            self.dst_id,
            self.src_id,
            self.auth_id,
            self.handle,
            self.reply_to,
            self.length,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Decode 28 wire bytes, checking magic, version and flags (not length).
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let magic = u16::from_be_bytes([b[0], b[1]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[2] != VERSION {
            return Err(FrameError::BadVersion(b[2]));
        }
        if b[3] & !KNOWN_FLAGS != 0 {
            return Err(FrameError::BadFlags(b[3]));
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(Header {
            flags: b[3],
            dst_id: word(4),
            src_id: word(8),
            auth_id: word(12),
            handle: word(16),
            reply_to: word(20),
            length: word(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            flags: FLAG_DEAD,
            dst_id: 1,
            src_id: 2,
            auth_id: 3,
            handle: 4,
            reply_to: 5,
            length: 6,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()), Ok(h));
        assert!(h.is_dead());
    }

    #[test]
    fn rejects_garbage() {
        let mut b = Header::default().to_bytes();
        b[0] = b'x';
        assert!(matches!(
            Header::from_bytes(&b),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = Header::default().to_bytes();
        b[2] = 9;
        assert_eq!(Header::from_bytes(&b), Err(FrameError::BadVersion(9)));
        let mut b = Header::default().to_bytes();
        b[3] = 0x80;
        assert_eq!(Header::from_bytes(&b), Err(FrameError::BadFlags(0x80)));
    }
}
