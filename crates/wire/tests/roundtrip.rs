//! Property tests of the wire format: header round trip, deframing of
//! arbitrarily chunked streams, robustness against garbage, the size limit,
//! and the body codec.

use std::collections::BTreeMap;

use mitogen_wire::{
    decode, decode_prefix, encode, encode_into, Deframer, Frame, FrameError, Header, FLAG_DEAD,
    HEADER_LEN, MAGIC, VERSION,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const MAX_BODY: usize = 4096;

fn any_header() -> impl Strategy<Value = Header> {
    (
        prop_oneof![Just(0u8), Just(FLAG_DEAD)],
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(flags, dst_id, src_id, auth_id, handle, reply_to, length)| Header {
                flags,
                dst_id,
                src_id,
                auth_id,
                handle,
                reply_to,
                length,
            },
        )
}

/// A frame with a random header (flags 0 or DEAD) and a body of up to 4 KiB;
/// `length` is made to match the body.
fn any_frame() -> impl Strategy<Value = Frame> {
    (
        any_header(),
        proptest::collection::vec(any::<u8>(), 0..=MAX_BODY),
    )
        .prop_map(|(mut header, body)| {
            header.length = body.len() as u32;
            Frame { header, body }
        })
}

fn concat(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&f.header.to_bytes());
        out.extend_from_slice(&f.body);
    }
    out
}

/// How one chunk is handed to the deframer.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// `push(chunk)`.
    Push,
    /// `spare(chunk + extra)`, copy the chunk in, `commit` only the chunk,
    /// like a `read` that filled less than it was offered.
    Spare { extra: usize },
}

fn any_feed() -> impl Strategy<Value = Feed> {
    prop_oneof![
        Just(Feed::Push),
        (0usize..64).prop_map(|extra| Feed::Spare { extra }),
    ]
}

fn feed(d: &mut Deframer, chunk: &[u8], how: Feed) {
    match how {
        Feed::Push => d.push(chunk),
        Feed::Spare { extra } => {
            let spare = d.spare(chunk.len() + extra);
            assert!(
                spare.len() >= chunk.len() + extra,
                "spare smaller than asked"
            );
            let spare_len = spare.len();
            spare[..chunk.len()].copy_from_slice(chunk);
            d.commit(spare_len, chunk.len());
        }
    }
}

/// Feed `stream` cut at the given sizes (cycled; a 0 counts as 1), draining
/// frames after every chunk. Returns the frames, or the first error together
/// with the frames seen before it.
fn deframe(
    max_len: u32,
    stream: &[u8],
    sizes: &[usize],
    feeds: &[Feed],
) -> (Vec<Frame>, Option<FrameError>) {
    let mut d = Deframer::new(max_len);
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let n = sizes[i % sizes.len()].max(1).min(stream.len() - at);
        feed(&mut d, &stream[at..at + n], feeds[i % feeds.len()]);
        at += n;
        i += 1;
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    assert_eq!(
        d.next_frame(),
        Ok(None),
        "nothing left after the last frame"
    );
    assert_eq!(d.buffered(), 0, "the whole stream was consumed");
    (frames, None)
}

