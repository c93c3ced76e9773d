//! The stats cache (its own test binary: it reads a process-wide metric). Many dashboards
//! polling the same stats cost one ClickHouse computation per interval, and a click shows up
//! within the flush period plus the cache interval.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::*;

async fn stats_queries(server: &sluice::server::Server) -> u64 {
    metric(&base(server), "sluice_stats_clickhouse_queries_total").await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_dashboards_cost_one_computation_per_interval() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.stats_cache_ms = 1_000;
    let server = sluice::server::Server::start(config).await.unwrap();
    let t = env.tenant().await;
    let code = unique("poll");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;

    let before = stats_queries(&server).await;
    let pollers: Vec<_> = (0..300)
        .map(|_| {
            let (url, key) = (
                format!("{}/v1/attribution/stats/by-campaign", base(&server)),
                t.secret_key.clone(),
            );
            tokio::spawn(async move {
                let resp = http().get(url).bearer_auth(key).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for p in pollers {
        answers.push(p.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    let spent = stats_queries(&server).await - before;
    assert_eq!(
        spent,
        sluice::stats::query::QUERIES_PER_ANSWER,
        "one computation for 300 concurrent polls"
    );

    // Freshness: a click is counted within flush period (200 ms here) + the cache interval.
    let resp = http()
        .get(format!("{}/{code}", base(&server)))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let clicked = Instant::now();
    loop {
        let v: Value = http()
            .get(format!("{}/v1/links/{code}/stats", base(&server)))
            .bearer_auth(&t.secret_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["click_count"] == 1 {
            break;
        }
        // Flush period (200 ms) + cache interval (1 s), with slack for a loaded machine.
        assert!(
            clicked.elapsed() < Duration::from_secs(10),
            "click not visible: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let visible_after = clicked.elapsed();
    assert!(
        visible_after < Duration::from_millis(3_000),
        "{visible_after:?}"
    );
}
