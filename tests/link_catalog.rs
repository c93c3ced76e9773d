//! The link catalog at scale: bulk creation, paging, CSV import/export, and how a node's
//! link table follows the change feed — through a long absence, a trimmed feed, a lost feed
//! and links stored by an older Sluice.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{json, Value};
use sluice::link::sync::{self, CatchUp};
use sluice::link::LinkTable;
use sluice::metrics::Metrics;
use sluice_testkit::*;

fn metrics() -> &'static Metrics {
    sluice::metrics::init()
}

async fn bulk(base: &str, key: &str, links: Vec<Value>) -> (u16, Value) {
    api(
        Method::POST,
        &format!("{base}/v1/links/bulk"),
        key,
        Some(json!({ "links": links })),
    )
    .await
}

/// Links `<prefix>0` … `<prefix><n-1>` to `destination`.
fn numbered(prefix: &str, n: usize, destination: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}{i:02}"), "destination": destination}))
        .collect()
}

/// Waits (up to 5 s: a few propagation intervals) until `url` answers `status`.
async fn answers(url: String, status: u16) {
    eventually(
        &format!("{url} answers {status}"),
        Duration::from_secs(5),
        || {
            let url = url.clone();
            async move { http().get(&url).send().await.unwrap().status().as_u16() == status }
        },
    )
    .await;
}

