//! Write-ahead mode: a click is on local disk before its 302, so SIGKILL loses nothing that
//! was answered, also when ClickHouse was refusing and batches were in the spill.

use std::time::Duration;

use sluice_testkit::proxy::{Mode, Proxy};
use sluice_testkit::*;

async fn start(env: &TestEnv, proxy: &Proxy, port: u16, flush_period_ms: u64) -> Process {
    let settings = [
        ("SLUICE_CLICKHOUSE_URL", proxy.url()),
        ("SLUICE_WRITE_AHEAD", "true".to_string()),
        ("SLUICE_FLUSH_PERIOD_MS", flush_period_ms.to_string()),
    ];
    Process::start(env, port, &settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_with_write_ahead() {
    tokio::task::spawn_blocking(|| stack("up")).await.unwrap();
    let env = TestEnv::new();
    let proxy = Proxy::start(clickhouse_addr()).await;
    let port = free_port();
    let t = env.tenant().await;

    // 1. ClickHouse healthy, a long flush period: at SIGKILL every answered click is still
    //    only in memory and in the write-ahead log.
    let node = start(&env, &proxy, port, 10_000).await;
    let code = node.link(&t.secret_key).await;
    let url = format!("{}/{code}", node.base);
    let load = tokio::spawn(async move { fire(&url, 8_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.signal("KILL").await;
    let answered = load.await.unwrap();
    assert!(answered.len() > 1_000, "only {} answered", answered.len());
    let filter = format!("link_id = '{code}'");
    assert_eq!(
        env.ch_u64(&format!("SELECT count() FROM clicks WHERE {filter}"))
            .await,
        0,
        "nothing was flushed before the kill"
    );
    let node = start(&env, &proxy, port, 200).await;
    assert_exactly_once(&env, &answered, &filter).await;

    // 2. ClickHouse refusing (batches go to the spill), then SIGKILL; restart with ClickHouse
    //    back: the spill is replayed and the log recovered, and no click lands twice.
    let code = node.link(&t.secret_key).await;
    proxy.set(Mode::Refuse);
    let url = format!("{}/{code}", node.base);
    let load = tokio::spawn(async move { fire(&url, 8_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.signal("KILL").await;
    let answered = load.await.unwrap();
    assert!(answered.len() > 1_000, "only {} answered", answered.len());
    proxy.set(Mode::Pass);
    let node = start(&env, &proxy, port, 200).await;
    let filter = format!("link_id = '{code}'");
    // Anything still replaying would show as a duplicate: wait for the spill to drain.
    eventually("the spill replayed", Duration::from_secs(60), || async {
        ready(&node.base).await.1["spill_bytes"].as_u64() == Some(0)
    })
    .await;
    assert_exactly_once(&env, &answered, &filter).await;

    node.signal("KILL").await;
}
