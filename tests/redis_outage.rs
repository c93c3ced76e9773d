//! Redis killed and restarted under traffic: redirects keep answering from the in-process
//! link table, the API answers a clear 503 meanwhile, and everything recovers by itself.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted() {
    // A failed earlier run may have left Redis down.
    tokio::task::spawn_blocking(|| stack("up")).await.unwrap();
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    let code = unique("redis");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    // AOF is fsynced every second: let the writes above reach the disk before the kill.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let url = format!("{b}/{code}");
    let load = tokio::spawn(async move { fire(&url, 12_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill_stack_process("redis/pid");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The API says what is wrong, quickly, instead of hanging or guessing.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let resp = c
        .get(format!("{b}/v1/links"))
        .bearer_auth(&t.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        started.elapsed()
    );
    // Attribution answers 503 too: it never guesses a match without Redis.
    let resp = c
        .post(format!("{b}/v1/attribution/deferred"))
        .bearer_auth(&t.publishable_key)
        .json(&json!({"install_id": "during-outage", "platform": "ios"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let ready: serde_json::Value = c
        .get(format!("{b}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "unreachable", "{ready}");

    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::spawn_blocking(|| stack("up")).await.unwrap();
    let answered = load.await.unwrap();
    assert_eq!(
        answered.len(),
        12_000,
        "every redirect answered while Redis was down"
    );
    assert_eq!(
        env.wait_for(
            "SELECT count() FROM clicks",
            12_000,
            Duration::from_secs(30)
        )
        .await,
        12_000
    );

    // Recovery without a restart: the API works and new links propagate again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = c
            .get(format!("{b}/v1/links"))
            .bearer_auth(&t.secret_key)
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "API did not recover: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code2 = unique("after");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code2, "destination": "https://y.example/"}),
    )
    .await;
    assert_eq!(
        http()
            .get(format!("{b}/{code2}"))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );

    assert_eq!(server.shutdown().await.lost_rows, 0);
}
