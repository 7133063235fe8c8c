//! The bodies of the fuzz targets: the wire decoders of `mitogen-wire`
//! (`deframer`, `header`, `codec`, here) and the decoders inside `mitogen`
//! (`call_body` and `reply_body` in [`calls`], `marker` in [`marker`]).
//!
//! Each `fuzz_targets/*.rs` binary is a one-line wrapper over a function here,
//! so the same checks run under `cargo fuzz` (nightly, libFuzzer) and on
//! stable as the deterministic smoke test in `tests/smoke.rs`. Every function
//! panics when a property is violated and otherwise returns a small summary
//! that the smoke test uses to check its corpus reaches the interesting paths.

use std::collections::BTreeMap;

pub mod calls;
pub mod marker;

pub use calls::{call_body, reply_body};
pub use marker::marker;

use mitogen_wire::{
    decode, decode_prefix, encode, Deframer, FrameError, Header, FLAG_DEAD, HEADER_LEN, MAGIC,
    VERSION,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Bytes at the start of a `deframer` input that steer the run rather than
/// being fed: 2 bytes of maximum body length, 2 bytes of chunking seed.
pub const DEFRAMER_CONTROL_LEN: usize = 4;

/// What one `deframer` run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeframerRun {
    /// Frames returned.
    pub frames: usize,
    /// The error the stream ended in, if any.
    pub error: Option<FrameError>,
}

