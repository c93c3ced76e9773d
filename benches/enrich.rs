//! Enrichment (keyed IP hash, geo, user agent) and the redirect's per-click work (click id,
//! Location expansion), per click.

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::click::agent;
use sluice::click::enrich::{Enricher, IpHasher};
use sluice::click::geo::{Geo, PlaceCache};
use sluice::click::{row, ClickId, Platform};
use sluice::link::template::Values;

fn benches(c: &mut Criterion) {
    let ip: IpAddr = "81.2.69.160".parse().unwrap();
    let hasher = IpHasher::new(b"bench-key");
    c.bench_function("ip_hash", |b| b.iter(|| hasher.hash(black_box(ip))));

    let geo = common::geo_path().map(|p| Arc::new(Geo::open(&p).unwrap()));
    if let Some(geo) = &geo {
        c.bench_function("geo_lookup", |b| {
            b.iter(|| geo.lookup(black_box(ip)).country.len())
        });
        let mut places = PlaceCache::default();
        c.bench_function("geo_lookup_cached", |b| {
            b.iter(|| geo.lookup_cached(black_box(ip), &mut places).country.len())
        });
    }
    c.bench_function("user_agent_classify_uncached", |b| {
        b.iter(|| agent::classify(black_box(common::UA)))
    });
    for (name, ua) in [
        ("platform_from_user_agent", common::UA),
        ("platform_from_user_agent_android", common::UA_ANDROID),
        ("platform_from_user_agent_desktop", common::UA_DESKTOP),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| Platform::from_user_agent(black_box(ua.as_bytes())))
        });
    }

    let link = common::live_link();
    let click = common::click(&link, ip);
    let mut enricher = Enricher::new(hasher.clone(), geo.clone(), None);
    let mut columns = row::Columns::new();
    c.bench_function("encode_row_enriched", |b| {
        b.iter(|| {
            if columns.rows() == 8192 {
                columns.take_block(7, Vec::new());
            }
            row::encode(&mut columns, black_box(&click), &mut enricher)
        })
    });

    // A 100k-row batch written as a Native block, rows put in the table's key order on the
    // way: arriving in order (nothing to do), as two serving threads deliver them (one row in
    // 50 a millisecond late), and from 16 links interleaved (a full sort).
    let links: Vec<_> = (0..16)
        .map(|i| common::live_link_named(&format!("l{i}")))
        .collect();
    // Row number → (link, milliseconds after the first click).
    type Arrival = fn(u64) -> (usize, u64);
    let arrivals: [(&str, Arrival); 3] = [
        ("in_order", |i| (0, i / 100)),
        ("two_threads", |i| (0, i / 100 - u64::from(i % 50 == 0))),
        ("16_links", |i| ((i % 16) as usize, i / 100)),
    ];
    for (name, arrival) in arrivals {
        c.bench_function(&format!("take_block_100k_{name}"), |b| {
            b.iter_batched_ref(
                || {
                    let mut columns = row::Columns::new();
                    for i in 100..100_100 {
                        let (link, ms) = arrival(i);
                        let mut click = common::click(&links[link], ip);
                        click.ts_ms += ms;
                        row::encode(&mut columns, &click, &mut enricher);
                    }
                    columns
                },
                |columns| columns.take_block(7, Vec::new()).len(),
                criterion::BatchSize::LargeInput,
            )
        });
    }

    c.bench_function("click_id_new", |b| {
        b.iter(|| ClickId::new(black_box(1_795_305_600_123)))
    });
    let mut out = Vec::with_capacity(256);
    c.bench_function("location_expand", |b| {
        b.iter(|| {
            out.clear();
            let id = click.id.to_hyphenated();
            link.destination.expand(
                &Values {
                    click_id: std::str::from_utf8(&id).unwrap(),
                    partner_click_id: "abc123",
                    link_id: &link.id,
                    campaign: &link.labels.campaign,
                    source: &link.labels.source,
                    medium: &link.labels.medium,
                    subs: ["banner", "", "", "", ""],
                    country: "",
                    variant: "",
                },
                &mut out,
            );
            out.len()
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
