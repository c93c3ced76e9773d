//! Outbound delivery against real Redis and ClickHouse and a real local HTTP receiver: partner
//! postbacks with the partner's own click id, subs and (only when shared) revenue; retries
//! until the receiver accepts; signed webhooks verified by an independent HMAC; the SSRF
//! guard; and deliveries surviving SIGKILL.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sluice_testkit::receiver::Receiver;
use sluice_testkit::*;

const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";

/// HMAC written out from RFC 2104 over a plain hash (SHA-256 and SHA-1 both have 64-byte
/// blocks), independent of the `hmac` crate the server signs with.
fn hmac<D: Digest>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        let digest = D::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = D::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = D::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::<Sha256>(key, message)
}

fn config(env: &TestEnv) -> sluice::config::Config {
    let mut c = env.config();
    c.delivery.allow_private_targets = true;
    c.delivery.retry_base_ms = 100;
    c
}

/// An API call on `server`'s `path`.
async fn call(
    server: &sluice::server::Server,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api(method, &format!("{}{path}", base(server)), key, body).await
}

/// A click on `code` with the partner's click id and subs; the install it attributes.
async fn click_and_install(
    env: &TestEnv,
    server: &sluice::server::Server,
    pk: &str,
    code: &str,
    install: &str,
) {
    let resp = http()
        .get(format!(
            "{}/{code}?click_id=partner-77&sub1=video&sub2=a%20b",
            base(server)
        ))
        .header("user-agent", ANDROID)
        .send()
        .await
        .unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let click = sluice::click::ClickId::parse(&loc[loc.len() - 36..]).unwrap();
    env.wait_for_click(click.0).await;
    let resp = http()
        .post(format!("{}/v1/attribution/install", base(server)))
        .bearer_auth(pk)
        .json(&json!({"install_id": install, "platform": "android", "click_id": click.to_string()}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["match_type"], "click_id", "{v}");
}

fn query_of(target: &str) -> std::collections::BTreeMap<String, String> {
    let q = target.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_postbacks_are_filled_retried_and_share_revenue_only_when_told() {
    let env = TestEnv::new();
    let server = sluice::server::Server::start(config(&env)).await.unwrap();
    let t = env.tenant().await;
    // The receiver fails the first attempt.
    let receiver = Receiver::start(0, &[500]).await;
    let template = receiver.url("/pb?cid={click_id}&e={event}&s1={sub1}&s2={sub2}&r={revenue}&c={currency}&m={match_type}&camp={campaign}");
    let (status, partner) = call(&server, reqwest::Method::POST, "/v1/partners", &t.secret_key, Some(json!({
        "name": "Net", "postbacks": {"install": template, "purchase": template}, "share_revenue": false
    }))).await;
    assert_eq!(status, 201, "{partner}");
    let pid = partner["id"].as_str().unwrap().to_string();
    let code = unique("pb");
    create_link(&server, &t.secret_key, json!({
        "id": code, "destination": "https://x.example/p?c={click_id}", "campaign": "spring", "partner_id": pid
    })).await;
    click_and_install(&env, &server, &t.publishable_key, &code, "dev-pb").await;

    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2, "one failed attempt, then the retry: {got:?}");
    for r in &got {
        assert_eq!(r.method, "GET");
        let q = query_of(&r.target);
        assert_eq!(q["cid"], "partner-77", "the partner's own click id");
        assert_eq!(
            (q["e"].as_str(), q["s1"].as_str(), q["s2"].as_str()),
            ("install", "video", "a b")
        );
        assert_eq!(
            (q["m"].as_str(), q["camp"].as_str(), q["r"].as_str()),
            ("click_id", "spring", "")
        );
    }
    assert_eq!(
        got[0].header("x-sluice-delivery-id"),
        got[1].header("x-sluice-delivery-id")
    );
    // The attempts are listed, newest first.
    let (_, log) = call(
        &server,
        reqwest::Method::GET,
        &format!("/v1/partners/{pid}/deliveries"),
        &t.secret_key,
        None,
    )
    .await;
    let log = log["deliveries"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["response_code"].as_u64()),
        (Some("delivered"), Some(200))
    );
    assert_eq!(
        (log[1]["status"].as_str(), log[1]["response_code"].as_u64()),
        (Some("retrying"), Some(500))
    );

    // Conversions of the install's user: revenue only once the partner is told to share it.
    let bind = http()
        .put(format!("{}/v1/attribution/link", base(&server)))
        .bearer_auth(&t.publishable_key)
        .json(&json!({"install_id": "dev-pb", "user_id": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bind.status(), 200);
    let hook = default_webhook_url(&base(&server), &t.secret_key).await;
    let convert = |key: &'static str| {
        http().post(hook.clone()).json(&json!({"user_id": "u1", "type": "purchase", "amount_cents": 1050, "currency": "usd", "idempotency_key": key})).send()
    };
    assert_eq!(convert("k1").await.unwrap().status(), 200);
    let got = receiver.wait_for(3).await;
    let q = query_of(&got[2].target);
    assert_eq!(
        (q["e"].as_str(), q["r"].as_str(), q["c"].as_str()),
        ("purchase", "", "")
    );
    let (status, _) = call(
        &server,
        reqwest::Method::PATCH,
        &format!("/v1/partners/{pid}"),
        &t.secret_key,
        Some(json!({"share_revenue": true})),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await; // partners are cached for 2 s
    assert_eq!(convert("k2").await.unwrap().status(), 200);
    let got = receiver.wait_for(4).await;
    let q = query_of(&got[3].target);
    assert_eq!((q["r"].as_str(), q["c"].as_str()), ("10.50", "USD"));
    // A server-to-server event of the install fires the template of its (lower-cased) name,
    // with the revenue its payload carries.
    let resp = http()
        .post(format!("{}/v1/events", base(&server)))
        .basic_auth(&t.tenant_id, Some(&t.secret_key))
        .json(&json!({"events": [{
            "event_name": "Purchase", "payload": {"amount": "9.99", "currency": "EUR"},
            "event_datetime": sluice::time::rfc3339_from_ms(sluice::time::now_ms()),
            "event_id": "6f1c1a52-1b1e-4c38-9a0e-3c8f1f0b9d11", "installation_id": "dev-pb"
        }]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let got = receiver.wait_for(5).await;
    let q = query_of(&got[4].target);
    assert_eq!(
        (
            q["e"].as_str(),
            q["r"].as_str(),
            q["c"].as_str(),
            q["cid"].as_str()
        ),
        ("purchase", "9.99", "EUR", "partner-77")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_keep_their_event_id_across_retries() {
    let env = TestEnv::new();
    let server = sluice::server::Server::start(config(&env)).await.unwrap();
    let t = env.tenant().await;
    let receiver = Receiver::start(0, &[503, 500]).await;
    let (status, created) = call(
        &server,
        reqwest::Method::POST,
        "/v1/webhooks",
        &t.secret_key,
        Some(json!({
            "url": receiver.url("/hooks"), "events": ["conversion"]
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let (_, listed) = call(
        &server,
        reqwest::Method::GET,
        "/v1/webhooks",
        &t.secret_key,
        None,
    )
    .await;
    assert!(
        listed["webhooks"][0]["secret"].is_null(),
        "the secret is shown once"
    );

    let hook = default_webhook_url(&base(&server), &t.secret_key).await;
    let resp = http()
        .post(hook)
        .json(&json!({"user_id": "nobody", "type": "signup", "metadata": {"plan": "pro"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "two failures, then delivered");
    let mut ids = BTreeSet::new();
    for r in &got {
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/hooks"));
        let sig = r.header("x-sluice-signature").expect("signed");
        let (t_part, v1) = sig.split_once(",v1=").unwrap();
        let unix = t_part.strip_prefix("t=").unwrap();
        let want = hmac_sha256(secret.as_bytes(), format!("{unix}.{}", r.body).as_bytes());
        assert_eq!(v1, hex::encode(want), "signature verifies independently");
        let now = sluice::time::now_ms() / 1000;
        assert!(now.abs_diff(unix.parse().unwrap()) < 60);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], "conversion");
        assert_eq!(body["data"]["type"], "signup");
        assert_eq!(body["data"]["metadata"]["plan"], "pro");
        assert_eq!(body["data"]["attributed"], false);
        ids.insert(body["event_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one event id across retries: {ids:?}");
    // A tampered body does not verify.
    let r = &got[2];
    let (t_part, v1) = r
        .header("x-sluice-signature")
        .unwrap()
        .split_once(",v1=")
        .unwrap();
    let forged = hmac_sha256(
        secret.as_bytes(),
        format!("{}.{}x", &t_part[2..], r.body).as_bytes(),
    );
    assert_ne!(v1, hex::encode(forged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed_and_input_is_checked() {
    let env = TestEnv::new();
    let server = env.start().await; // private targets not allowed
    let t = env.tenant().await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "ftp://x.example/",
    ] {
        let (status, v) = call(
            &server,
            reqwest::Method::POST,
            "/v1/webhooks",
            &t.secret_key,
            Some(json!({"url": url, "events": ["install"]})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {v}");
        assert_eq!(v["error"]["details"]["field"], "url");
    }
    let (status, v) = call(
        &server,
        reqwest::Method::POST,
        "/v1/webhooks",
        &t.secret_key,
        Some(json!({"url": "https://hooks.example.com/x", "events": ["clicks"]})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["details"]["field"].as_str()),
        (400, Some("events"))
    );
    for (body, field) in [
        (
            json!({"name": "n", "postbacks": {"install": "https://n.example/?c={clickid}"}}),
            "postbacks.install",
        ),
        (
            json!({"name": "n", "postbacks": {"install": "not a url"}}),
            "postbacks.install",
        ),
        (json!({"postbacks": {}}), "name"),
        (
            json!({"name": "n", "share_revenue": "yes"}),
            "share_revenue",
        ),
        (json!({"name": "n", "colour": 1}), "colour"),
    ] {
        let (status, v) = call(
            &server,
            reqwest::Method::POST,
            "/v1/partners",
            &t.secret_key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, v["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
    let (status, p) = call(
        &server,
        reqwest::Method::POST,
        "/v1/partners",
        &t.secret_key,
        Some(json!({"id": "net-1", "name": "Net"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let other = env.tenant().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/partners/net-1"),
        (reqwest::Method::DELETE, "/v1/partners/net-1"),
        (reqwest::Method::GET, "/v1/partners/net-1/deliveries"),
    ] {
        let (status, _) = call(&server, method, path, &other.secret_key, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, list) = call(
        &server,
        reqwest::Method::GET,
        "/v1/partners",
        &other.secret_key,
        None,
    )
    .await;
    assert_eq!(list["partners"], json!([]));
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        "/v1/partners",
        &t.publishable_key,
        None,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_sigkill() {
    let env = TestEnv::new();
    let port = free_port();
    let extra = [
        ("SLUICE_ALLOW_PRIVATE_TARGETS", "true".to_string()),
        ("SLUICE_DELIVERY_RETRY_BASE_MS", "200".to_string()),
    ];
    let node = Process::start(&env, port, &extra).await;
    let t = env.tenant().await;
    // The receiver is not up yet: every attempt fails and is rescheduled.
    let receiver_port = free_port();
    let hooks = format!("http://127.0.0.1:{receiver_port}/hooks");
    let resp = http()
        .post(format!("{}/v1/webhooks", node.base))
        .bearer_auth(&t.secret_key)
        .json(&json!({"url": hooks, "events": ["conversion"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let webhook: Value = resp.json().await.unwrap();
    let log = format!(
        "{}/v1/webhooks/{}/deliveries",
        node.base,
        webhook["id"].as_str().unwrap()
    );
    let hook = default_webhook_url(&node.base, &t.secret_key).await;
    let items: Vec<Value> = (0..25)
        .map(|i| json!({"user_id": format!("u{i}"), "type": "signup"}))
        .collect();
    let resp = http().post(&hook).json(&items).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually(
        "some attempts failed and were rescheduled",
        Duration::from_secs(10),
        || async {
            let (_, log) = api(reqwest::Method::GET, &log, &t.secret_key, None).await;
            log["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e["status"] == "retrying"))
        },
    )
    .await;
    assert!(node.signal("KILL").await.code().is_none());

    let receiver = Receiver::start(receiver_port, &[]).await;
    let node = Process::start(&env, port, &extra).await;
    let started = std::time::Instant::now();
    let ids = loop {
        let ids: BTreeSet<String> = receiver
            .received()
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if ids.len() >= 25 || started.elapsed() > Duration::from_secs(60) {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ids.len(), 25, "every delivery arrived after the restart");
    node.signal("TERM").await;
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::<sha1::Sha1>(key, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_arrive_in_signed_batches_of_100() {
    let env = TestEnv::new();
    let server = sluice::server::Server::start(config(&env)).await.unwrap();
    let t = env.tenant().await;
    let receiver = Receiver::start(0, &[]).await;
    let (status, cfg) = call(&server, reqwest::Method::PATCH, "/v1/attribution/config", &t.secret_key, Some(json!({
        "report_webhook_url": receiver.url("/reports"), "report_signature_header": "X-SLM-Signature"
    }))).await;
    assert_eq!(status, 200, "{cfg}");
    // The first PATCH generated the secret and shows it, once.
    let secret = cfg["report_signing_secret"].as_str().unwrap().to_string();

    // 250 matched spring installs, plus organic ones and another campaign's, in the window.
    let now = sluice::time::now_ms();
    let tid = &t.tenant_id;
    let day = |ms: u64| sluice::time::date_string((ms / 86_400_000) as u16);
    let mut rows: Vec<String> = (0..250)
        .map(|i| {
            let ts = now - 86_400_000 - i * 60_000;
            format!(
                "(toDate('{}'), {ts}, '{tid}', 'r-{i:03}', 'click_id', 'spring', 'fb', {})",
                day(ts),
                ts - 3_600_000
            )
        })
        .collect();
    rows.extend((0..20).map(|i| {
        format!(
            "(toDate('{}'), {now}, '{tid}', 'o-{i}', 'organic', 'spring', '', 0)",
            day(now)
        )
    }));
    rows.extend((0..7).map(|i| {
        format!(
            "(toDate('{}'), {now}, '{tid}', 'f-{i}', 'fingerprint', 'fall', 'tt', 0)",
            day(now)
        )
    }));
    env.ch(&format!("INSERT INTO installs (date, ts_ms, tenant_id, install_id, match_type, campaign, source, click_ts_ms) VALUES {}", rows.join(","))).await;
    env.ch(&format!(
        "INSERT INTO conversions (date, ts_ms, tenant_id, user_id, type, amount_cents, currency, install_id, attributed) VALUES \
         (toDate('{d}'), {now}, '{tid}', 'u7', 'purchase', 1000, 'USD', 'r-007', 1), (toDate('{d}'), {now}, '{tid}', 'u7', 'purchase', -250, 'USD', 'r-007', 1)",
        d = day(now)
    )).await;

    let today = (now / 86_400_000) as u16;
    let range = json!({"start_date": sluice::time::date_string(today - 30), "end_date": sluice::time::date_string(today), "campaign_id": "spring"});
    let (status, created) = call(
        &server,
        reqwest::Method::POST,
        "/v1/attribution/reports",
        &t.secret_key,
        Some(range),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["status"].as_str(),
            created["campaign_scope"].as_str()
        ),
        (Some("created"), Some("spring"))
    );
    assert_eq!(
        created["response_webhooks"],
        json!([receiver.url("/reports")])
    );
    let id = created["id"].as_str().unwrap().to_string();

    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "⌈250/100⌉ batches");
    let mut indexes = BTreeSet::new();
    let mut installs = BTreeSet::new();
    for r in &got {
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/reports"));
        let sig = r
            .header("x-slm-signature")
            .expect("signed under the configured header");
        assert_eq!(
            sig,
            hex::encode(hmac_sha1(secret.as_bytes(), r.body.as_bytes())),
            "HMAC-SHA1 of the raw body"
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (body["total_batches"].as_u64(), body["campaign_id"].as_str()),
            (Some(3), Some("spring"))
        );
        indexes.insert(body["batch_index"].as_u64().unwrap());
        let data = body["attribution_data"].as_array().unwrap();
        assert!(data.len() <= 100);
        for m in data {
            assert_eq!(
                (m["campaign_id"].as_str(), m["match_type"].as_str()),
                (Some("spring"), Some("click_id"))
            );
            assert_eq!(
                m["ctit_seconds"],
                json!(null),
                "no click id stored in these rows"
            );
            installs.insert(m["install_id"].as_str().unwrap().to_string());
            if m["install_id"] == "r-007" {
                assert_eq!(
                    (
                        m["conversion_count"].as_u64(),
                        m["revenue"]["USD"].as_i64(),
                        m["user_id"].as_str()
                    ),
                    (Some(2), Some(750), Some("u7"))
                );
            }
        }
    }
    assert_eq!(indexes, BTreeSet::from([0, 1, 2]));
    assert_eq!(installs.len(), 250);
    // Progress reaches delivered.
    let started = std::time::Instant::now();
    loop {
        let (_, v) = call(
            &server,
            reqwest::Method::GET,
            &format!("/v1/attribution/reports/{id}"),
            &t.secret_key,
            None,
        )
        .await;
        if v["status"] == "delivered" {
            assert_eq!(
                (
                    v["total_batches"].as_u64(),
                    v["delivered_batches"].as_u64(),
                    v["matches"].as_u64()
                ),
                (Some(3), Some(3), Some(250))
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Windows past 180 days, reversed or malformed are refused.
    for (body, field) in [
        (
            json!({"start_date": "2026-01-01", "end_date": "2026-06-30"}),
            None,
        ),
        (
            json!({"start_date": "2026-01-01", "end_date": "2026-07-01"}),
            Some("end_date"),
        ),
        (
            json!({"start_date": "2026-03-02", "end_date": "2026-03-01"}),
            Some("end_date"),
        ),
        (
            json!({"start_date": "01/01/2026", "end_date": "2026-03-01"}),
            Some("start_date"),
        ),
    ] {
        let (status, v) = call(
            &server,
            reqwest::Method::POST,
            "/v1/attribution/reports",
            &t.secret_key,
            Some(body.clone()),
        )
        .await;
        match field {
            None => assert_eq!(status, 201, "{body}: {v}"),
            Some(f) => assert_eq!(
                (status, v["error"]["details"]["field"].as_str()),
                (400, Some(f)),
                "{body}: {v}"
            ),
        }
    }
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        "/v1/attribution/reports/rep_nope",
        &t.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A test send reports what the receiver answered.
    let answering = Receiver::start(0, &[202]).await;
    call(
        &server,
        reqwest::Method::PATCH,
        "/v1/attribution/config",
        &t.secret_key,
        Some(json!({"report_webhook_url": answering.url("/r")})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_100)).await; // settings are cached for 2 s
    let (status, v) = call(
        &server,
        reqwest::Method::POST,
        "/v1/attribution/reports/test",
        &t.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["delivered"].as_bool(), v["status_code"].as_u64()),
        (Some(true), Some(202)),
        "{v}"
    );
    let sent = answering.received();
    let body: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(
        (
            body["attribution_data"].as_array().map(Vec::len),
            body["total_batches"].as_u64()
        ),
        (Some(0), Some(1))
    );
}