/// Every page of `GET /v1/links?limit=`, in order.
async fn all_pages(base: &str, key: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/links?limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = api(Method::GET, &url, key, None).await;
        assert_eq!(status, 200, "{page}");
        let links = page["links"].as_array().unwrap();
        assert!(links.len() <= limit);
        ids.extend(links.iter().map(|l| l["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_creates_the_valid_links_and_names_each_refused_one() {
    let env = TestEnv::new();
    let server = env.start().await;
    let base = base(&server);
    let t = env.tenant().await;
    let key = &t.secret_key;
    create_link(
        &server,
        key,
        json!({"id": "taken", "destination": "https://x.example/"}),
    )
    .await;

    let (status, answer) = bulk(
        &base,
        key,
        vec![
            json!({"id": "b-one", "destination": "https://one.example/{click_id}", "campaign": "c"}),
            json!({"destination": "ftp://nope"}),
            json!({"destination": "https://gen.example/"}),
            json!({"id": "taken", "destination": "https://x.example/"}),
            json!({"id": "b-one", "destination": "https://again.example/"}),
            json!({"id": "v1", "destination": "https://x.example/"}),
            json!({"destination": "https://x.example/", "colour": "red"}),
            json!(42),
            json!({"campaign": "no destination"}),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["created"], 2, "{answer}");
    let failed: Vec<(u64, Value)> = answer["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["index"].as_u64().unwrap(), f["field"].clone()))
        .collect();
    assert_eq!(
        failed,
        vec![
            (1, json!("destination")),
            (3, json!("id")),
            (4, json!("id")),
            (5, json!("id")),
            (6, json!("colour")),
            (7, Value::Null),
            (8, json!("destination")),
        ],
        "{answer}"
    );
    let generated = answer["links"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["links"][1]["index"], 2);
    // Created links redirect at once on the node that created them.
    for (code, want) in [
        ("b-one", "https://one.example/"),
        (generated.as_str(), "https://gen.example/"),
    ] {
        let resp = http().get(format!("{base}/{code}")).send().await.unwrap();
        assert_eq!(resp.status(), 302, "{code}");
        let location = resp.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(want), "{location}");
    }
    // The taken code kept its link.
    let (_, taken) = api(Method::GET, &format!("{base}/v1/links/taken"), key, None).await;
    assert_eq!(taken["destination"], "https://x.example/");

    // Whole-request refusals: too many links, not an object, the tenant's limit.
    let many = vec![json!({"destination": "https://x.example/"}); 10_001];
    let (status, answer) = bulk(&base, key, many).await;
    assert_eq!(
        (status, answer["error"]["details"]["field"].as_str()),
        (400, Some("links"))
    );
    let (status, answer) = api(
        Method::POST,
        &format!("{base}/v1/links/bulk"),
        key,
        Some(json!([])),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let mut config = env.config();
    config.limits.links = 5;
    let limited = sluice::server::Server::start(another_node(config, "limited"))
        .await
        .unwrap();
    let (status, answer) = bulk(
        &sluice_testkit::base(&limited),
        key,
        vec![json!({"destination": "https://x.example/"}); 3],
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        all_pages(&base, key, 1000).await.len(),
        3,
        "nothing created past the limit"
    );
    limited.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_list_every_live_link_once_newest_first() {
    let env = TestEnv::new();
    let server = env.start().await;
    let base = base(&server);
    let t = env.tenant().await;
    let other = env.tenant().await;
    let key = &t.secret_key;
    for batch in 0..3 {
        let (status, answer) = bulk(
            &base,
            key,
            numbered(&format!("p{batch}-"), 40, "https://x.example/"),
        )
        .await;
        assert_eq!(
            (status, answer["created"].as_u64()),
            (200, Some(40)),
            "{answer}"
        );
        // Distinct creation times between batches: newest first is then checkable.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bulk(
        &base,
        &other.secret_key,
        vec![json!({"id": "theirs", "destination": "https://x.example/"})],
    )
    .await;
    api(Method::DELETE, &format!("{base}/v1/links/p1-07"), key, None).await;

    let pages = all_pages(&base, key, 7).await;
    assert_eq!(pages.len(), 119, "{pages:?}");
    let mut unique = pages.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 119, "each link once");
    assert!(!pages.contains(&"p1-07".to_string()) && !pages.contains(&"theirs".to_string()));
    let batch_of = |id: &str| id[1..2].to_string();
    assert!(
        pages.windows(2).all(|w| batch_of(&w[0]) >= batch_of(&w[1])),
        "newest first: {pages:?}"
    );
    assert_eq!(all_pages(&base, key, 1000).await, pages);
    let (_, first) = api(Method::GET, &format!("{base}/v1/links"), key, None).await;
    assert_eq!(
        first["links"].as_array().unwrap().len(),
        100,
        "default page size"
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zzz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, answer) =
            api(Method::GET, &format!("{base}/v1/links?{query}"), key, None).await;
        assert_eq!(
            (status, answer["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    server.shutdown().await;
}

/// The CSV a tenant exports imports into another tenant unchanged; bad rows are reported by
/// line and field, the good ones created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_and_export_round_trip() {
    let env = TestEnv::new();
    let server = env.start().await;
    let base = base(&server);
    let t = env.tenant().await;
    let dir = tempdir(&env);
    let file = dir.join("links.csv");
    std::fs::write(
        &file,
        "id,destination,campaign,source,medium,ios_destination,paused,rules\n\
         csv-a,https://a.example/?c={click_id},spring,fb,cpc,,false,\"[{\"\"when\"\":{\"\"country\"\":[\"\"DE\"\"]},\"\"destination\"\":\"\"https://de.example/\"\"}]\"\n\
         csv-b,https://b.example/,\"with, comma\",,,https://apps.example/b,true,\n\
         csv-c,not a url,,,,,,\n\
         csv-d,https://d.example/,,,,,maybe,\n\
         csv-e,https://e.example/,,,,,,\"[{\"\"when\"\":{\"\"country\"\":[]},\"\"destination\"\":\"\"https://e.example/\"\"}]\"\n\
         ,https://generated.example/,,,,,,\n",
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let env = env.env();
        async move {
            let out = tokio::process::Command::new(sluice_bin())
                .args(&args)
                .envs(env)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let printed = run(vec![
        "links".into(),
        "import".into(),
        file.display().to_string(),
        "--tenant".into(),
        t.tenant_id.clone(),
    ])
    .await;
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"line": 4, "field": "destination", "message": "must be an absolute http(s) URL"}),
            json!({"line": 5, "field": "paused", "message": "must be true or false"}),
            json!({"line": 6, "field": "rules[0].when.country", "message": "must not be empty (leave the condition out to accept any value)"}),
            json!({"created": 3, "failed": 3}),
        ]
    );
    // Imported on another process: on this node once the feed brings it.
    answers(format!("{base}/csv-b"), 410).await;

    let exported = run(vec![
        "links".into(),
        "export".into(),
        "--tenant".into(),
        t.tenant_id.clone(),
    ])
    .await;
    let mut rows: Vec<&str> = exported.lines().collect();
    assert_eq!(rows.remove(0), "id,destination,campaign,source,medium,partner_id,ios_destination,android_destination,fallback_url,paused,expires_at,rules,split,click_cap");
    assert_eq!(rows.len(), 3, "{exported}");
    assert!(
        rows.contains(
            &"csv-b,https://b.example/,\"with, comma\",,,,https://apps.example/b,,,true,,,,"
        ),
        "{exported}"
    );
    assert!(
        rows.contains(
            &"csv-a,https://a.example/?c={click_id},spring,fb,cpc,,,,,false,,\"[{\"\"when\"\":{\"\"country\"\":[\"\"DE\"\"]},\"\"destination\"\":\"\"https://de.example/\"\"}]\",,"
        ),
        "{exported}"
    );

    // Into another tenant: the codes are taken (codes are global), so drop the id column.
    let other = env.tenant().await;
    let without_ids: String = exported
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_string() + "\n")
        .collect();
    std::fs::write(&file, without_ids).unwrap();
    let printed = run(vec![
        "links".into(),
        "import".into(),
        file.display().to_string(),
        "--tenant".into(),
        other.tenant_id.clone(),
    ])
    .await;
    assert_eq!(
        printed.trim(),
        json!({"created": 3, "failed": 0}).to_string()
    );
    let (_, page) = api(
        Method::GET,
        &format!("{base}/v1/links"),
        &other.secret_key,
        None,
    )
    .await;
    let mut campaigns: Vec<&str> = page["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["campaign"].as_str().unwrap())
        .collect();
    campaigns.sort();
    assert_eq!(campaigns, vec!["", "spring", "with, comma"]);
    let spring = page["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["campaign"] == "spring")
        .unwrap();
    assert_eq!(
        spring["rules"],
        json!([{"when": {"country": ["DE"]}, "destination": "https://de.example/"}])
    );
    server.shutdown().await;
}

fn tempdir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.data_dir.join("csv");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a follower's table holds for `code`: its destination's start, or "gone", or absent.
fn seen(table: &LinkTable, code: &str) -> Option<String> {
    let live = table.get(code)?;
    if live.is_gone(sluice::time::now_ms()) {
        return Some("gone".into());
    }
    let mut out = Vec::new();
    let values = sluice::link::template::Values {
        click_id: "",
        partner_click_id: "",
        link_id: "",
        campaign: "",
        source: "",
        medium: "",
        subs: [""; 5],
        country: "",
        variant: "",
    };
    live.destination.expand(&values, &mut out);
    Some(String::from_utf8(out).unwrap())
}

/// A follower that was away while 10,000 changes happened catches up from the feed alone
/// (no full load); one the feed was trimmed past, or whose feed was lost, notices the gap
/// and loads the catalog again. Either way it ends with exactly the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_converges_after_an_absence_a_trimmed_feed_and_a_lost_feed() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.link_feed_length = 20_000;
    let server = sluice::server::Server::start(config.clone()).await.unwrap();
    let base = base(&server);
    let t = env.tenant().await;
    let key = &t.secret_key;
    let redis = env.redis().await;

    // The follower: a link table kept by the sync functions, polled only when we say.
    let table = LinkTable::default();
    let mut at = sync::start(&redis, &table, metrics()).await.unwrap();

    // 10,000 changes while it is away: 5,000 creations, then each changed or deleted.
    for batch in 0..5 {
        let links = numbered(&format!("f{batch}-"), 1000, "https://old.example/");
        assert_eq!(bulk(&base, key, links).await.1["created"], 1000);
    }
    let changes: Vec<_> = (0..5000).collect();
    for chunk in changes.chunks(100) {
        let calls = chunk.iter().map(|&n| {
            let (batch, i) = (n / 1000, n % 1000);
            let url = format!("{base}/v1/links/f{batch}-{i:02}");
            async move {
                if n % 10 == 0 {
                    api(Method::DELETE, &url, key, None).await.0
                } else {
                    api(
                        Method::PATCH,
                        &url,
                        key,
                        Some(json!({"destination": "https://new.example/"})),
                    )
                    .await
                    .0
                }
            }
        });
        for status in futures_util::future::join_all(calls).await {
            assert!(status == 200 || status == 204);
        }
    }
    assert_eq!(
        sync::catch_up(&redis, &table, metrics(), &mut at)
            .await
            .unwrap(),
        CatchUp::Current,
        "10,000 changes fit the feed: no reload"
    );
    assert_eq!(seen(&table, "f0-00").as_deref(), Some("gone"));
    assert_eq!(
        seen(&table, "f4-999").as_deref(),
        Some("https://new.example/")
    );
    assert_eq!(table.len(), 5000);
    assert_eq!(table.applied(), at.version);

    // Trimmed past: more changes than the feed keeps while it is away.
    for batch in 0..25 {
        let links = numbered(&format!("g{batch}-"), 1000, "https://g.example/");
        assert_eq!(bulk(&base, key, links).await.1["created"], 1000);
    }
    assert_eq!(
        sync::catch_up(&redis, &table, metrics(), &mut at)
            .await
            .unwrap(),
        CatchUp::Gap
    );
    at = sync::load(&redis, &table, metrics()).await.unwrap();
    assert_eq!(
        sync::catch_up(&redis, &table, metrics(), &mut at)
            .await
            .unwrap(),
        CatchUp::Current
    );
    assert_eq!(table.len(), 30_000);
    assert_eq!(
        seen(&table, "g24-999").as_deref(),
        Some("https://g.example/")
    );

    // The feed lost (Redis restarted without it) while changes happened.
    let mut conn = redis_conn().await;
    api(
        Method::PATCH,
        &format!("{base}/v1/links/g0-00"),
        key,
        Some(json!({"destination": "https://lost.example/"})),
    )
    .await;
    let _: () = conn
        .del(format!("{}:{{links}}:feed", env.prefix))
        .await
        .unwrap();
    api(
        Method::PATCH,
        &format!("{base}/v1/links/g0-01"),
        key,
        Some(json!({"destination": "https://after.example/"})),
    )
    .await;
    assert_eq!(
        sync::catch_up(&redis, &table, metrics(), &mut at)
            .await
            .unwrap(),
        CatchUp::Gap
    );
    at = sync::load(&redis, &table, metrics()).await.unwrap();
    assert_eq!(
        seen(&table, "g0-00").as_deref(),
        Some("https://lost.example/")
    );
    assert_eq!(
        seen(&table, "g0-01").as_deref(),
        Some("https://after.example/")
    );

    // Redis came back from an older copy: its version is behind the follower's.
    let _: () = conn
        .set(format!("{}:{{links}}:version", env.prefix), 1)
        .await
        .unwrap();
    assert_eq!(
        sync::catch_up(&redis, &table, metrics(), &mut at)
            .await
            .unwrap(),
        CatchUp::Gap
    );
    server.shutdown().await;
}

/// A running node that misses a run of changes (trimmed feed) reloads on its own and, after
/// its propagation bound, never redirects a deleted or paused link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_paused_links_stop_on_every_node() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.link_feed_length = 10;
    let node_a = sluice::server::Server::start(config.clone()).await.unwrap();
    let node_b = sluice::server::Server::start(another_node(config, "b"))
        .await
        .unwrap();
    let t = env.tenant().await;
    let key = &t.secret_key;
    let links = numbered("s", 50, "https://x.example/");
    assert_eq!(bulk(&base(&node_a), key, links).await.1["created"], 50);
    api(
        Method::DELETE,
        &format!("{}/v1/links/s03", base(&node_a)),
        key,
        None,
    )
    .await;
    api(
        Method::PATCH,
        &format!("{}/v1/links/s04", base(&node_a)),
        key,
        Some(json!({"paused": true})),
    )
    .await;
    for (code, want) in [("s03", 410), ("s04", 410), ("s49", 302)] {
        answers(format!("{}/{code}", base(&node_b)), want).await;
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

/// Links stored by a Sluice before the change feed (catalog at `<p>:links`, a set of codes
/// per tenant) are served, listed and changeable after an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_from_before_the_change_feed_survive_the_upgrade() {
    let env = TestEnv::new();
    let t = env.tenant().await;
    let mut conn = redis_conn().await;
    let p = &env.prefix;
    for (code, created) in [
        ("old-a", "2026-01-01T00:00:00.000Z"),
        ("old-b", "2026-02-01T00:00:00.000Z"),
    ] {
        let link = json!({"id": code, "tenant_id": t.tenant_id, "destination": format!("https://{code}.example/"),
            "campaign": "", "source": "", "medium": "", "paused": false, "created_at": created, "updated_at": created});
        let _: () = conn
            .hset(format!("{p}:links"), code, link.to_string())
            .await
            .unwrap();
        let _: () = conn
            .sadd(format!("{p}:{{t:{}}}:links", t.tenant_id), code)
            .await
            .unwrap();
    }
    let _: () = conn.set(format!("{p}:links:version"), 7).await.unwrap();

    let server = env.start().await;
    let base = base(&server);
    assert_eq!(
        http()
            .get(format!("{base}/old-a"))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );
    assert_eq!(
        all_pages(&base, &t.secret_key, 1).await,
        vec!["old-b", "old-a"]
    );
    let (status, _) = api(
        Method::PATCH,
        &format!("{base}/v1/links/old-a"),
        &t.secret_key,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        http()
            .get(format!("{base}/old-a"))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    let old_keys: bool = conn.exists(format!("{p}:links")).await.unwrap();
    assert!(!old_keys);
    server.shutdown().await;
}
