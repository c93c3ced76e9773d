//! The ring buffer: pushing clicks as a serving thread does (gathered in chunks) and one by
//! one, draining them, and with the producers on other threads.

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::pipeline::ring::{self, Ring};

fn drain(ring: &Ring) -> usize {
    let mut n = 0;
    while let Some(chunk) = ring.pop_chunk() {
        n += chunk.len();
        ring.give_back(chunk);
    }
    n
}

fn benches(c: &mut Criterion) {
    let link = common::live_link();
    let ip = "81.2.69.160".parse().unwrap();
    let metrics = sluice::metrics::init();
    let ring = Arc::new(Ring::new(1 << 16, metrics));
    let clicks = |n| (0..n).map(|_| common::click(&link, ip)).collect::<Vec<_>>();

    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("push_one_10k_then_drain", |b| {
        b.iter_batched(
            || clicks(10_000),
            |clicks| {
                for c in clicks {
                    ring.push_one(c);
                }
                drain(&ring)
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("gathered_10k_then_drain", |b| {
        ring::attach(ring.clone());
        b.iter_batched(
            || clicks(10_000),
            |clicks| {
                for c in clicks {
                    ring::push(&ring, c);
                }
                ring::flush();
                drain(&ring)
            },
            BatchSize::LargeInput,
        );
        ring::detach();
    });
    // Two producer threads, as two serving threads push, and the encoder's drain here.
    for gathered in [false, true] {
        let name = if gathered {
            "two_threads_gathered_10k"
        } else {
            "two_threads_push_one_10k"
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || (clicks(5_000), clicks(5_000)),
                |(a, b)| {
                    let producers = [a, b].map(|clicks| {
                        let ring = ring.clone();
                        std::thread::spawn(move || {
                            if gathered {
                                ring::attach(ring.clone());
                            }
                            for c in clicks {
                                ring::push(&ring, c);
                            }
                            ring::detach();
                        })
                    });
                    let mut n = 0;
                    while n < 10_000 {
                        n += drain(&ring);
                    }
                    for p in producers {
                        p.join().unwrap();
                    }
                    n
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
