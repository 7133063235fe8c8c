//! Micro-benchmarks of the router's hot path, in one process: a message
//! routed to a local receiver and taken out again, and a `Select` over
//! several receivers.
//!
//! `cargo bench -p mitogen --bench router`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mitogen::{Context, Message, Receiver, Router, Select};
use std::hint::black_box;

fn route_to_local_receiver(c: &mut Criterion) {
    let router = Router::new().unwrap();
    let rx = Receiver::new(&router);
    let me = Context::local(&router);
    let body = mitogen_wire::encode(&42u64).unwrap();
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_and_recv_local", |b| {
        b.iter(|| {
            me.send(Message::new(rx.handle(), body.clone())).unwrap();
            black_box(rx.try_recv().unwrap());
        })
    });
    g.bench_function("pickle_route_recv_unpickle", |b| {
        b.iter(|| {
            me.send(Message::pickled(&black_box(7u64), rx.handle()).unwrap())
                .unwrap();
            black_box(rx.try_recv().unwrap().unpickle::<u64>().unwrap());
        })
    });
    g.finish();
    router.shutdown();
}

fn select_over_receivers(c: &mut Criterion) {
    let router = Router::new().unwrap();
    c.bench_function("select_10_receivers_one_message_each", |b| {
        b.iter(|| {
            let mut select = Select::new();
            for i in 0..10u8 {
                let rx = Receiver::new(&router);
                rx.to_sender().send(&i).unwrap();
                select.add(rx);
            }
            let n = select.iter().count();
            black_box(n)
        })
    });
    router.shutdown();
}

criterion_group!(benches, route_to_local_receiver, select_over_receivers);
criterion_main!(benches);
