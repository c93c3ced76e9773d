//! Webhook sources and `POST /w/{token}` against real Redis and ClickHouse: the default source,
//! source lifecycle and isolation, per-item validation, idempotency under concurrency, refunds,
//! attribution through the user's install, and unattributed conversions kept for audit.

use serde_json::{json, Value};
use sluice::store::redis::NewTenant;
use sluice_testkit::*;

struct Ctx {
    env: TestEnv,
    server: sluice::server::Server,
    tenant: NewTenant,
    code: String,
}

impl Ctx {
    async fn new() -> Ctx {
        let env = TestEnv::new();
        let server = env.start().await;
        let tenant = env.tenant().await;
        let code = unique("cv");
        create_link(
            &server,
            &tenant.secret_key,
            json!({
                "id": code, "destination": "https://x.example/p?c={click_id}",
                "campaign": "summer", "source": "meta", "medium": "cpc"
            }),
        )
        .await;
        Ctx {
            env,
            server,
            tenant,
            code,
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        api(method, &format!("{}{path}", base(&self.server)), key, None).await
    }

    /// A webhook path of the tenant's default source.
    async fn default_webhook(&self, key: &str) -> String {
        let url = default_webhook_url(&base(&self.server), key).await;
        path_of(&json!({ "webhook_url": url }))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = http()
            .post(format!("{}{path}", base(&self.server)))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A user bound to an install attributed to a click on the context's link.
    async fn attributed_user(&self, user: &str) {
        let install = format!("inst-{user}");
        attributed_install(
            &self.env,
            &self.server,
            &self.tenant.publishable_key,
            &self.code,
            &install,
        )
        .await;
        let resp = http()
            .put(format!("{}/v1/attribution/link", base(&self.server)))
            .bearer_auth(&self.tenant.publishable_key)
            .json(&json!({ "install_id": install, "user_id": user }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// The tenant's conversions matching `sql_where`, once at least `want` are stored (or
    /// after 20 s): an answered conversion is durable, and may reach ClickHouse through the
    /// spill a moment later.
    async fn rows(&self, sql_where: &str, want: usize) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let rows = self.rows_now(sql_where).await;
            if rows.len() >= want || started.elapsed() > std::time::Duration::from_secs(20) {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn rows_now(&self, sql_where: &str) -> Vec<Value> {
        let out = self
            .env
            .ch(&format!(
                "SELECT user_id, type, amount_cents, currency, idempotency_key, metadata, attributed, \
                 install_id, link_id, campaign, source, medium, source_id FROM conversions \
                 WHERE tenant_id = '{}' AND {sql_where} ORDER BY ts_ms, conversion_id FORMAT JSONCompact",
                self.tenant.tenant_id
            ))
            .await;
        let v: Value = serde_json::from_str(&out).unwrap();
        v["data"].as_array().unwrap().clone()
    }
}

fn path_of(source: &Value) -> String {
    let url = source["webhook_url"].as_str().unwrap();
    let path = &url[url.find("/w/").expect("a /w/ URL")..];
    let token = &path[3..];
    assert_eq!(token.len(), 64, "256-bit token");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    path.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_lifecycle_and_isolation() {
    let ctx = Ctx::new().await;
    let sk = ctx.tenant.secret_key.clone();
    let (status, v) = ctx.api(reqwest::Method::GET, "/v1/sources", &sk).await;
    assert_eq!(status, 200);
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "the default source is provisioned: {v}");
    assert_eq!(sources[0]["name"], "default");
    assert_eq!(sources[0]["source_type"], "custom");
    // A webhook URL is a credential: shown once, when made; listings show its first characters.
    assert!(sources[0].get("webhook_url").is_none(), "{v}");
    assert!(sources[0]["webhook_url_hint"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{}/w/", ctx.server.addr)));
    for field in ["id", "created_at"] {
        assert!(sources[0][field].is_string(), "{field}");
    }
    // Listing again provisions nothing more.
    let (_, again) = ctx.api(reqwest::Method::GET, "/v1/sources", &sk).await;
    assert_eq!(again["sources"], v["sources"]);

    let resp = http()
        .post(format!("{}/v1/sources", base(&ctx.server)))
        .bearer_auth(&sk)
        .json(&json!({"name": "backend-deposits", "source_type": "custom"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let path = path_of(&created);
    let (status, got) = ctx
        .api(reqwest::Method::GET, &format!("/v1/sources/{id}"), &sk)
        .await;
    assert_eq!(status, 200);
    let mut shown_once = created.clone();
    let url = shown_once
        .as_object_mut()
        .unwrap()
        .remove("webhook_url")
        .unwrap();
    assert_eq!(got, shown_once);
    let hint = got["webhook_url_hint"]
        .as_str()
        .unwrap()
        .trim_end_matches('…');
    assert!(url.as_str().unwrap().starts_with(hint), "{url} {hint}");
    // Rotating gives a new URL and retires the old one at once.
    let old_path = ctx.default_webhook(&sk).await;
    let new_path = ctx.default_webhook(&sk).await;
    assert_ne!(old_path, new_path);
    let (status, _) = ctx
        .post(&old_path, json!({"user_id": "u", "type": "t"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = ctx
        .post(&new_path, json!({"user_id": "u", "type": "t"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = ctx
        .api(reqwest::Method::POST, "/v1/sources/nope/rotate", &sk)
        .await;
    assert_eq!(status, 404);
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "source_type": "stripe"}), "source_type"),
        (json!({"name": "x", "colour": "red"}), "colour"),
    ] {
        let resp = http()
            .post(format!("{}/v1/sources", base(&ctx.server)))
            .bearer_auth(&sk)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["details"]["field"], field);
    }

    // Another tenant sees none of it; the publishable key may not manage sources.
    let other = ctx.env.tenant().await;
    let (status, _) = ctx
        .api(
            reqwest::Method::GET,
            &format!("/v1/sources/{id}"),
            &other.secret_key,
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = ctx
        .api(reqwest::Method::GET, "/v1/sources", &other.secret_key)
        .await;
    assert_eq!(theirs["sources"].as_array().unwrap().len(), 1);
    assert_ne!(theirs["sources"][0]["id"], sources[0]["id"]);
    let (status, _) = ctx
        .api(
            reqwest::Method::DELETE,
            &format!("/v1/sources/{id}"),
            &other.secret_key,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = ctx
        .api(
            reqwest::Method::GET,
            "/v1/sources",
            &ctx.tenant.publishable_key,
        )
        .await;
    assert_eq!(status, 403);

    // A conversion through the source, then the source deleted: its URL is gone, its
    // history stays.
    let (status, v) = ctx
        .post(&path, json!({"user_id": "nobody", "type": "signup"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = ctx
        .api(reqwest::Method::DELETE, &format!("/v1/sources/{id}"), &sk)
        .await;
    assert_eq!(status, 204);
    let (status, _) = ctx
        .api(reqwest::Method::GET, &format!("/v1/sources/{id}"), &sk)
        .await;
    assert_eq!(status, 404);
    let (status, v) = ctx
        .post(&path, json!({"user_id": "nobody", "type": "signup"}))
        .await;
    assert_eq!(status, 404, "{v}");
    let kept = ctx.rows(&format!("source_id = '{id}'"), 1).await;
    assert_eq!(kept.len(), 1);
    for bad in ["/w/unknown", &format!("/w/{}", "a".repeat(64))] {
        let (status, _) = ctx.post(bad, json!({"user_id": "u", "type": "t"})).await;
        assert_eq!(status, 404, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_count_once() {
    let ctx = Ctx::new().await;
    ctx.attributed_user("usr_1").await;
    let path = ctx.default_webhook(&ctx.tenant.secret_key).await;
    let body = json!({
        "user_id": "usr_1", "type": "deposit", "amount_cents": 10000, "currency": "usd",
        "idempotency_key": "tx_550e8400", "metadata": {"tx_hash": "0xabc"}
    });
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let (url, body) = (format!("{}{path}", base(&ctx.server)), body.clone());
            tokio::spawn(async move {
                let resp = http().post(url).json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut totals = [0u64; 4];
    for r in racers {
        let v = r.await.unwrap();
        for (i, k) in ["accepted", "deduped", "unattributed", "failed"]
            .iter()
            .enumerate()
        {
            totals[i] += v[k].as_u64().unwrap();
        }
    }
    assert_eq!(totals, [1, 19, 0, 0]);
    let rows = ctx.rows("1", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0],
        json!([
            "usr_1",
            "deposit",
            "10000",
            "USD",
            "tx_550e8400",
            r#"{"tx_hash":"0xabc"}"#,
            1,
            "inst-usr_1",
            ctx.code,
            "summer",
            "meta",
            "cpc",
            rows[0][12]
        ])
    );
    // Later retries are deduped too; the same key in another tenant is its own.
    let (_, v) = ctx.post(&path, body.clone()).await;
    assert_eq!(
        (v["accepted"].as_u64(), v["deduped"].as_u64()),
        (Some(0), Some(1))
    );
    let other = ctx.env.tenant().await;
    let theirs = ctx.default_webhook(&other.secret_key).await;
    let (_, v) = ctx.post(&theirs, body).await;
    assert_eq!(v["unattributed"], 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_fail_alone_and_refunds_sum() {
    let ctx = Ctx::new().await;
    ctx.attributed_user("usr_2").await;
    let path = ctx.default_webhook(&ctx.tenant.secret_key).await;
    let (status, v) = ctx
        .post(
            &path,
            json!([
                {"user_id": "usr_2", "type": "purchase", "amount_cents": 10000, "currency": "USD"},
                {"user_id": "usr_2", "type": "purchase", "amount_cents": -2500, "currency": "usd", "idempotency_key": "refund-1"},
                {"user_id": "usr_2", "type": "purchase", "amount_cents": 700},
                {"user_id": "usr_2", "type": "purchase", "amount_cents": -2500, "currency": "USD", "idempotency_key": "refund-1"},
                {"user_id": "usr_2", "type": "signup"},
                {"user_id": "stranger", "type": "purchase", "amount_cents": 999, "currency": "EUR"},
                {"type": "purchase"},
                "not an object"
            ]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            &v["accepted"],
            &v["deduped"],
            &v["unattributed"],
            &v["failed"]
        ),
        (&json!(3), &json!(1), &json!(1), &json!(3))
    );
    let results = v["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "accepted",
            "accepted",
            "failed",
            "deduped",
            "accepted",
            "unattributed",
            "failed",
            "failed"
        ]
    );
    assert_eq!(results[2]["error"]["field"], "currency");
    assert_eq!(results[6]["error"]["field"], "user_id");
    assert!(results[7]["error"]["field"].is_null());
    assert!(results[0]["conversion_id"].is_string());

    assert_eq!(
        ctx.rows("1", 4).await.len(),
        4,
        "3 accepted + 1 unattributed"
    );
    let sums = ctx
        .env
        .ch(&format!(
            "SELECT type, currency, count(), sum(amount_cents) FROM conversions \
             WHERE tenant_id = '{}' AND attributed = 1 GROUP BY type, currency ORDER BY type, currency",
            ctx.tenant.tenant_id
        ))
        .await;
    assert_eq!(sums, "purchase\tUSD\t2\t7500\nsignup\t\t1\t0\n");
    // The stranger's conversion is kept for audit, unattributed and with no install.
    let audit = ctx.rows("user_id = 'stranger'", 1).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0][6], 0);
    assert_eq!(audit[0][7], "");

    // Whole-body problems: malformed JSON 400, more than 1,000 items 413.
    let resp = http()
        .post(format!("{}{path}", base(&ctx.server)))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"user_id": "u", "type": "t"}))
        .collect();
    let (status, _) = ctx.post(&path, json!(many)).await;
    assert_eq!(status, 413);
    let (status, _) = ctx.post(&path, json!(5)).await;
    assert_eq!(status, 400);
}

/// A source stored before webhook tokens were hashed keeps working: its first conversion
/// moves it under the token's hash, and the token is no longer kept anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_from_before_hashing_keep_their_url() {
    let ctx = Ctx::new().await;
    let tenant = ctx.tenant.tenant_id.clone();
    let token = "ab".repeat(32);
    let mut c = redis_conn().await;
    let prefix = &ctx.env.prefix;
    let record = json!({"id": "legacy1", "name": "old", "source_type": "custom", "token": token, "created_at": "2026-01-01T00:00:00.000Z"});
    let _: () = ::redis::AsyncCommands::hset(
        &mut c,
        format!("{prefix}:{{t:{tenant}}}:sources"),
        "legacy1",
        record.to_string(),
    )
    .await
    .unwrap();
    let _: () = ::redis::AsyncCommands::set(
        &mut c,
        format!("{prefix}:webhook:{token}"),
        json!({"tenant_id": tenant, "source_id": "legacy1"}).to_string(),
    )
    .await
    .unwrap();
    let (status, v) = ctx
        .post(
            &format!("/w/{token}"),
            json!({"user_id": "u", "type": "signup"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = ctx
        .post(
            &format!("/w/{token}"),
            json!({"user_id": "u", "type": "signup"}),
        )
        .await;
    assert_eq!(status, 200, "still served, now by its hash");
    let keys: Vec<String> = ::redis::AsyncCommands::keys(&mut c, format!("{prefix}:webhook:*"))
        .await
        .unwrap();
    assert!(keys.iter().all(|k| !k.contains(&token)), "{keys:?}");
    let stored: String = ::redis::AsyncCommands::hget(
        &mut c,
        format!("{prefix}:{{t:{tenant}}}:sources"),
        "legacy1",
    )
    .await
    .unwrap();
    assert!(!stored.contains(&token), "{stored}");
    let (_, one) = ctx
        .api(
            reqwest::Method::GET,
            "/v1/sources/legacy1",
            &ctx.tenant.secret_key,
        )
        .await;
    assert!(
        one["webhook_url_hint"]
            .as_str()
            .unwrap()
            .ends_with("/w/abababab…"),
        "{one}"
    );
}
