//! Write-ahead mode: a click is on local disk before its 302, so SIGKILL loses nothing that
//! was answered, also when ClickHouse was refusing and batches were in the spill.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::proxy::{Mode, Proxy};
use common::*;
use serde_json::json;

struct Node {
    child: tokio::process::Child,
    base: String,
}

async fn start(env: &TestEnv, proxy: &Proxy, port: u16, flush_period_ms: u64) -> Node {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .envs(env.env())
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_CLICKHOUSE_URL", proxy.url())
        .env("SLUICE_WRITE_AHEAD", "true")
        .env("SLUICE_FLUSH_PERIOD_MS", flush_period_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http().get(format!("{base}/healthz")).send().await.is_ok() {
            return Node { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sluice did not start");
}

impl Node {
    async fn sigkill(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().await.unwrap();
    }
}

async fn link(base: &str, key: &str) -> String {
    let code = unique("wal");
    let resp = http()
        .post(format!("{base}/v1/links"))
        .bearer_auth(key)
        .json(&json!({"id": code, "destination": "https://x.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_with_write_ahead() {
    tokio::task::spawn_blocking(|| stack("up")).await.unwrap();
    let env = TestEnv::new();
    let proxy = Proxy::start(clickhouse_addr()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = env.tenant().await;

    // 1. ClickHouse healthy, a long flush period: at SIGKILL every answered click is still
    //    only in memory and in the write-ahead log.
    let node = start(&env, &proxy, port, 10_000).await;
    let code = link(&node.base, &t.secret_key).await;
    let url = format!("{}/{code}", node.base);
    let load = tokio::spawn(async move { fire(&url, 8_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.sigkill().await;
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
    let stored = env
        .wait_for(
            &format!("SELECT count() FROM clicks WHERE {filter}"),
            answered.len() as u64,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        stored >= answered.len() as u64,
        "{stored} of {} recovered",
        answered.len()
    );
    assert_exactly_once(&env, &answered, &filter).await;

    // 2. ClickHouse refusing (batches go to the spill), then SIGKILL; restart with ClickHouse
    //    back: the spill is replayed and the log recovered, and no click lands twice.
    let code = link(&node.base, &t.secret_key).await;
    proxy.set(Mode::Refuse);
    let url = format!("{}/{code}", node.base);
    let load = tokio::spawn(async move { fire(&url, 8_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.sigkill().await;
    let answered = load.await.unwrap();
    assert!(answered.len() > 1_000, "only {} answered", answered.len());
    proxy.set(Mode::Pass);
    let node = start(&env, &proxy, port, 200).await;
    let filter = format!("link_id = '{code}'");
    let stored = env
        .wait_for(
            &format!("SELECT count() FROM clicks WHERE {filter}"),
            answered.len() as u64,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        stored >= answered.len() as u64,
        "{stored} of {} recovered",
        answered.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // anything still replaying would show as a duplicate
    assert_exactly_once(&env, &answered, &filter).await;

    node.sigkill().await;
    env.cleanup().await;
}
