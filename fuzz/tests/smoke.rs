//! Stable-Rust smoke run of the fuzz targets: each target function over a
//! fixed, deterministic pseudo-random corpus (xorshift, no dependency).
//! Inputs are mostly *structured* (valid frames, headers and encodings, then
//! mutated or cut) so the checks behind the first byte are reached without
//! coverage guidance; the summaries the targets return are used to assert that
//! the corpus really reached each path.

use std::collections::BTreeMap;

use mitogen::{CallError, CallErrorKind};
use mitogen_wire::{encode, FrameError, Header, FLAG_DEAD, HEADER_LEN};
use mitogen_wire_fuzz::calls::{CALLABLE, REPLY_DEAD, REPLY_FAILED, REPLY_TYPES};
use mitogen_wire_fuzz::marker::{KINDS, NONCE};
use mitogen_wire_fuzz::{
    call_body, codec, deframer, header, marker, reply_body, Kind, Nested, XorShift, CODEC_TYPES,
};

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

fn nested(rng: &mut XorShift) -> Nested {
    let small = |rng: &mut XorShift| rng.next_u64() >> rng.below(64);
    Nested {
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
        _ => encode(&nested(rng)).unwrap(),
    };
    mutate(rng, encoded)
}

/// The argument tuple of `CALLABLE[i]`, encoded.
fn call_args(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let small = |rng: &mut XorShift| (rng.next_u64() >> rng.below(64)) as u32;
    match i {
        0 => encode(&(small(rng), string(rng))).unwrap(),
        1 => encode(&(nested(rng),)).unwrap(),
        2 => encode(&(bytes(rng, 40),)).unwrap(),
        3 => encode(&((small(rng), small(rng)),)).unwrap(),
        _ => encode(&(rng.below(3) == 0, string(rng))).unwrap(),
    }
}

fn call_input(rng: &mut XorShift) -> Vec<u8> {
    // Mostly with a reply asked for; callers 0-3.
    let mut input = vec![(rng.below(4) as u8) << 1 | u8::from(rng.below(8) == 0)];
    if rng.below(10) == 0 {
        input.extend(bytes(rng, 64));
        return input;
    }
    let i = rng.below(CALLABLE.len() + 1);
    let name = match CALLABLE.get(i) {
        Some(name) => name.to_string(),
        None if rng.below(2) == 0 => "mitogen_wire_fuzz::calls::nothing".to_string(),
        None => string(rng),
    };
    // Few chain ids, so failed chains are hit again.
    let chain = (rng.below(3) == 0).then(|| rng.below(8) as u64);
    let mut body = encode(&(name, chain)).unwrap();
    // Mostly the function's own argument types, sometimes another's.
    let args = match rng.below(5) {
        0 => rng.below(CALLABLE.len()),
        _ => i % CALLABLE.len(),
    };
    body.extend(call_args(rng, args));
    input.extend(if rng.below(3) == 0 {
        mutate(rng, body)
    } else {
        body
    });
    input
}

fn reply_input(rng: &mut XorShift) -> Vec<u8> {
    let small = |rng: &mut XorShift| (rng.next_u64() >> rng.below(64)) as u32;
    let mut input = vec![u8::from(rng.below(10) == 0)];
    let body = match rng.below(9) {
        0 => bytes(rng, 40),
        1 => {
            let kinds = [
                CallErrorKind::Returned,
                CallErrorKind::Panicked,
                CallErrorKind::BadArguments,
                CallErrorKind::ChainFailed,
            ];
            let e = CallError {
                kind: kinds[rng.below(kinds.len())],
                function: if rng.below(2) == 0 {
                    String::new()
                } else {
                    string(rng)
                },
                context: if rng.below(2) == 0 {
                    String::new()
                } else {
                    string(rng)
                },
                context_id: if rng.below(2) == 0 {
                    None
                } else {
                    Some(rng.below(1 << 20) as u32)
                },
                type_name: string(rng),
                message: string(rng),
                backtrace: string(rng),
                location: string(rng),
            };
            [vec![1], encode(&e).unwrap()].concat()
        }
        2 => [vec![0], encode(&small(rng)).unwrap()].concat(),
        3 => [vec![0], encode(&string(rng)).unwrap()].concat(),
        4 => [vec![0], encode(&bytes(rng, 40)).unwrap()].concat(),
        5 => [vec![0], encode(&nested(rng)).unwrap()].concat(),
        6 => {
            let v = (rng.below(2) == 1).then(|| (0..rng.below(4)).map(|_| string(rng)).collect());
            [vec![0], encode::<Option<Vec<String>>>(&v).unwrap()].concat()
        }
        7 => vec![0],
        _ => vec![rng.next_u64() as u8],
    };
    input.extend(mutate(rng, body));
    input
}

