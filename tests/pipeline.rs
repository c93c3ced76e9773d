//! The click pipeline under load and at shutdown: exact counts in ClickHouse, distinct ids,
//! enrichment filled, no IP anywhere, and SIGTERM drains what was answered.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_testkit::*;

const UAS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
];

/// Client IPs (behind the trusted proxy 127.0.0.1) and the country the test database gives them.
fn client(i: usize) -> (String, &'static str) {
    match i % 4 {
        0 => (format!("81.2.69.{}", i % 250 + 1), "GB"),
        1 => (format!("89.160.20.{}", i % 250 + 1), "SE"),
        2 => (format!("216.160.83.{}", i % 250 + 1), "US"),
        _ => (format!("2001:db8:1::{:x}", i % 250 + 1), "DE"),
    }
}

/// Sends `total` GETs with `concurrency` workers; returns how many were answered 302.
async fn fire(url: String, total: usize, concurrency: usize) -> usize {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = http();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (c, url, next) = (c.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return ok;
                    }
                    let (ip, _) = client(i);
                    let resp = c
                        .get(format!("{url}?click_id=p{i}&sub1=s{}", i % 7))
                        .header("user-agent", UAS[i % 3])
                        .header("x-forwarded-for", ip)
                        .send()
                        .await
                        .expect("redirect answered");
                    assert_eq!(resp.status(), 302);
                    ok += 1;
                }
            })
        })
        .collect();
    let mut answered = 0;
    for w in workers {
        answered += w.await.unwrap();
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_count_under_load() {
    const N: usize = 20_000;
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let code = unique("load");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/?c={click_id}", "campaign": "load"}),
    )
    .await;

    let answered = fire(format!("{}/{code}", base(&server)), N, 64).await;
    assert_eq!(answered, N);
    let rows = env
        .wait_for(
            "SELECT count() FROM clicks",
            N as u64,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(rows, N as u64, "every answered click is stored");
    assert_eq!(
        env.ch_u64("SELECT uniqExact(click_id) FROM clicks").await,
        N as u64,
        "click ids are distinct"
    );
    assert_eq!(
        env.ch_u64("SELECT uniqExact(partner_click_id) FROM clicks")
            .await,
        N as u64,
        "one row per request"
    );
    let by_country = env
        .ch("SELECT country, count() FROM clicks GROUP BY country ORDER BY country FORMAT TSV")
        .await;
    assert_eq!(
        by_country,
        format!("DE\t{q}\nGB\t{q}\nSE\t{q}\nUS\t{q}\n", q = N / 4)
    );
    let by_platform = env.ch("SELECT platform, os, browser, count() FROM clicks GROUP BY platform, os, browser ORDER BY platform FORMAT TSV").await;
    let sent = |ua: usize| (0..N).filter(|i| i % 3 == ua).count();
    assert_eq!(
        by_platform,
        format!("android\tAndroid\tChrome\t{}\nios\tiPhone\tSafari\t{}\nother\tWindows 10\tChrome\t{}\n", sent(1), sent(0), sent(2))
    );
    assert_eq!(
        env.ch_u64("SELECT count() FROM clicks WHERE city = '' OR ip_hash = 0 OR is_bot = 1")
            .await,
        0
    );
    // The same client IP always hashes the same, different ones differently.
    let ips: std::collections::HashSet<String> = (0..N).map(|i| client(i).0).collect();
    assert_eq!(
        env.ch_u64("SELECT uniqExact(ip_hash) FROM clicks").await,
        ips.len() as u64
    );

    // No column anywhere holds a client IP (nor the proxy's).
    let dump = env.ch("SELECT * FROM clicks FORMAT TSV").await;
    for ip in &ips {
        assert!(!dump.contains(ip.as_str()), "IP {ip} stored");
    }
    assert!(!dump.contains("127.0.0.1"));

    let report = server.shutdown().await;
    assert_eq!(report.lost_rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_burst_loses_nothing() {
    const N: usize = 5_000;
    let env = TestEnv::new();
    // A long flush period: the burst is still in the ring when SIGTERM arrives.
    let node = Process::start(
        &env,
        free_port(),
        &[("SLUICE_FLUSH_PERIOD_MS", "600000".into())],
    )
    .await;
    let t = env.tenant().await;
    let code = node.link(&t.secret_key).await;
    let base = node.base.clone();

    let answered = fire(format!("{base}/{code}"), N, 32).await;
    assert_eq!(answered, N);
    assert_eq!(
        env.ch_u64("SELECT count() FROM clicks").await,
        0,
        "nothing flushed before the signal"
    );

    let status = node.signal("TERM").await;
    assert!(status.success(), "clean exit: {status}");
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, N as u64);
    assert_eq!(
        env.ch_u64("SELECT uniqExact(click_id) FROM clicks").await,
        N as u64
    );
}

/// Click batches spilled as RowBinary rows by versions before the Native encoding still
/// replay into ClickHouse after an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rowbinary_batches_spilled_by_earlier_versions_replay() {
    use sluice::pipeline::batch::{Batch, BatchKind};
    use sluice::pipeline::spill::Spill;

    let env = TestEnv::new();
    // The first start creates the schema; ClickHouse then renders the old batch itself.
    env.start().await.shutdown().await;
    let batch_id = 4_242_424_242u64;
    let row = format!(
        "SELECT toDate('2026-11-20') AS date, toUInt64(1795305600123) AS ts_ms, \
         toFixedString(unhex('0123456789abcdef0123456789abcdef'), 16) AS click_id, \
         'legacy' AS tenant_id, 'promo' AS link_id, 'spring' AS campaign, 'fb' AS source, \
         'cpc' AS medium, '' AS partner_click_id, 'a' AS sub1, '' AS sub2, '' AS sub3, '' AS sub4, \
         '' AS sub5, toUInt64(42) AS ip_hash, 'GB' AS country, '' AS region, '' AS city, \
         'Safari' AS browser, 'iOS' AS os, '17.1' AS os_version, 'smartphone' AS device, \
         'ios' AS platform, '' AS referrer, toUInt8(0) AS is_bot, toUInt8(0) AS is_preview, \
         toUInt64({batch_id}) AS batch_id FORMAT RowBinary"
    );
    let data = reqwest::Client::new()
        .post(clickhouse_url())
        .body(row)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let day = (1_795_305_600_123u64 / 86_400_000) as u16;
    let mut spill = Spill::open(&env.data_dir.join("spill"), 1 << 20).unwrap();
    spill
        .append(
            &Batch {
                id: batch_id,
                kind: BatchKind::ClicksRowBinary,
                rows: 1,
                first_day: day,
                last_day: day,
                bots: 0,
                previews: 0,
                data,
                wal: Vec::new(),
                receipts: Vec::new(),
            },
            false,
        )
        .unwrap();
    drop(spill);

    let server = env.start().await;
    let sql = format!(
        "SELECT count() FROM clicks WHERE batch_id = {batch_id} AND tenant_id = 'legacy' \
         AND campaign = 'spring' AND country = 'GB' AND os_version = '17.1'"
    );
    assert_eq!(env.wait_for(&sql, 1, Duration::from_secs(20)).await, 1);
    server.shutdown().await;
}

/// A batch ClickHouse refuses for good (its data cannot be read) at the head of the spill is
/// set aside in the dead-letter directory, counted and logged, and the batches behind it go
/// on: it does not block the spill forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_good_is_set_aside_and_the_rest_goes_on() {
    use sluice::pipeline::batch::{Batch, BatchKind};
    use sluice::pipeline::spill::{self, Spill};

    let env = TestEnv::new();
    env.start().await.shutdown().await;
    let day = (sluice::time::now_ms() / 86_400_000) as u16;
    let refused = Batch {
        id: 77_777_777,
        kind: BatchKind::Events,
        rows: 3,
        first_day: day,
        last_day: day,
        bots: 0,
        previews: 0,
        data: bytes::Bytes::from_static(b"not three RowBinary event rows"),
        wal: Vec::new(),
        receipts: Vec::new(),
    };
    let mut spill = Spill::open(&env.data_dir.join("spill"), 1 << 20).unwrap();
    spill.append(&refused, false).unwrap();
    drop(spill);

    let server = env.start().await;
    let t = env.tenant().await;
    let code = unique("dl");
    create_link(
        &server,
        &t.secret_key,
        serde_json::json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    let answered = sluice_testkit::fire(&format!("{}/{code}", base(&server)), 20, 4, None).await;
    assert_eq!(answered.len(), 20);
    assert_exactly_once(&env, &answered, &format!("link_id = '{code}'")).await;
    let path = env.data_dir.join("dead-letter/0000000004a2cb71.batch");
    let kept = std::fs::read(&path).expect("the refused batch is kept");
    let (record, _) = spill::decode_record(&kept).unwrap().unwrap();
    assert_eq!(
        (record.batch.id, record.batch.kind, record.batch.data),
        (refused.id, refused.kind, refused.data)
    );
    assert!(
        metric(&base(&server), "sluice_dead_letter_rows_total").await >= 3.0,
        "counted"
    );
    assert_eq!(env.ch_u64("SELECT count() FROM events").await, 0);
    server.shutdown().await;
}