proptest! {
    #[test]
    fn header_round_trips(h in any_header()) {
        let bytes = h.to_bytes();
        prop_assert_eq!(bytes.len(), HEADER_LEN);
        prop_assert_eq!(&bytes[..2], &MAGIC.to_be_bytes()[..]);
        prop_assert_eq!(bytes[2], VERSION);
        prop_assert_eq!(Header::from_bytes(&bytes), Ok(h));
        prop_assert_eq!(h.is_dead(), h.flags == FLAG_DEAD);
    }

    #[test]
    fn header_bytes_round_trip_when_accepted(raw in any::<[u8; HEADER_LEN]>(), valid_prefix in any::<bool>()) {
        let mut raw = raw;
        if valid_prefix {
            raw[..2].copy_from_slice(&MAGIC.to_be_bytes());
            raw[2] = VERSION;
        }
        match Header::from_bytes(&raw) {
            Ok(h) => prop_assert_eq!(h.to_bytes(), raw),
            Err(FrameError::BadMagic(m)) => prop_assert_ne!(m, MAGIC),
            Err(FrameError::BadVersion(v)) => prop_assert_ne!(v, VERSION),
            Err(FrameError::BadFlags(f)) => prop_assert_ne!(f & !FLAG_DEAD, 0),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn chunked_frames_come_out_in_order(
        frames in proptest::collection::vec(any_frame(), 0..8),
        sizes in proptest::collection::vec(1usize..600, 1..16),
        feeds in proptest::collection::vec(any_feed(), 1..8),
    ) {
        let stream = concat(&frames);
        let (got, err) = deframe(MAX_BODY as u32, &stream, &sizes, &feeds);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn tiny_chunks(
        frames in proptest::collection::vec(any_frame(), 0..4),
        sizes in proptest::collection::vec(1usize..4, 1..8),
        feeds in proptest::collection::vec(any_feed(), 1..4),
    ) {
        let stream = concat(&frames);
        let (got, err) = deframe(MAX_BODY as u32, &stream, &sizes, &feeds);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn one_byte_chunks(
        frames in proptest::collection::vec(any_frame(), 0..3),
        feeds in proptest::collection::vec(any_feed(), 1..4),
    ) {
        let stream = concat(&frames);
        let (got, err) = deframe(MAX_BODY as u32, &stream, &[1], &feeds);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn whole_stream_in_one_go(frames in proptest::collection::vec(any_frame(), 0..8), spare in any::<bool>()) {
        let stream = concat(&frames);
        let how = if spare { Feed::Spare { extra: 0 } } else { Feed::Push };
        let (got, err) = deframe(MAX_BODY as u32, &stream, &[usize::MAX], &[how]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn garbage_never_panics_and_errors_stick(
        garbage in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        feeds in proptest::collection::vec(any_feed(), 1..4),
        max_len in 0u32..2048,
    ) {
        check_sticky(max_len, &garbage, &sizes, &feeds)?;
    }

    #[test]
    fn corrupted_streams_never_panic_and_errors_stick(
        frames in proptest::collection::vec(any_frame(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        sizes in proptest::collection::vec(1usize..300, 1..8),
        feeds in proptest::collection::vec(any_feed(), 1..4),
        max_len in 0u32..(2 * MAX_BODY as u32),
    ) {
        let mut stream = concat(&frames);
        for (at, b) in flips {
            let i = at.index(stream.len());
            stream[i] = b;
        }
        check_sticky(max_len, &stream, &sizes, &feeds)?;
    }

    #[test]
    fn oversize_fails_before_any_body(
        h in any_header(),
        max_len in 0u32..(u32::MAX - 1),
        split in 1usize..HEADER_LEN,
    ) {
        let length = max_len + 1 + (h.length % (u32::MAX - max_len));
        prop_assert!(length > max_len);
        let h = Header { length, ..h };
        let bytes = h.to_bytes();
        let mut d = Deframer::new(max_len);
        d.push(&bytes[..split]);
        prop_assert_eq!(d.next_frame(), Ok(None));
        d.push(&bytes[split..]);
        let want = FrameError::Oversize { length, max: max_len };
        prop_assert_eq!(d.next_frame(), Err(want.clone()));
        prop_assert_eq!(d.buffered(), HEADER_LEN, "no body byte was buffered");
        prop_assert_eq!(d.next_frame(), Err(want.clone()));
        d.push(&[0u8; 64]);
        prop_assert_eq!(d.next_frame(), Err(want));
    }
}

/// Feed `stream`; the deframer must not panic, every frame it yields must be
/// exactly the bytes it consumed, and once it errs it errs forever with the
/// same error, whatever is fed after.
fn check_sticky(
    max_len: u32,
    stream: &[u8],
    sizes: &[usize],
    feeds: &[Feed],
) -> Result<(), TestCaseError> {
    let mut d = Deframer::new(max_len);
    let mut failed: Option<FrameError> = None;
    let mut pushed = 0usize;
    let mut consumed = 0usize;
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let n = sizes[i % sizes.len()].max(1).min(stream.len() - at);
        feed(&mut d, &stream[at..at + n], feeds[i % feeds.len()]);
        at += n;
        pushed += n;
        i += 1;
        loop {
            match (d.next_frame(), &failed) {
                (Err(e), Some(prev)) => {
                    prop_assert_eq!(&e, prev);
                    break;
                }
                (Err(e), None) => {
                    failed = Some(e);
                    // Ask again straight away: still the same error.
                    continue;
                }
                (Ok(got), Some(prev)) => {
                    prop_assert!(false, "{got:?} after error {prev:?}");
                }
                (Ok(None), None) => break,
                (Ok(Some(f)), None) => {
                    prop_assert!(f.header.length <= max_len);
                    prop_assert_eq!(f.body.len(), f.header.length as usize);
                    let now = pushed - d.buffered();
                    let mut again = f.header.to_bytes().to_vec();
                    again.extend_from_slice(&f.body);
                    prop_assert_eq!(&again[..], &stream[consumed..now]);
                    consumed = now;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Newtype(u64),
    Tuple(i32, String),
    Struct { name: String, tags: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    id: u32,
    label: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outer {
    name: String,
    blob: Vec<u8>,
    signed: i64,
    flag: bool,
    inner: Vec<Inner>,
    map: BTreeMap<String, u16>,
    pair: (u8, char),
}

fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        any::<u64>().prop_map(Kind::Newtype),
        (any::<i32>(), ".{0,20}").prop_map(|(a, b)| Kind::Tuple(a, b)),
        (".{0,20}", proptest::collection::vec(".{0,8}", 0..4))
            .prop_map(|(name, tags)| Kind::Struct { name, tags }),
    ]
}

fn any_outer() -> impl Strategy<Value = Outer> {
    let inner = (any::<u32>(), proptest::option::of(".{0,16}"), any_kind())
        .prop_map(|(id, label, kind)| Inner { id, label, kind });
    (
        ".{0,40}",
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<i64>(),
        any::<bool>(),
        proptest::collection::vec(inner, 0..5),
        proptest::collection::btree_map(".{0,8}", any::<u16>(), 0..5),
        (any::<u8>(), any::<char>()),
    )
        .prop_map(|(name, blob, signed, flag, inner, map, pair)| Outer {
            name,
            blob,
            signed,
            flag,
            inner,
            map,
            pair,
        })
}

/// `value` round-trips; every strict prefix of its encoding and the encoding
/// with a byte appended both fail to decode (without panicking).
fn codec_props<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(value).expect("encodable");
    let back: T = decode(&bytes).expect("decodable");
    prop_assert_eq!(&back, value);

    let mut appended = vec![0xAAu8];
    encode_into(value, &mut appended).expect("encodable");
    prop_assert_eq!(&appended[1..], &bytes[..]);

    for cut in 0..bytes.len() {
        prop_assert!(
            decode::<T>(&bytes[..cut]).is_err(),
            "prefix of {} of {} bytes decoded",
            cut,
            bytes.len()
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    prop_assert!(decode::<T>(&trailing).is_err(), "trailing byte accepted");
    Ok(())
}

proptest! {
    #[test]
    fn codec_string(s in ".{0,200}") {
        codec_props(&s)?;
    }

    #[test]
    fn codec_bytes(v in proptest::collection::vec(any::<u8>(), 0..1000)) {
        codec_props(&v)?;
    }

    #[test]
    fn codec_tuple(t in (".{0,20}", any::<u32>(), any::<i64>(), any::<Option<u8>>())) {
        codec_props(&t)?;
    }

    #[test]
    fn codec_nested(o in any_outer()) {
        codec_props(&o)?;
    }

    #[test]
    fn codec_prefix_then_raw_tail(o in any_outer(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = encode(&o).unwrap();
        bytes.extend_from_slice(&tail);
        let (back, rest) = decode_prefix::<Outer>(&bytes).unwrap();
        prop_assert_eq!(back, o);
        prop_assert_eq!(rest, &tail[..]);
        let cut = bytes.len() - tail.len();
        for short in 0..cut {
            prop_assert!(decode_prefix::<Outer>(&bytes[..short]).is_err());
        }
    }

    #[test]
    fn codec_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Whatever decodes must re-encode to something that decodes equal.
        if let Ok(v) = decode::<Outer>(&bytes) {
            prop_assert_eq!(decode::<Outer>(&encode(&v).unwrap()).unwrap(), v);
        }
        if let Ok(v) = decode::<(String, u32)>(&bytes) {
            prop_assert_eq!(decode::<(String, u32)>(&encode(&v).unwrap()).unwrap(), v);
        }
        if let Ok(v) = decode::<Vec<Kind>>(&bytes) {
            prop_assert_eq!(decode::<Vec<Kind>>(&encode(&v).unwrap()).unwrap(), v);
        }
    }
}

#[test]
fn codec_examples() {
    let s = String::from("hello, wörld");
    assert_eq!(decode::<String>(&encode(&s).unwrap()).unwrap(), s);
    let v: Vec<u8> = (0..=255).collect();
    assert_eq!(decode::<Vec<u8>>(&encode(&v).unwrap()).unwrap(), v);
    let o = Outer {
        name: "n".into(),
        blob: vec![1, 2, 3],
        signed: -5,
        flag: true,
        inner: vec![Inner {
            id: 9,
            label: None,
            kind: Kind::Struct {
                name: "x".into(),
                tags: vec!["a".into(), "b".into()],
            },
        }],
        map: BTreeMap::from([("k".to_string(), 7)]),
        pair: (1, 'λ'),
    };
    let bytes = encode(&o).unwrap();
    assert_eq!(decode::<Outer>(&bytes).unwrap(), o);
    assert!(decode::<Outer>(&bytes[..bytes.len() - 1]).is_err());
    assert!(decode::<String>(&[]).is_err());
    // A length prefix promising more than there is.
    assert!(decode::<Vec<u8>>(&[0x05, 1, 2]).is_err());
    // Invalid UTF-8 in a string.
    assert!(decode::<String>(&[0x02, 0xff, 0xfe]).is_err());
}

/// Regression: `spare` used to zero-fill the whole rest of a pending body on
/// every call, so a large body read in small pieces cost O(body² / piece)
/// (a 128 MiB body in 64 KiB reads took seconds). Now the spare room is
/// reused. 32 MiB in 4 KiB reads was ~128 GiB of zero-filling before the
/// fix; the bound is loose enough for a slow debug build.
#[test]
fn large_body_in_small_reads_is_linear() {
    let len = 32u32 << 20;
    let header = Header {
        length: len,
        ..Header::default()
    };
    let mut d = Deframer::new(len);
    d.push(&header.to_bytes());
    assert_eq!(d.next_frame(), Ok(None));
    let started = std::time::Instant::now();
    let mut got = 0usize;
    let frame = loop {
        let spare = d.spare(4096);
        let spare_len = spare.len();
        let n = 4096.min(len as usize - got);
        spare[..n].fill(0xa5);
        d.commit(spare_len, n);
        got += n;
        if let Some(f) = d.next_frame().unwrap() {
            break f;
        }
        assert!(got < len as usize, "frame not returned when complete");
    };
    assert_eq!(frame.body.len(), len as usize);
    assert!(frame.body.iter().all(|&b| b == 0xa5));
    assert_eq!(d.buffered(), 0);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "32 MiB in 4 KiB reads took {took:?}"
    );
}