/// A tiny xorshift generator, for chunk sizes and in the smoke corpus.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// A generator from any seed (0 is remapped; xorshift must not start at 0).
    pub fn new(seed: u64) -> XorShift {
        XorShift((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Feed `data[4..]` to a [`Deframer`] in chunks chosen from `data[..4]`,
/// mixing `push` with `spare`/`commit`.
///
/// Checks: no panic; every frame is exactly the bytes it consumed
/// (`header.to_bytes() + body`), within the limit; once an error is reported
/// the same error is reported forever, whatever is fed after.
pub fn deframer(data: &[u8]) -> DeframerRun {
    let mut control = [0u8; DEFRAMER_CONTROL_LEN];
    let n = data.len().min(DEFRAMER_CONTROL_LEN);
    control[..n].copy_from_slice(&data[..n]);
    let stream = &data[n..];
    let max_len = u32::from(u16::from_be_bytes([control[0], control[1]]));
    let mut rng = XorShift::new(u64::from(u16::from_be_bytes([control[2], control[3]])));

    let mut d = Deframer::new(max_len);
    let mut run = DeframerRun::default();
    let mut pushed = 0usize;
    let mut consumed = 0usize;
    let mut at = 0usize;
    while at < stream.len() {
        let r = rng.next_u64();
        let size = match r % 4 {
            0 => 1,
            1 => 1 + (r >> 8) as usize % 8,
            2 => 1 + (r >> 8) as usize % 64,
            _ => 1 + (r >> 8) as usize % 1024,
        };
        let chunk = &stream[at..(at + size).min(stream.len())];
        if r & 0x10_0000 == 0 {
            d.push(chunk);
        } else {
            // A read into the spare tail that fills less than it was offered.
            let extra = (r >> 24) as usize % 32;
            let spare = d.spare(chunk.len() + extra);
            assert!(
                spare.len() >= chunk.len() + extra,
                "spare smaller than asked"
            );
            let spare_len = spare.len();
            spare[..chunk.len()].copy_from_slice(chunk);
            d.commit(spare_len, chunk.len());
        }
        at += chunk.len();
        pushed += chunk.len();
        assert!(
            d.buffered() <= pushed - consumed,
            "buffered more than was fed"
        );

        loop {
            match (d.next_frame(), &run.error) {
                (Err(e), Some(prev)) => {
                    assert_eq!(&e, prev, "error changed");
                    break;
                }
                (Err(e), None) => {
                    if let FrameError::Oversize { length, max } = e {
                        assert!(length > max && max == max_len);
                    }
                    run.error = Some(e);
                }
                (Ok(got), Some(prev)) => panic!("{got:?} after error {prev:?}"),
                (Ok(None), None) => break,
                (Ok(Some(f)), None) => {
                    assert!(f.header.length <= max_len, "frame over the limit");
                    assert_eq!(f.body.len(), f.header.length as usize);
                    let now = pushed - d.buffered();
                    let mut again = f.header.to_bytes().to_vec();
                    again.extend_from_slice(&f.body);
                    assert_eq!(
                        &again[..],
                        &stream[consumed..now],
                        "frame != bytes consumed"
                    );
                    consumed = now;
                    run.frames += 1;
                }
            }
        }
    }
    if run.error.is_none() {
        assert_eq!(d.buffered(), pushed - consumed);
    }
    run
}

/// `Header::from_bytes` of the first 28 bytes of `data` (a shorter input
/// overwrites the start of a valid default header).
///
/// Checks: when Ok, `to_bytes` gives back the same bytes and the fields are the
/// big-endian words; when Err, the error names what is really wrong.
pub fn header(data: &[u8]) -> Result<Header, FrameError> {
    let mut raw = Header::default().to_bytes();
    let n = data.len().min(HEADER_LEN);
    raw[..n].copy_from_slice(&data[..n]);
    let word = |i: usize| u32::from_be_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let magic = u16::from_be_bytes([raw[0], raw[1]]);
    let result = Header::from_bytes(&raw);
    match &result {
        Ok(h) => {
            assert_eq!(h.to_bytes(), raw, "header did not round-trip");
            assert_eq!((magic, raw[2]), (MAGIC, VERSION));
            assert_eq!(h.flags, raw[3]);
            assert_eq!(h.is_dead(), raw[3] & FLAG_DEAD != 0);
            assert_eq!(
                [h.dst_id, h.src_id, h.auth_id, h.handle, h.reply_to, h.length],
                [word(4), word(8), word(12), word(16), word(20), word(24)]
            );
        }
        Err(FrameError::BadMagic(m)) => assert!(*m == magic && magic != MAGIC),
        Err(FrameError::BadVersion(v)) => assert!(magic == MAGIC && *v == raw[2] && *v != VERSION),
        Err(FrameError::BadFlags(f)) => {
            assert!(magic == MAGIC && raw[2] == VERSION && *f == raw[3] && f & !FLAG_DEAD != 0)
        }
        Err(e) => panic!("from_bytes never checks length, got {e:?}"),
    }
    result
}

/// An enum with every serde variant shape.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    Unit,
    Newtype(u64),
    Tuple(i32, String),
    Struct { name: String, tags: Vec<String> },
}

/// A nested struct, shaped like a call request.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nested {
    pub id: u32,
    pub name: String,
    pub blob: Vec<u8>,
    pub signed: i64,
    pub flag: bool,
    pub label: Option<String>,
    pub kinds: Vec<Kind>,
    pub map: BTreeMap<String, u16>,
    pub pair: (u8, char),
}

/// Decode as `T`; when that works, the value must survive encode → decode,
/// and its encoding must be canonical (encoding it again gives the same bytes).
fn codec_one<T>(data: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = decode::<T>(data) else {
        return false;
    };
    let bytes = encode(&value).expect("a decoded value encodes");
    assert!(bytes.len() <= data.len(), "shortest form is never longer");
    let again: T = decode(&bytes).expect("an encoding decodes");
    assert_eq!(again, value, "value changed across encode/decode");
    assert_eq!(encode(&again).unwrap(), bytes, "encoding not canonical");
    true
}

/// The front of a call request: `(function name, chain id)`, then raw bytes.
pub type CallPrefix = (String, Option<u64>);

/// `decode_prefix` as a [`CallPrefix`]; when that works, the rest is a suffix
/// of `data`, and the value re-encoded in front of the same rest reads back
/// the same.
fn codec_prefix(data: &[u8]) -> bool {
    let Ok((value, rest)) = decode_prefix::<CallPrefix>(data) else {
        return false;
    };
    assert!(data.ends_with(rest), "rest is not a suffix");
    let mut bytes = encode(&value).expect("a decoded value encodes");
    assert!(bytes.len() <= data.len() - rest.len());
    bytes.extend_from_slice(rest);
    let (again, again_rest) = decode_prefix::<CallPrefix>(&bytes).expect("decodes");
    assert_eq!((&again, again_rest), (&value, rest));
    true
}

/// Decode `data` as each of a few types (the last one with `decode_prefix`);
/// returns a bit set of the types (in the order listed here) that decoded.
pub fn codec(data: &[u8]) -> u32 {
    let results = [
        codec_one::<u32>(data),
        codec_one::<i64>(data),
        codec_one::<bool>(data),
        codec_one::<String>(data),
        codec_one::<Vec<u8>>(data),
        codec_one::<(String, u32)>(data),
        codec_one::<Option<Vec<String>>>(data),
        codec_one::<BTreeMap<String, Vec<u8>>>(data),
        codec_one::<Vec<Kind>>(data),
        codec_one::<Nested>(data),
        codec_prefix(data),
    ];
    results
        .iter()
        .enumerate()
        .fold(0, |acc, (i, ok)| acc | (u32::from(*ok) << i))
}

/// Number of types [`codec`] tries.
pub const CODEC_TYPES: u32 = 11;
