//! Retention against a real ClickHouse: a month past every tenant's retention is dropped
//! whole; a tenant with a shorter retention loses its own older rows only; stats aggregates
//! keep counting what the raw tables no longer hold.

use std::time::Duration;

use serde_json::json;
use sluice_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_rows_go_at_each_tenants_retention_and_stats_stay() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.retention_interval_ms = 0; // run by hand below
    config.stats_cache_ms = 0;
    let server = sluice::server::Server::start(config).await.unwrap();
    let short = env.tenant().await;
    let long = env.tenant().await;
    let resp = http()
        .patch(format!("{}/v1/attribution/config", base(&server)))
        .bearer_auth(&short.secret_key)
        .json(&json!({"raw_retention_days": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let today = (sluice::time::now_ms() / sluice::time::MS_PER_DAY) as u16;
    let ancient = today - 500; // past both retentions (60 and the default 400)
    let old = today - 100; // past the short one only
    let recent = today - 5;
    let mut rows = Vec::new();
    for t in [&short.tenant_id, &long.tenant_id] {
        for day in [ancient, old, recent] {
            for i in 0..3 {
                rows.push(format!(
                    "(toDate('{}'), {}, '{t}', 'l', {i}, 0, 0)",
                    sluice::time::date_string(day),
                    u64::from(day) * 86_400_000 + i
                ));
            }
        }
    }
    env.ch(&format!(
        "INSERT INTO clicks (date, ts_ms, tenant_id, link_id, ip_hash, is_bot, is_preview) VALUES {}",
        rows.join(",")
    ))
    .await;
    let count = |t: &str, day: u16| {
        format!(
            "SELECT count() FROM clicks WHERE tenant_id = '{t}' AND date = toDate('{}')",
            sluice::time::date_string(day)
        )
    };

    let report = sluice::retention::run_once(&server.app.retention(), today)
        .await
        .unwrap();
    let ancient_month = sluice::time::month_of(u64::from(ancient) * 86_400_000);
    // The click-id lookup's copy of clicks goes with them.
    for table in ["clicks", "click_facts"] {
        assert!(
            report.dropped.contains(&(table.to_string(), ancient_month)),
            "{report:?}"
        );
    }
    assert_eq!(
        report.deleted,
        vec![
            ("clicks".to_string(), short.tenant_id.clone(), today - 60),
            (
                "click_facts".to_string(),
                short.tenant_id.clone(),
                today - 60
            ),
        ],
        "only the short-retention tenant's rows are deleted"
    );
    // Mutations apply in the background: wait for the short tenant's old rows to go.
    let started = std::time::Instant::now();
    let by_id = count(&short.tenant_id, old).replace("FROM clicks", "FROM click_facts");
    while env.ch_u64(&count(&short.tenant_id, old)).await + env.ch_u64(&by_id).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "mutation did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (t, day, want) in [
        (&short.tenant_id, ancient, 0),
        (&long.tenant_id, ancient, 0),
        (&short.tenant_id, old, 0),
        (&long.tenant_id, old, 3),
        (&short.tenant_id, recent, 3),
        (&long.tenant_id, recent, 3),
    ] {
        assert_eq!(env.ch_u64(&count(t, day)).await, want, "{t} day {day}");
    }
    // Stats still count the deleted rows: aggregates are kept.
    let v: serde_json::Value = http()
        .get(format!(
            "{}/v1/attribution/stats?from={}&to={}",
            base(&server),
            sluice::time::date_string(old),
            sluice::time::date_string(today)
        ))
        .bearer_auth(&short.secret_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["clicks"], 6, "{v}");
    // A second pass finds nothing more to do.
    let again = sluice::retention::run_once(&server.app.retention(), today)
        .await
        .unwrap();
    assert_eq!(again, sluice::retention::Report::default());
}
