//! Sluice on the local cluster (`deploy/cluster.sh`, which each test brings up): the whole
//! flow on the ClickHouse cluster, three nodes behind HAProxy, and what each part does when
//! killed under load: a Redis master (with deliveries queued), ClickHouse nodes, a Sluice node.
//! `deploy/test.sh` also runs the flow suites (attribution, events, conversions, delivery,
//! keys, links, stats, retention) on both clusters.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{json, Value};
use sluice_testkit::receiver::Receiver;
use sluice_testkit::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster to this test alone (another's kill would move slots under it), and up (a failed
/// earlier test may have left a node down).
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    tokio::task::spawn_blocking(|| cluster("stores"))
        .await
        .unwrap();
    guard
}

/// The Redis Cluster's seed nodes (`deploy/cluster.sh env`; its ports unless told).
fn cluster_url() -> String {
    std::env::var("SLUICE_TEST_CLUSTER_REDIS_URL").unwrap_or_else(|_| {
        (17001..=17006)
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The port of the master that serves `key`'s slot.
async fn master_of(key: &str) -> u16 {
    let first = cluster_url().split(',').next().unwrap().trim().to_string();
    let mut c = redis::Client::open(first)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    // CLUSTER SLOTS: [[start, end, [ip, port, id], replicas…], …]
    let ranges: Vec<(u16, u16, (String, u16))> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut c)
            .await
            .unwrap();
        raw.into_iter()
            .map(|range| {
                let redis::Value::Array(items) = range else {
                    panic!("CLUSTER SLOTS: {range:?}")
                };
                let start: u16 = redis::from_redis_value(items[0].clone()).unwrap();
                let end: u16 = redis::from_redis_value(items[1].clone()).unwrap();
                let redis::Value::Array(master) = &items[2] else {
                    panic!("CLUSTER SLOTS master: {:?}", items[2])
                };
                let host: String = redis::from_redis_value(master[0].clone()).unwrap();
                let port: u16 = redis::from_redis_value(master[1].clone()).unwrap();
                (start, end, (host, port))
            })
            .collect()
    };
    ranges
        .into_iter()
        .find(|(start, end, _)| (*start..=*end).contains(&slot))
        .map(|(_, _, (_, port))| port)
        .expect("a master serves every slot")
}

fn cluster(arg: &str) {
    let status = std::process::Command::new(project_dir().join("deploy/cluster.sh"))
        .arg(arg)
        .status()
        .expect("run deploy/cluster.sh");
    assert!(status.success(), "deploy/cluster.sh {arg} failed");
}

fn event(id: &str) -> Value {
    json!({
        "event_name": "level_up",
        "payload": {},
        "event_datetime": sluice::time::rfc3339_from_ms(sluice::time::now_ms() - 60_000),
        "event_id": id,
        "installation_id": "dev-1",
    })
}

/// Sends one batch of events; the status.
async fn send(b: &str, t: &sluice::store::redis::NewTenant, events: &[Value]) -> u16 {
    match http()
        .post(format!("{b}/v1/events"))
        .basic_auth(&t.tenant_id, Some(&t.secret_key))
        .json(&json!({ "events": events }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if status >= 400 && status != 503 {
                eprintln!("{status}: {}", resp.text().await.unwrap_or_default());
            }
            status
        }
        Err(e) => panic!("no answer within 10 s during the failover: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_master_killed_under_load_fails_over() {
    let _serial = exclusive().await;
    let mut env = TestEnv::new();
    env.redis_url = cluster_url();
    let mut config = env.config();
    config.delivery.allow_private_targets = true;
    let server = sluice::server::Server::start(config.clone()).await.unwrap();
    let b = base(&server);
    let t = env.tenant().await;
    // Every stored event is delivered to a webhook: deliveries are queued through the kill.
    let receiver = Receiver::start(0, &[]).await;
    let (status, hook) = api(
        reqwest::Method::POST,
        &format!("{b}/v1/webhooks"),
        &t.secret_key,
        Some(json!({"url": receiver.url("/hooks"), "events": ["event"]})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let code = unique("failover");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    // The AOF is fsynced every second, and a replica copies asynchronously: let the writes
    // above reach both before the kill.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let url = format!("{b}/{code}");
    let load = tokio::spawn(async move { fire(&url, 10_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Kill the master that holds this tenant's keys (its idempotency sets among them).
    let port = master_of(&format!("{}:{{t:{}}}:tenant", env.prefix, t.tenant_id)).await;
    kill_stack_process(&format!("cluster/redis-{port}/pid"));
    let killed = Instant::now();
    eprintln!(
        "killed the master on {port} at {} (its replica's log has the failover)",
        sluice::time::rfc3339_from_ms(sluice::time::now_ms())
    );
    // A node starting meanwhile waits the failover out instead of failing.
    let starting = tokio::spawn(sluice::server::Server::start(another_node(
        config, "second",
    )));

    // The same batches sent again and again through the failover: each answer is a success
    // or a 503 within 10 s, never anything else, and each event is stored once.
    let batches: Vec<Vec<Value>> = (0..20)
        .map(|i| {
            (0..10)
                .map(|j| event(&format!("00000000-0000-4000-8000-{:012}", i * 10 + j)))
                .collect()
        })
        .collect();
    let mut recovered = false;
    let (mut failures, mut last_refused) = (0, None);
    while !recovered {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the API did not recover"
        );
        recovered = true;
        for batch in &batches {
            match send(&b, &t, batch).await {
                204 => {}
                503 => {
                    recovered = false;
                    failures += 1;
                    last_refused = Some(killed.elapsed());
                }
                other => panic!("a batch answered {other} during the failover"),
            }
        }
        if !recovered {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{failures} batches refused with 503, the last {last_refused:?} after the kill; \
         a whole round accepted {:?} after it",
        killed.elapsed()
    );
    // Replays after recovery are duplicates: still one copy of each.
    for batch in &batches {
        assert_eq!(send(&b, &t, batch).await, 204);
    }
    let stored = format!(
        "SELECT count() FROM events WHERE tenant_id = '{}'",
        t.tenant_id
    );
    assert_eq!(
        env.wait_for(&stored, 200, Duration::from_secs(20)).await,
        200
    );
    let distinct = format!(
        "SELECT uniqExact(event_id) FROM events WHERE tenant_id = '{}'",
        t.tenant_id
    );
    assert_eq!(env.ch_u64(&distinct).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64(&stored).await, 200, "no event stored twice");

    // Every event delivered (at least once: receivers dedupe by the delivery id).
    let ids: Vec<String> = batches
        .iter()
        .flatten()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let delivered = |got: &[sluice_testkit::receiver::Received]| {
        ids.iter()
            .filter(|id| got.iter().any(|r| r.body.contains(id.as_str())))
            .count()
    };
    let started = Instant::now();
    while delivered(&receiver.received()) < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of 200 events' webhooks delivered",
            delivered(&receiver.received())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Redirects never noticed.
    let answered = load.await.unwrap();
    assert_eq!(
        answered.len(),
        10_000,
        "every redirect answered through the failover"
    );

    // Writes work again, on the promoted replica.
    let mut c = redis_conn_to(&cluster_url()).await;
    let _: () = c
        .set(format!("{}:{{t:{}}}:probe", env.prefix, t.tenant_id), 1)
        .await
        .unwrap();
    create_link(
        &server,
        &t.secret_key,
        json!({"id": unique("after"), "destination": "https://y.example/"}),
    )
    .await;

    let second = starting
        .await
        .unwrap()
        .expect("a node started during the failover");
    second.shutdown().await;

    // The killed node comes back as a replica.
    tokio::task::spawn_blocking(|| cluster("stores"))
        .await
        .unwrap();
    server.shutdown().await;
}

/// The ClickHouse cluster's first node (`deploy/cluster.sh env`; its port unless told).
fn cluster_clickhouse_url() -> String {
    std::env::var("SLUICE_TEST_CLUSTER_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:18201".into())
}

/// A test's slice of both clusters.
fn cluster_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.redis_url = cluster_url();
    env.clickhouse_url = cluster_clickhouse_url();
    env.clickhouse_cluster = "sluice".into();
    env
}

/// `sql` on ClickHouse node `n` (1–4) of the local cluster, in `database`.
async fn on_node(n: u16, database: &str, sql: &str) -> u64 {
    let base = cluster_clickhouse_url();
    let port: u16 = base
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let text = http()
        .post(format!(
            "http://127.0.0.1:{}/?database={database}",
            port + n - 1
        ))
        .body(sql.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("node {n}: {sql}: {text}"))
}

/// The whole flow on both clusters: migrations build replicated tables behind Distributed
/// ones; clicks are stored once, on one shard and both its replicas; a click-id install finds
/// its click through the Distributed lookup table; stats count through the aggregates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_installs_and_stats_on_the_clickhouse_cluster() {
    let _serial = exclusive().await;
    let env = cluster_env();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    for node in 1..=4 {
        let tables = format!(
            "SELECT count() FROM system.tables WHERE database = '{}' AND \
             ((name = 'clicks' AND engine = 'Distributed') OR (name = 'clicks_local' AND engine = 'ReplicatedMergeTree') \
              OR (name = 'stats_clicks_local' AND engine = 'ReplicatedAggregatingMergeTree') OR name = 'click_facts_visitor_mv')",
            env.database
        );
        assert_eq!(
            on_node(node, "system", &tables).await,
            4,
            "node {node}'s tables"
        );
    }
    let code = unique("sharded");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/?c={click_id}"}),
    )
    .await;
    // 290 clicks without a browser (bots, as most load tools are) and 10 from an iPhone.
    let answered = fire(&format!("{b}/{code}"), 290, 8, None).await;
    assert_eq!(answered.len(), 290);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap();
    for i in 0..10 {
        let resp = browser
            .get(format!("{b}/{code}?sub1={i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
    }
    assert_eq!(
        env.wait_for("SELECT count() FROM clicks", 300, Duration::from_secs(30))
            .await,
        300
    );
    // Each shard's two replicas hold the same rows; the shards together hold each click once.
    let local = "SELECT count() FROM clicks_local";
    let mut shards = 0;
    for shard in [1, 3] {
        // Either replica may have taken the insert; the other catches up.
        let started = Instant::now();
        let first = loop {
            let first = on_node(shard, &env.database, local).await;
            if on_node(shard + 1, &env.database, local).await == first {
                break first;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the replicas of nodes {shard} and {} differ",
                shard + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        shards += first;
    }
    assert_eq!(shards, 300, "every click on exactly one shard");
    let distinct = env.ch_u64("SELECT uniqExact(click_id) FROM clicks").await;
    assert_eq!(distinct, 300);

    // A click-id install finds its click through the Distributed lookup table.
    assert_eq!(
        env.wait_for(
            "SELECT count() FROM click_facts",
            300,
            Duration::from_secs(30)
        )
        .await,
        300,
        "every click but previews, in the lookup table (bots' too, for the `bot` fraud rule)"
    );
    let click = env
        .ch("SELECT lower(hex(click_id)) FROM click_facts LIMIT 1")
        .await;
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(click.trim(), &mut bytes).unwrap();
    let id = sluice::click::ClickId(bytes).to_string();
    let (status, v) = api(
        reqwest::Method::POST,
        &format!("{b}/v1/attribution/install"),
        &t.secret_key,
        Some(json!({"install_id": "i-cluster", "platform": "ios", "click_id": id})),
    )
    .await;
    assert_eq!(
        (status, v["match_type"].as_str()),
        (200, Some("click_id")),
        "{v}"
    );

    // Stats through the aggregates of both shards.
    let today =
        sluice::time::date_string((sluice::time::now_ms() / sluice::time::MS_PER_DAY) as u16);
    let started = Instant::now();
    loop {
        let (status, stats) = api(
            reqwest::Method::GET,
            &format!("{b}/v1/attribution/stats?from={today}&to={today}"),
            &t.secret_key,
            None,
        )
        .await;
        assert_eq!(status, 200, "{stats}");
        if stats["clicks"] == 10 && stats["bot_clicks"] == 290 && stats["attributed_installs"] == 1
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stats: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}

/// HAProxy in front of the nodes `deploy/cluster.sh nodes` starts (node n on its port + n).
const BALANCER: &str = "http://127.0.0.1:18300";

fn node_url(n: u16) -> String {
    format!("http://127.0.0.1:{}", 18300 + n)
}

/// `deploy/cluster.sh nodes`: starts whichever of the 3 nodes is not running, with this test's
/// settings (both clusters) plus `extra`, the binary under test, and HAProxy.
async fn nodes(env: &TestEnv, extra: &[(&str, &str)]) {
    let mut cmd = std::process::Command::new(project_dir().join("deploy/cluster.sh"));
    cmd.arg("nodes")
        .envs(env.env())
        .env("SLUICE_BIN", sluice_bin())
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied());
    let status = tokio::task::spawn_blocking(move || cmd.status().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "deploy/cluster.sh nodes failed");
}

/// The redirects node `n` answered with a 302, from its own metrics.
async fn redirects_on(n: u16) -> u64 {
    metric(
        &node_url(n),
        "sluice_http_requests_total{route=\"redirect\",status=\"3xx\"}",
    )
    .await as u64
}

/// Waits until every node redirects `code` (a link reaches the others through the change feed).
async fn on_every_node(code: &str) {
    for n in 1..=3 {
        eventually(
            &format!("node {n} knows {code}"),
            Duration::from_secs(10),
            || async move {
                http()
                    .get(format!("{}/{code}?click_id=warm", node_url(n)))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 302)
            },
        )
        .await;
    }
}

/// Three Sluice nodes behind HAProxy on both clusters, write-ahead on: clicks spread over the
/// nodes are counted exactly; one node SIGKILLed under load loses none of the clicks it
/// answered (its log is recovered when it restarts) and doubles none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_and_one_killed() {
    let _serial = exclusive().await;
    let env = cluster_env();
    let settings = |flush_period_ms: &'static str| {
        [
            ("SLUICE_WRITE_AHEAD", "true"),
            ("SLUICE_FLUSH_PERIOD_MS", flush_period_ms),
            ("SLUICE_LINK_REFRESH_MS", "100"),
        ]
    };
    tokio::task::spawn_blocking(|| cluster("stop-nodes"))
        .await
        .unwrap();
    nodes(&env, &settings("200")).await;
    let t = env.tenant().await;
    let link = |code: &str| json!({"id": code, "destination": "https://x.example/"});
    let (counted, killed) = (unique("counted"), unique("killed"));
    for code in [&counted, &killed] {
        let (status, v) = api(
            reqwest::Method::POST,
            &format!("{BALANCER}/v1/links"),
            &t.secret_key,
            Some(link(code)),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        on_every_node(code).await;
    }

    // Exact counts: 3,000 clicks through the balancer, spread over the three nodes.
    let mut before = Vec::new();
    for n in 1..=3 {
        before.push(redirects_on(n).await);
    }
    let answered = fire(&format!("{BALANCER}/{counted}"), 3_000, 16, None).await;
    assert_eq!(answered.len(), 3_000);
    for (n, before) in (1..=3).zip(before) {
        let took = redirects_on(n).await - before;
        assert!(took >= 500, "node {n} took {took} of 3,000");
    }
    let filter = format!("link_id = '{counted}' AND partner_click_id != 'warm'");
    assert_exactly_once(&env, &answered, &filter).await;
    assert_eq!(
        env.ch_u64(&format!("SELECT count() FROM clicks WHERE {filter}"))
            .await,
        3_000
    );

    // ClickHouse away for every node (the one they all write to is killed): /readyz fails
    // everywhere, and the balancer sends redirects to the nodes merely alive; the clicks spill
    // and are replayed once it is back.
    let away = unique("away");
    let (status, v) = api(
        reqwest::Method::POST,
        &format!("{BALANCER}/v1/links"),
        &t.secret_key,
        Some(link(&away)),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    on_every_node(&away).await;
    kill_stack_process("cluster/ch-1/pid");
    eventually("every node not ready", Duration::from_secs(10), || async {
        let mut ready = 0;
        for n in 1..=3 {
            ready += (http().get(format!("{}/readyz", node_url(n))).send().await)
                .is_ok_and(|r| r.status() == 200) as u8;
        }
        ready == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the balancer's checks see it too
    let answered = fire(&format!("{BALANCER}/{away}"), 1_000, 8, None).await;
    assert_eq!(
        answered.len(),
        1_000,
        "redirects answered while ClickHouse is away"
    );
    tokio::task::spawn_blocking(|| cluster("stores"))
        .await
        .unwrap();
    let filter = format!("link_id = '{away}' AND partner_click_id != 'warm'");
    assert_exactly_once(&env, &answered, &filter).await;

    // SIGKILL node 2 under load: the balancer takes it out, the others answer. The nodes
    // restarted with a flush period longer than the test, so every answered click is still in
    // memory and in its node's log at the kill.
    let stop_nodes = || async {
        tokio::task::spawn_blocking(|| cluster("stop-nodes"))
            .await
            .unwrap()
    };
    stop_nodes().await;
    nodes(&env, &settings("60000")).await;
    let url = format!("{BALANCER}/{killed}");
    let load = tokio::spawn(async move { fire(&url, 8_000, 16, Some(1_000)).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill_stack_process("cluster/sluice-2/pid");
    let answered = load.await.unwrap();
    assert!(
        answered.len() > 7_000,
        "only {} of 8,000 answered",
        answered.len()
    );
    let filter = format!("link_id = '{killed}' AND partner_click_id != 'warm'");
    let before_restart = env
        .ch_u64(&format!("SELECT count() FROM clicks WHERE {filter}"))
        .await;
    assert_eq!(before_restart, 0, "nothing flushed before the kill");
    // Restarted, it recovers its log; stopped, the others flush what they hold; nothing is
    // lost or doubled.
    nodes(&env, &settings("60000")).await;
    let recovered = metric(&node_url(2), "sluice_clicks_recovered_total").await as u64;
    assert!(recovered > 0, "node 2 recovered nothing from its log");
    stop_nodes().await;
    eprintln!(
        "{} of 8,000 answered; {recovered} recovered from node 2's log",
        answered.len()
    );
    assert_exactly_once(&env, &answered, &filter).await;
}

/// ClickHouse nodes SIGKILLed under load and restarted, one at a time: first a replica of
/// the shard Sluice's node reaches over the network (inserts and batch-id checks fail over to
/// its twin), then the node Sluice talks to (batches spill and are replayed once it is back).
/// Each time every answered click is stored exactly once and the restarted node catches up
/// with its twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_nodes_killed_under_load_catch_up() {
    let _serial = exclusive().await;
    let env = cluster_env();
    let server = env.start().await;
    let t = env.tenant().await;
    let local = "SELECT count() FROM clicks_local";
    let mut total = 0;
    // (node killed, its twin): node 3 holds shard 2 with node 4; node 1 is Sluice's.
    for (killed, twin) in [(3, 4), (1, 2)] {
        let code = unique("replica");
        create_link(
            &server,
            &t.secret_key,
            json!({"id": code, "destination": "https://x.example/"}),
        )
        .await;
        let url = format!("{}/{code}", base(&server));
        let load = tokio::spawn(async move { fire(&url, 6_000, 16, Some(1_000)).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        kill_stack_process(&format!("cluster/ch-{killed}/pid"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        tokio::task::spawn_blocking(|| cluster("stores"))
            .await
            .unwrap();
        let answered = load.await.unwrap();
        assert_eq!(
            answered.len(),
            6_000,
            "redirects never depend on ClickHouse"
        );
        assert_exactly_once(&env, &answered, &format!("link_id = '{code}'")).await;
        total += 6_000;
        eventually(
            &format!("node {killed} caught up with node {twin}"),
            Duration::from_secs(30),
            || async {
                let (a, b) = (
                    on_node(killed, &env.database, local).await,
                    on_node(twin, &env.database, local).await,
                );
                a == b && a > 0
            },
        )
        .await;
        let shards =
            on_node(1, &env.database, local).await + on_node(3, &env.database, local).await;
        assert_eq!(shards, total, "each click on one shard once");
        let mut seen = Vec::new();
        for series in [
            "sluice_clickhouse_errors_total",
            "sluice_clicks_spilled_total",
            "sluice_clicks_replayed_total",
        ] {
            seen.push(format!("{series} {}", metric(&base(&server), series).await));
        }
        eprintln!("through node {killed}'s kill: {}", seen.join(", "));
    }
    server.shutdown().await;
}
