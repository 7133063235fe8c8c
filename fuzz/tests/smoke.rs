//! Stable-Rust smoke run of the fuzz targets: each target function over a
//! fixed, deterministic pseudo-random corpus (xorshift, no dependency).
//! Inputs are mostly *structured* (valid frames, headers and encodings, then
//! mutated or cut) so the checks behind the first byte are reached without
//! coverage guidance; the summaries the targets return are used to assert that
//! the corpus really reached each path.

use std::collections::BTreeMap;

use mitogen_wire::{encode, FrameError, Header, FLAG_DEAD, HEADER_LEN};
use mitogen_wire_fuzz::{codec, deframer, header, Kind, Nested, XorShift, CODEC_TYPES};

const INPUTS: usize = 20_000;

/// A target run that returns how much it reached.
type Target = fn(&[u8]) -> usize;
/// A generator of one input.
type Generator = fn(&mut XorShift) -> Vec<u8>;

fn bytes(rng: &mut XorShift, max: usize) -> Vec<u8> {
    let n = rng.below(max + 1);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// Overwrite a few random bytes, cut the tail, or leave alone.
fn mutate(rng: &mut XorShift, mut v: Vec<u8>) -> Vec<u8> {
    match rng.below(4) {
        0 if !v.is_empty() => {
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
        }
        1 if !v.is_empty() => {
            let cut = rng.below(v.len());
            v.truncate(cut);
        }
        2 => v.extend(bytes(rng, 4)),
        _ => {}
    }
    v
}

fn random_header(rng: &mut XorShift, length: u32) -> Header {
    let field = |rng: &mut XorShift| match rng.below(3) {
        0 => 0,
        1 => rng.below(2000) as u32,
        _ => rng.next_u64() as u32,
    };
    Header {
        flags: if rng.below(4) == 0 { FLAG_DEAD } else { 0 },
        dst_id: field(rng),
        src_id: field(rng),
        auth_id: field(rng),
        handle: field(rng),
        reply_to: field(rng),
        length,
    }
}

fn deframer_input(rng: &mut XorShift) -> Vec<u8> {
    let max_len: u16 = match rng.below(8) {
        0 => rng.below(16) as u16,
        1 | 2 => u16::MAX,
        _ => 300 + rng.below(300) as u16,
    };
    let mut input = max_len.to_be_bytes().to_vec();
    input.extend((rng.next_u64() as u16).to_be_bytes());
    if rng.below(5) == 0 {
        input.extend(bytes(rng, 600));
        return input;
    }
    let mut stream = Vec::new();
    for _ in 0..rng.below(6) {
        let body = bytes(rng, 300);
        // Sometimes declare more than the limit, or lie about the length.
        let length = match rng.below(40) {
            0 => u32::from(max_len) + 1 + rng.below(1000) as u32,
            1 => rng.next_u64() as u32,
            _ => body.len() as u32,
        };
        let mut raw = random_header(rng, length).to_bytes();
        if rng.below(16) == 0 {
            // A bad version or unknown flag bits.
            raw[2 + rng.below(2)] = rng.next_u64() as u8 | 0x02;
        }
        stream.extend(raw);
        stream.extend(body);
    }
    input.extend(mutate(rng, stream));
    input
}

fn header_input(rng: &mut XorShift) -> Vec<u8> {
    match rng.below(4) {
        0 => bytes(rng, 40),
        _ => {
            let length = rng.next_u64() as u32;
            let mut raw = random_header(rng, length).to_bytes().to_vec();
            if rng.below(2) == 0 {
                // Damage the checked prefix: magic, version or flags.
                let i = rng.below(4);
                raw[i] = rng.next_u64() as u8;
            }
            mutate(rng, raw)
        }
    }
}

fn string(rng: &mut XorShift) -> String {
    const ALPHABET: &[&str] = &["a", "b", "z", "0", " ", "é", "λ", "日", "😀", "\0"];
    (0..rng.below(12))
        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
        .collect()
}

fn kind(rng: &mut XorShift) -> Kind {
    match rng.below(4) {
        0 => Kind::Unit,
        1 => Kind::Newtype(rng.next_u64() >> rng.below(64)),
        2 => Kind::Tuple(rng.next_u64() as i32 >> rng.below(32), string(rng)),
        _ => Kind::Struct {
            name: string(rng),
            tags: (0..rng.below(4)).map(|_| string(rng)).collect(),
        },
    }
}

fn codec_input(rng: &mut XorShift) -> Vec<u8> {
    let small = |rng: &mut XorShift| rng.next_u64() >> rng.below(64);
    let encoded = match rng.below(12) {
        11 => {
            let chain = (rng.below(2) == 0).then(|| small(rng));
            let mut v = encode(&(string(rng), chain)).unwrap();
            v.extend(bytes(rng, 16));
            v
        }
        0 => bytes(rng, 64),
        1 => encode(&(small(rng) as u32)).unwrap(),
        2 => encode(&(small(rng) as i64)).unwrap(),
        3 => encode(&(rng.below(2) == 1)).unwrap(),
        4 => encode(&string(rng)).unwrap(),
        5 => encode(&bytes(rng, 40)).unwrap(),
        6 => encode(&(string(rng), small(rng) as u32)).unwrap(),
        7 => {
            let v = (rng.below(2) == 1).then(|| (0..rng.below(4)).map(|_| string(rng)).collect());
            encode::<Option<Vec<String>>>(&v).unwrap()
        }
        8 => {
            let m: BTreeMap<String, Vec<u8>> = (0..rng.below(4))
                .map(|_| (string(rng), bytes(rng, 8)))
                .collect();
            encode(&m).unwrap()
        }
        9 => encode(&(0..rng.below(4)).map(|_| kind(rng)).collect::<Vec<_>>()).unwrap(),
        _ => {
            let n = Nested {
                id: small(rng) as u32,
                name: string(rng),
                blob: bytes(rng, 20),
                signed: small(rng) as i64 * if rng.below(2) == 0 { -1 } else { 1 },
                flag: rng.below(2) == 0,
                label: (rng.below(2) == 0).then(|| string(rng)),
                kinds: (0..rng.below(3)).map(|_| kind(rng)).collect(),
                map: (0..rng.below(3))
                    .map(|_| (string(rng), rng.below(70_000) as u16))
                    .collect(),
                pair: (
                    rng.next_u64() as u8,
                    char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x'),
                ),
            };
            encode(&n).unwrap()
        }
    };
    mutate(rng, encoded)
}

#[test]
fn deframer_smoke() {
    let mut rng = XorShift::new(1);
    let (mut frames, mut clean) = (0, 0);
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..INPUTS {
        let input = deframer_input(&mut rng);
        let run = deframer(&input);
        frames += run.frames;
        let name = match run.error {
            None => {
                clean += 1;
                "none"
            }
            Some(FrameError::BadMagic(_)) => "magic",
            Some(FrameError::BadVersion(_)) => "version",
            Some(FrameError::BadFlags(_)) => "flags",
            Some(FrameError::Oversize { .. }) => "oversize",
            Some(_) => "other",
        };
        *errors.entry(name).or_default() += 1;
    }
    // Short and empty inputs too.
    for n in 0..=HEADER_LEN + 8 {
        deframer(&vec![0x4d; n]);
    }
    println!("deframer: {frames} frames, {clean} clean streams, outcomes {errors:?}");
    assert!(frames > INPUTS, "corpus yields frames");
    for kind in ["none", "magic", "version", "flags", "oversize"] {
        assert!(
            errors.get(kind).copied().unwrap_or(0) > 50,
            "too few {kind}: {errors:?}"
        );
    }
}

#[test]
fn header_smoke() {
    let mut rng = XorShift::new(2);
    let (mut ok, mut dead, mut err) = (0, 0, 0);
    for _ in 0..INPUTS {
        match header(&header_input(&mut rng)) {
            Ok(h) => {
                ok += 1;
                dead += usize::from(h.is_dead());
            }
            Err(_) => err += 1,
        }
    }
    println!("header: {ok} ok ({dead} dead), {err} rejected");
    assert!(ok > INPUTS / 4 && err > INPUTS / 4 && dead > 100);
}

#[test]
fn codec_smoke() {
    let mut rng = XorShift::new(3);
    let mut decoded = [0usize; CODEC_TYPES as usize];
    for _ in 0..INPUTS {
        let mask = codec(&codec_input(&mut rng));
        for (i, count) in decoded.iter_mut().enumerate() {
            *count += (mask >> i & 1) as usize;
        }
    }
    println!("codec: decodes per type {decoded:?}");
    assert!(
        decoded.iter().all(|&n| n > 100),
        "every type decoded often: {decoded:?}"
    );
}

/// Replay whatever `cargo fuzz` has left in `corpus/<target>/` (kept out of
/// git), so a corpus or a crash input copied there is checked on stable too.
#[test]
fn replay_local_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    // Each returns a count of what it reached: frames, valid headers, decodes.
    let targets: [(&str, Target); 3] = [
        ("deframer", |d| deframer(d).frames),
        ("header", |d| usize::from(header(d).is_ok())),
        ("codec", |d| codec(d).count_ones() as usize),
    ];
    for (name, run) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        let (mut n, mut reached) = (0, 0);
        for entry in dir.flatten() {
            if let Ok(data) = std::fs::read(entry.path()) {
                reached += run(&data);
                n += 1;
            }
        }
        println!("replayed {n} corpus inputs of {name} (reached {reached})");
    }
}

/// Not part of the smoke run: writes 256 structured inputs per target into
/// `corpus/<target>/` as a starting corpus for `cargo fuzz` (smoke.sh runs
/// it with `--ignored`), so libFuzzer starts from whole frames rather than
/// having to guess the magic, version and a small length first.
#[test]
#[ignore]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let generators: [(&str, Generator); 3] = [
        ("deframer", deframer_input),
        ("header", header_input),
        ("codec", codec_input),
    ];
    for (name, generate) in generators {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = XorShift::new(4);
        for i in 0..256 {
            std::fs::write(dir.join(format!("seed-{i:03}")), generate(&mut rng)).unwrap();
        }
    }
}