fn marker_input(rng: &mut XorShift) -> Vec<u8> {
    const NOISE: &[&str] = &[
        "",
        "Last login: Mon ",
        "\x1b[0m",
        "MITOGEN-",
        "MITOGEN-EXEC:",
        "é",
    ];
    let mut input = vec![rng.next_u64() as u8];
    let mut line = NOISE[rng.below(NOISE.len())].to_string();
    if rng.below(6) != 0 {
        let nonce = match rng.below(8) {
            0 => NONCE[..rng.below(NONCE.len())].to_string(),
            1 => NONCE.replace('a', "b"),
            _ => NONCE.to_string(),
        };
        let tail = match rng.below(5) {
            0 => String::new(),
            1 => ":Linux x86_64:gz".to_string(),
            2 => ":2:0123abcd".to_string(),
            3 => format!(":{}", string(rng)),
            _ => string(rng),
        };
        line.push_str(&format!("{}:{nonce}{tail}", KINDS[rng.below(KINDS.len())]));
    }
    if rng.below(2) == 0 {
        line.push('|');
        line.push_str(&string(rng));
        line.push(' ');
        line.push_str(&string(rng));
    }
    if rng.below(8) == 0 {
        line.push_str("\r\n");
    }
    input.extend(line.into_bytes());
    mutate(rng, input)
}

/// Assert that each of `outcomes` was counted more than `min` times.
fn assert_each_over<K: std::borrow::Borrow<str> + Ord + std::fmt::Debug>(
    counts: &BTreeMap<K, usize>,
    outcomes: &[&str],
    min: usize,
) {
    for outcome in outcomes {
        let n = counts.get(*outcome).copied().unwrap_or(0);
        assert!(n > min, "too few {outcome}: {counts:?}");
    }
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
    assert_each_over(
        &errors,
        &["none", "magic", "version", "flags", "oversize"],
        50,
    );
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

#[test]
fn call_body_smoke() {
    let mut rng = XorShift::new(5);
    let mut ran = [0usize; CALLABLE.len()];
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..INPUTS {
        let run = call_body(&call_input(&mut rng));
        for (i, n) in ran.iter_mut().enumerate() {
            *n += (run.ok >> i & 1) as usize;
        }
        if let Some(kind) = run.failed {
            *failed.entry(format!("{kind:?}")).or_default() += 1;
        }
    }
    println!("call_body: runs per function {ran:?}, failures {failed:?}");
    assert!(ran.iter().all(|&n| n > 200), "every function ran: {ran:?}");
    let kinds = ["BadArguments", "UnknownFunction", "Returned", "ChainFailed"];
    assert_each_over(&failed, &kinds, 50);
}

#[test]
fn reply_body_smoke() {
    let mut rng = XorShift::new(6);
    let mut decoded = [0usize; REPLY_TYPES as usize];
    let (mut failed, mut dead) = (0, 0);
    for _ in 0..INPUTS {
        let bits = reply_body(&reply_input(&mut rng));
        for (i, n) in decoded.iter_mut().enumerate() {
            *n += (bits >> i & 1) as usize;
        }
        failed += usize::from(bits & REPLY_FAILED != 0);
        dead += usize::from(bits & REPLY_DEAD != 0);
    }
    println!("reply_body: decodes per type {decoded:?}, {failed} failures, {dead} dead");
    assert!(
        decoded.iter().all(|&n| n > 100),
        "every type decoded: {decoded:?}"
    );
    assert!(
        failed > 1000 && dead > 1000,
        "{failed} failures, {dead} dead"
    );
}

#[test]
fn marker_smoke() {
    let mut rng = XorShift::new(7);
    let mut found = [0usize; KINDS.len()];
    let (mut none, mut built) = (0, 0);
    for _ in 0..INPUTS {
        let run = marker(&marker_input(&mut rng));
        match run.found {
            Some(k) => found[k] += 1,
            None => none += 1,
        }
        built += usize::from(run.built);
    }
    println!("marker: found per kind {found:?}, {none} without, {built} built");
    assert!(
        found.iter().all(|&n| n > 500),
        "every kind found: {found:?}"
    );
    assert!(
        none > 1000 && built > INPUTS * 9 / 10,
        "{none} without, {built} built"
    );
}

/// Replay whatever `cargo fuzz` has left in `corpus/<target>/` (kept out of
/// git), so a corpus or a crash input copied there is checked on stable too.
#[test]
fn replay_local_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    // Each returns a count of what it reached: frames, valid headers, decodes.
    let targets: [(&str, Target); 6] = [
        ("deframer", |d| deframer(d).frames),
        ("header", |d| usize::from(header(d).is_ok())),
        ("codec", |d| codec(d).count_ones() as usize),
        ("call_body", |d| call_body(d).ok.count_ones() as usize),
        ("reply_body", |d| {
            (reply_body(d) & ((1 << REPLY_TYPES) - 1)).count_ones() as usize
        }),
        ("marker", |d| usize::from(marker(d).found.is_some())),
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
    let generators: [(&str, Generator); 6] = [
        ("deframer", deframer_input),
        ("header", header_input),
        ("codec", codec_input),
        ("call_body", call_input),
        ("reply_body", reply_input),
        ("marker", marker_input),
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
