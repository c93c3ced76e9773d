//! SKAdNetwork and AdAttributionKit postbacks over HTTP against real Redis and ClickHouse:
//! Apple's own example postbacks verify and are stored once, altered copies are kept but never
//! counted, copies racing each other are stored once, unknown apps and bad bodies are refused,
//! the figures equal what was sent, and a partner receives a signed copy of the verified
//! postbacks of its ad network.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sluice_testkit::receiver::Receiver;
use sluice_testkit::*;

const SKADNETWORK: &str = "/.well-known/skadnetwork/report-attribution/";
const APPATTRIBUTION: &str = "/.well-known/appattribution/report-attribution/";

/// Apple's example postbacks (`tests/data/apple_postbacks.json`), by name.
fn example(name: &str) -> Value {
    let all: Vec<Value> = serde_json::from_str(include_str!("data/apple_postbacks.json")).unwrap();
    all.into_iter()
        .find(|e| e["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no example {name}"))["postback"]
        .clone()
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    answer(http().post(format!("{base}{path}")).json(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postbacks_verify_store_once_count_and_forward() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.delivery.allow_private_targets = true;
    let server = sluice::server::Server::start(config).await.unwrap();
    let base = base(&server);
    let t = env.tenant().await;
    let key = t.secret_key.as_str();
    let receiver = Receiver::start(0, &[]).await;

    // The apps of Apple's examples; the AdAttributionKit one counts development postbacks.
    for (id, name, development) in [
        (525463029u64, "Example", false),
        (1499436635, "Legacy", false),
        (10738027756, "AAK", true),
    ] {
        let (status, app) = api(
            reqwest::Method::POST,
            &format!("{base}/v1/apps"),
            key,
            Some(json!({"app_store_id": id, "name": name, "count_development_postbacks": development})),
        )
        .await;
        assert_eq!(status, 201, "{app}");
    }
    let (status, partner) = api(
        reqwest::Method::POST,
        &format!("{base}/v1/partners"),
        key,
        Some(
            json!({"name": "Example network", "skan_ad_network_id": "com.example",
            "skan_postback_url": receiver.url("/skan")}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{partner}");
    let secret = partner["skan_secret"].as_str().unwrap().to_string();

    // Forged copies first: the fine 4.0 postback with another (signed) source identifier,
    // and with its signature re-encoded. Both are postbacks, kept, and never counted or
    // forwarded; nor do they keep the genuine one, sent next, from counting.
    let fine = example("4.0 fine");
    let mut changed = fine.clone();
    changed["source-identifier"] = json!("5230");
    let mut resigned = fine.clone();
    resigned["attribution-signature"] = json!(fine["attribution-signature"]
        .as_str()
        .unwrap()
        .replacen('M', "N", 1));
    for forged in [&changed, &resigned] {
        let (status, v) = post(&base, SKADNETWORK, forged).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["signature"], &v["counted"]),
            (&json!("invalid"), &json!(false))
        );
    }

    // Each version's example verifies. 2.2's transaction id is 3.0's (Apple's examples
    // share it): one purchase, one row.
    let cases = [
        ("4.0 fine", SKADNETWORK, "valid", "stored"),
        ("3.0 winner", SKADNETWORK, "valid", "stored"),
        ("3.0 non-winner", SKADNETWORK, "valid", "stored"),
        ("2.2", SKADNETWORK, "valid", "duplicate"),
        ("2.0", SKADNETWORK, "valid", "stored"),
        ("AdAttributionKit", APPATTRIBUTION, "development", "stored"),
    ];
    for (name, path, signature, status_word) in cases {
        let (status, v) = post(&base, path, &example(name)).await;
        assert_eq!(status, 200, "{name}: {v}");
        assert_eq!(
            (v["signature"].as_str(), v["status"].as_str(), &v["counted"]),
            (Some(signature), Some(status_word), &json!(true)),
            "{name}: {v}"
        );
    }

    // Apple retries; a network forwards the same postback; many copies at once, through both
    // doors: one is stored, every other is a duplicate.
    let coarse = example("4.0 coarse");
    let copies = (0..12).map(|i| {
        let (base, coarse) = (base.clone(), coarse.clone());
        async move {
            if i % 2 == 0 {
                post(&base, SKADNETWORK, &coarse).await
            } else {
                answer(
                    http()
                        .post(format!("{base}/v1/skan/postbacks"))
                        .bearer_auth(key)
                        .json(&coarse),
                )
                .await
            }
        }
    });
    let answers = futures_util::future::join_all(copies).await;
    let stored = answers
        .iter()
        .filter(|(_, v)| v["status"] == "stored")
        .count();
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(stored, 1, "{answers:?}");
    let (status, v) = post(&base, SKADNETWORK, &coarse).await;
    assert_eq!((status, &v["status"]), (200, &json!("duplicate")));

    // An app no tenant registered; another tenant forwarding this tenant's postback.
    let mut unknown = fine.clone();
    unknown["app-id"] = json!(1);
    let (status, v) = post(&base, SKADNETWORK, &unknown).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("not_found")),
        "{v}"
    );
    let other = env.tenant().await;
    let (status, _) = answer(
        http()
            .post(format!("{base}/v1/skan/postbacks"))
            .bearer_auth(&other.secret_key)
            .json(&example("4.0 fine")),
    )
    .await;
    assert_eq!(status, 404);

    // Bodies that are not postbacks, named by field.
    let mut bad_value = fine.clone();
    bad_value["conversion-value"] = json!(64);
    let mut bad_app = fine.clone();
    bad_app["app-id"] = json!("abc");
    for (body, field) in [
        (json!({}), "body"),
        (json!([1]), "body"),
        (bad_value, "conversion-value"),
        (bad_app, "app-id"),
        (json!({"jws-string": "a.b.c"}), "jws-string"),
    ] {
        let (status, v) = post(&base, SKADNETWORK, &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    let (status, _) = answer(http().post(format!("{base}{SKADNETWORK}")).body("not json")).await;
    assert_eq!(status, 400);

    // Stored: every postback read, once; counted: the verified ones.
    let rows = env
        .wait_for(
            "SELECT count() FROM skan_postbacks",
            7,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(rows, 7, "6 verified + 1 forged");
    // The figures' aggregate is written by a view during the same inserts, a moment later.
    env.wait_for(
        "SELECT sum(postbacks) FROM skan_daily",
        6,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        env.ch("SELECT signature, counted, count() FROM skan_postbacks GROUP BY signature, counted ORDER BY signature")
            .await,
        "development\t1\t1\ninvalid\t0\t1\nvalid\t1\t5\n"
    );
    let tid = coarse["transaction-id"].as_str().unwrap();
    assert_eq!(
        env.ch_u64(&format!(
            "SELECT count() FROM skan_postbacks WHERE transaction_id = '{tid}'"
        ))
        .await,
        1
    );
    // Whichever door the stored copy came through (the copies raced).
    let row = env
        .ch(&format!("SELECT framework, version, source_identifier, fine_value, coarse_value, receiver FROM skan_postbacks WHERE transaction_id = '{tid}'"))
        .await;
    assert!(
        ["skadnetwork\n", "ad_network\n"]
            .iter()
            .any(|receiver| row == format!("skadnetwork\t4.0\t39\t-1\thigh\t{receiver}")),
        "{row}"
    );

    // The campaign map: 4.0's hierarchical ids at two depths, 3.0's campaign id.
    let (status, map) = api(
        reqwest::Method::PUT,
        &format!("{base}/v1/skan/campaigns"),
        key,
        Some(json!({"campaigns": [
            {"ad_network_id": "com.example", "source_identifier": "39", "campaign": "summer"},
            {"ad_network_id": "com.example", "source_identifier": "5239", "campaign": "summer/us"},
            {"ad_network_id": "example123.skadnetwork", "source_identifier": "42", "campaign": "legacy"},
        ]})),
    )
    .await;
    assert_eq!(
        (status, map["campaigns"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let (status, v) = api(
        reqwest::Method::PUT,
        &format!("{base}/v1/skan/campaigns"),
        key,
        Some(json!({"campaigns": [{"ad_network_id": "x", "source_identifier": "12345", "campaign": "c"}]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["details"]["field"],
        "campaigns[0].source_identifier"
    );

    let (status, stats) = api(
        reqwest::Method::GET,
        &format!("{base}/v1/skan/stats?window=7d"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    let row = |network: &str, campaign: Value| -> Value {
        stats["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ad_network"] == network && r["campaign"] == campaign)
            .unwrap_or_else(|| panic!("no row {network} {campaign}: {stats}"))
            .clone()
    };
    assert_eq!(stats["rows"].as_array().unwrap().len(), 5, "{stats}");
    let us = row("com.example", json!("summer/us"));
    assert_eq!(
        (&us["installs"], &us["fine"]),
        (&json!(1), &json!({"63": 1}))
    );
    let summer = row("com.example", json!("summer"));
    assert_eq!(
        (&summer["installs"], &summer["coarse"]),
        (&json!(1), &json!({"low": 0, "medium": 0, "high": 1}))
    );
    let legacy = row("example123.skadnetwork", json!("legacy"));
    assert_eq!(
        (
            &legacy["installs"],
            &legacy["redownloads"],
            &legacy["non_winning_postbacks"]
        ),
        (&json!(0), &json!(1), &json!(1))
    );
    assert_eq!(legacy["fine"], json!({"20": 1}));
    let aak = row("development.adattributionkit", Value::Null);
    assert_eq!(
        (
            &aak["source_identifier"],
            &aak["re_engagements"],
            &aak["fine"]
        ),
        (&json!("1234"), &json!(1), &json!({"24": 1}))
    );
    assert_eq!(aak["by_sequence"][0]["postbacks"], 1);
    let v2 = row("KBD757YWX3.skadnetwork", Value::Null);
    assert_eq!(
        (&v2["source_identifier"], &v2["redownloads"]),
        (&json!("59"), &json!(1))
    );
    let (status, _) = api(
        reqwest::Method::GET,
        &format!("{base}/v1/skan/stats?window=7d"),
        &other.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The partner of com.example received the two verified 4.0 postbacks as sent, signed.
    eventually("forwarded copies", Duration::from_secs(20), || {
        let r = receiver.clone();
        async move { r.requests.lock().len() >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.requests.lock().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let mut tids: Vec<String> = Vec::new();
    for r in &got {
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/skan"));
        let sig = r.header("x-sluice-signature").expect("signed");
        let (t_part, v1) = sig.split_once(",v1=").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.{}", t_part.trim_start_matches("t="), r.body).as_bytes());
        assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        // The postback as it was sent, for the partner to check Apple's signature itself.
        let sent = [&fine, &coarse]
            .into_iter()
            .find(|e| e["transaction-id"] == body["transaction-id"])
            .expect("a verified com.example postback");
        assert_eq!(&body, sent);
        tids.push(body["transaction-id"].as_str().unwrap().to_string());
    }
    tids.sort();
    assert_eq!(
        tids,
        [
            fine["transaction-id"].as_str().unwrap(),
            coarse["transaction-id"].as_str().unwrap()
        ]
    );
    assert!(
        metric(
            &base,
            "sluice_skan_postbacks_total{result=\"stored\",counted=\"true\"}"
        )
        .await
            >= 5.0
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_belong_to_one_tenant_at_a_time() {
    let env = TestEnv::new();
    let server = env.start().await;
    let base = base(&server);
    let (a, b) = (env.tenant().await, env.tenant().await);
    let create = |key: String, body: Value| {
        let base = base.clone();
        async move {
            api(
                reqwest::Method::POST,
                &format!("{base}/v1/apps"),
                &key,
                Some(body),
            )
            .await
        }
    };
    let (status, app) = create(
        a.secret_key.clone(),
        json!({"app_store_id": "123456789", "name": "Game"}),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(
        (&app["app_store_id"], &app["count_development_postbacks"]),
        (&json!(123456789), &json!(false))
    );
    let id = app["id"].as_str().unwrap().to_string();
    let (status, v) = create(
        b.secret_key.clone(),
        json!({"app_store_id": 123456789, "name": "Mine"}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["details"]["field"], "app_store_id");
    for (body, field) in [
        (json!({"name": "x"}), "app_store_id"),
        (json!({"app_store_id": "x", "name": "x"}), "app_store_id"),
        (json!({"app_store_id": 5}), "name"),
        (
            json!({"app_store_id": 5, "name": "x", "bundle_id": "y"}),
            "bundle_id",
        ),
    ] {
        let (status, v) = create(a.secret_key.clone(), body).await;
        assert_eq!(
            (status, &v["error"]["details"]["field"]),
            (400, &json!(field)),
            "{v}"
        );
    }
    let list = |key: String| {
        let base = base.clone();
        async move {
            api(reqwest::Method::GET, &format!("{base}/v1/apps"), &key, None)
                .await
                .1
        }
    };
    assert_eq!(
        list(a.secret_key.clone()).await["apps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(list(b.secret_key.clone()).await["apps"], json!([]));
    let (status, _) = api(
        reqwest::Method::GET,
        &format!("{base}/v1/apps/{id}"),
        &b.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 404, "another tenant's app is not found");
    let (status, _) = api(
        reqwest::Method::DELETE,
        &format!("{base}/v1/apps/{id}"),
        &b.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api(
        reqwest::Method::DELETE,
        &format!("{base}/v1/apps/{id}"),
        &a.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, v) = create(
        b.secret_key.clone(),
        json!({"app_store_id": 123456789, "name": "Mine"}),
    )
    .await;
    assert_eq!(status, 201, "free once deleted: {v}");

    // Both tenants racing for one id: one registration wins, every other is a conflict.
    let racing = (0..8).map(|i| {
        let key = [&a, &b][i % 2].secret_key.clone();
        create(
            key,
            json!({"app_store_id": 987654321, "name": format!("racer {i}")}),
        )
    });
    let answers = futures_util::future::join_all(racing).await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 409),
        "{answers:?}"
    );
    let listed = list(a.secret_key.clone()).await["apps"]
        .as_array()
        .unwrap()
        .len()
        + list(b.secret_key.clone()).await["apps"]
            .as_array()
            .unwrap()
            .len();
    assert_eq!(
        listed, 2,
        "the winner's app and 123456789, nothing of the losers"
    );
    server.shutdown().await;
}
