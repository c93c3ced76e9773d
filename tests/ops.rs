//! Operations endpoints and routing edges: health, readiness, Prometheus metrics, reserved
//! paths, methods.

use std::time::Duration;

use serde_json::json;
use sluice_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_routing() {
    let env = TestEnv::new();
    let server = env.start().await;
    let c = http();
    let b = base(&server);

    let health = c.get(format!("{b}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = c
        .get(format!("{b}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "clickhouse": "ok", "redis": "ok", "spill": "ok", "spill_bytes": 0})
    );

    let t = env.tenant().await;
    let code = unique("m");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            c.get(format!("{b}/{code}")).send().await.unwrap().status(),
            302
        );
    }
    env.wait_for("SELECT count() FROM clicks", 3, Duration::from_secs(20))
        .await;
    // The flusher counts a batch once ClickHouse has taken it.
    eventually(
        "the flushed clicks counted",
        Duration::from_secs(5),
        || async { metric(&b, "sluice_clicks_flushed_total").await >= 3.0 },
    )
    .await;

    let resp = c.get(format!("{b}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for series in [
        "sluice_http_requests_total{route=\"redirect\",status=\"3xx\"}",
        "sluice_http_request_duration_seconds_bucket{route=\"redirect\"",
        "sluice_ring_depth",
        "sluice_ring_capacity",
        "sluice_clicks_enqueued_total",
        "sluice_clicks_flushed_total",
        "sluice_flush_batch_rows_bucket",
        "sluice_flush_duration_seconds_bucket",
        "sluice_flush_batches_total{result=\"ok\"}",
        "sluice_link_table_links",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    let flushed = value("sluice_clicks_flushed_total ");
    assert!(flushed >= 3.0, "flushed counter {flushed}");
    // Each redirect counted once, with one latency observation, on this server.
    assert_eq!(
        value("sluice_http_requests_total{route=\"redirect\",status=\"3xx\"}"),
        3.0
    );
    assert_eq!(
        value("sluice_http_request_duration_seconds_count{route=\"redirect\"}"),
        3.0
    );

    // Reserved words are never codes; bad code characters and deeper paths are not routes.
    for path in [
        "/v1",
        "/w",
        "/dashboard/nope.js",
        "/a.b",
        "/x/y",
        "/v1/nothing",
    ] {
        let resp = c.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // The reserved /dashboard serves the embedded dashboard.
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let resp = c.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    assert_eq!(
        c.post(format!("{b}/{code}")).send().await.unwrap().status(),
        405
    );

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let c = http();

    // Header section over 16 KiB, or more than 64 headers: 431, and the server stays up.
    let resp = c
        .get(format!("{b}/healthz"))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let mut req = c.get(format!("{b}/healthz"));
    for i in 0..80 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert_eq!(req.send().await.unwrap().status(), 431);
    let resp = c
        .get(format!("{b}/{}", "a".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);

    // Slowloris: headers never finished; the connection is closed after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an error response may come first
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slow connection still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.get(format!("{b}/healthz")).send().await.unwrap().status(),
        200
    );

    server.shutdown().await;
}

/// Serving threads run under `SCHED_BATCH` unless configured off (`scheduling::batch_policy`);
/// the pipeline's threads keep the normal policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_threads_scheduling_policy() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let env = TestEnv::new();
    for (setting, serving) in [("true", SCHED_BATCH), ("false", SCHED_OTHER)] {
        let extra = [("SLUICE_HTTP_BATCH_SCHEDULING", setting.to_string())];
        let node = Process::start(&env, free_port(), &extra).await;
        let threads = thread_policies(node.child.id().unwrap());
        let http: Vec<_> = threads
            .iter()
            .filter(|(name, _)| name.starts_with("sluice-http"))
            .collect();
        assert!(!http.is_empty(), "{threads:?}");
        for (name, policy) in &threads {
            let want = if name.starts_with("sluice-http") {
                serving
            } else {
                SCHED_OTHER
            };
            assert_eq!(
                *policy, want,
                "{name} with batch scheduling {setting}: {threads:?}"
            );
        }
        assert!(node.signal("TERM").await.success());
    }
}

/// Each thread's name and scheduling policy, from `/proc/PID/task/*/stat` (field 41).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            let (head, tail) = stat.rsplit_once(')').unwrap();
            let name = head.split_once('(').unwrap().1.to_string();
            // Fields after the name start at field 3.
            let policy = tail
                .split_whitespace()
                .nth(41 - 3)
                .unwrap()
                .parse()
                .unwrap();
            (name, policy)
        })
        .collect()
}

/// Two nodes on one data directory would replay each other's spill and log: the second is
/// refused, naming the directory; once the first has stopped, it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_serves_one_node_at_a_time() {
    let env = TestEnv::new();
    let first = env.start().await;
    let refused = sluice::server::Server::start(env.config())
        .await
        .err()
        .expect("a second node on the same data dir is refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("in use by another Sluice node")
            && message.contains(&env.data_dir.display().to_string()),
        "{message}"
    );
    first.shutdown().await;
    env.start().await.shutdown().await;
}
