//! The ring buffer: push/pop cost single-threaded and with a producer on another thread.

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::pipeline::Ring;

fn benches(c: &mut Criterion) {
    let link = common::live_link();
    let ip = "81.2.69.160".parse().unwrap();
    let ring = Ring::new(1 << 16);

    c.bench_function("ring_push_pop", |b| {
        b.iter_batched(
            || common::click(&link, ip),
            |click| {
                ring.push(click).unwrap();
                ring.pop().unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    let mut group = c.benchmark_group("ring_drain");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("push_10k_then_drain", |b| {
        b.iter_batched(
            || {
                (0..10_000)
                    .map(|_| common::click(&link, ip))
                    .collect::<Vec<_>>()
            },
            |clicks| {
                for c in clicks {
                    ring.push(c).unwrap();
                }
                let mut n = 0;
                while ring.pop().is_some() {
                    n += 1;
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("concurrent_producer_10k", |b| {
        let shared = Arc::new(Ring::new(1 << 16));
        b.iter_batched(
            || {
                (0..10_000)
                    .map(|_| common::click(&link, ip))
                    .collect::<Vec<_>>()
            },
            |clicks| {
                let producer = {
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        for c in clicks {
                            let mut c = c;
                            while let Err(back) = shared.push(c) {
                                c = back;
                                std::hint::spin_loop();
                            }
                        }
                    })
                };
                let mut n = 0;
                while n < 10_000 {
                    if shared.pop().is_some() {
                        n += 1;
                    }
                }
                producer.join().unwrap();
                n
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
