//! Micro-benchmarks of the frame codec: header encode/decode, deframing a
//! stream of small frames, body encode/decode.
//!
//! `cargo bench -p mitogen-wire`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mitogen_wire::{decode, encode, Deframer, Header};
use std::hint::black_box;

fn header(c: &mut Criterion) {
    let h = Header {
        dst_id: 7,
        src_id: 1,
        auth_id: 1,
        handle: 1001,
        reply_to: 1002,
        length: 64,
        flags: 0,
    };
    c.bench_function("header_to_bytes", |b| b.iter(|| black_box(&h).to_bytes()));
    let bytes = h.to_bytes();
    c.bench_function("header_from_bytes", |b| {
        b.iter(|| Header::from_bytes(black_box(&bytes)).unwrap())
    });
}

fn deframe(c: &mut Criterion) {
    let body = encode(&("mitogen::noop", Option::<u64>::None)).unwrap();
    let mut stream = Vec::new();
    for i in 0..1000u32 {
        let h = Header {
            handle: 1000 + i,
            length: body.len() as u32,
            ..Header::default()
        };
        stream.extend_from_slice(&h.to_bytes());
        stream.extend_from_slice(&body);
    }
    let mut g = c.benchmark_group("deframer");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_small_frames_in_64k_reads", |b| {
        b.iter(|| {
            let mut d = Deframer::new(1 << 20);
            let mut n = 0;
            for chunk in stream.chunks(64 * 1024) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    n += f.body.len();
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn body(c: &mut Criterion) {
    let value = ("mitogen::add".to_string(), Some(3u64), (40i32, 2i32));
    c.bench_function("encode_call_body", |b| {
        b.iter(|| encode(black_box(&value)).unwrap())
    });
    let bytes = encode(&value).unwrap();
    c.bench_function("decode_call_body", |b| {
        b.iter(|| decode::<(String, Option<u64>, (i32, i32))>(black_box(&bytes)).unwrap())
    });
}

criterion_group!(benches, header, deframe, body);
criterion_main!(benches);
