//! Install attribution over HTTP against real Redis and ClickHouse: the deferred-match race,
//! click-id, referrer, fingerprint, metadata and organic resolution, windows, tenants, bad
//! input, and the user binding.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::click::ClickId;
use sluice_testkit::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const WINDOW_MS: u64 = 2 * 3_600_000;

struct Ctx {
    env: TestEnv,
    server: sluice::server::Server,
    key: String,
    secret: String,
    code: String,
}

impl Ctx {
    async fn new() -> Ctx {
        let env = TestEnv::new();
        let server = env.start().await;
        let t = env.tenant().await;
        let code = unique("app");
        create_link(
            &server,
            &t.secret_key,
            json!({
                "id": code,
                "destination": "https://x.example/p?c={click_id}",
                "ios_destination": "https://apps.apple.com/app/id1?ct={click_id}",
                "campaign": "launch", "source": "fb", "medium": "cpc"
            }),
        )
        .await;
        Ctx {
            env,
            server,
            key: t.publishable_key,
            secret: t.secret_key,
            code,
        }
    }

    /// A click from `ip` with `ua`; returns its Sluice click id once it is stored.
    async fn click(&self, ip: &str, ua: &str) -> ClickId {
        let resp = http()
            .get(format!(
                "{}/{}?click_id=partner-7",
                base(&self.server),
                self.code
            ))
            .header("user-agent", ua)
            .header("x-forwarded-for", ip)
            .send()
            .await
            .unwrap();
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let id = ClickId::parse(&loc[loc.len() - 36..]).unwrap();
        self.env.wait_for_click(id.0).await;
        self.env.wait_for_fingerprints(&[id.0]).await;
        id
    }

    async fn post(&self, endpoint: &str, key: &str, ip: &str, body: Value) -> (u16, Value) {
        let resp = http()
            .post(format!("{}/v1/attribution/{endpoint}", base(&self.server)))
            .bearer_auth(key)
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn install(&self, ip: &str, body: Value) -> Value {
        let (status, v) = self.post("install", &self.key, ip, body).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

fn at(ms: u64) -> String {
    sluice::time::rfc3339_from_ms(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_race_has_one_winner() {
    let ctx = Ctx::new().await;
    let click = ctx.click("198.51.100.7", IPHONE).await;
    let racers: Vec<_> = (0..32)
        .map(|i| {
            let (url, key) = (
                format!("{}/v1/attribution/deferred", base(&ctx.server)),
                ctx.key.clone(),
            );
            tokio::spawn(async move {
                let resp = http()
                    .post(url)
                    .bearer_auth(key)
                    .header("x-forwarded-for", "198.51.100.7")
                    .json(&json!({"install_id": format!("dev-{i}"), "platform": "ios"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        let v = r.await.unwrap();
        if v["matched"] == true {
            winners.push(v);
        } else {
            assert_eq!(v["match_type"], "organic", "{v}");
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one device wins the click: {winners:?}"
    );
    let w = &winners[0];
    assert_eq!(w["click_id"], click.to_string());
    assert_eq!(w["match_type"], "fingerprint");
    assert_eq!(w["link_id"], ctx.code.as_str());
    assert_eq!(
        w["target"]["url"],
        format!("https://apps.apple.com/app/id1?ct={click}")
    );
    // The winner's retry gets the same answer and is not counted again.
    let (status, again) = ctx
        .post(
            "deferred",
            &ctx.key,
            "198.51.100.7",
            json!({"install_id": w["install_id"], "platform": "ios"}),
        )
        .await;
    assert_eq!((status, &again["click_id"]), (200, &w["click_id"]));

    let rows = ctx
        .env
        .wait_for("SELECT count() FROM installs", 32, Duration::from_secs(20))
        .await;
    assert_eq!(rows, 32);
    // Shutting down flushes whatever is still queued: retries would show now.
    ctx.server.shutdown().await;
    assert_eq!(
        ctx.env.ch_u64("SELECT count() FROM installs").await,
        32,
        "retries add no rows"
    );
    assert_eq!(
        ctx.env
            .ch_u64("SELECT uniqExact(install_id) FROM installs")
            .await,
        32
    );
    let matched = ctx.env.ch("SELECT match_type, link_id, lower(hex(click_id)), partner_click_id FROM installs WHERE match_type != 'organic' FORMAT TSV").await;
    assert_eq!(
        matched.trim(),
        format!(
            "fingerprint\t{}\t{}\tpartner-7",
            ctx.code,
            hex::encode(click.0)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_order_windows_and_tenants() {
    let ctx = Ctx::new().await;

    // Explicit click id, from a different IP: click_id match with CTIT.
    let c1 = ctx.click("198.51.100.1", ANDROID).await;
    let v = ctx
        .install(
            "192.0.2.1",
            json!({"install_id": "i-click", "platform": "android", "click_id": c1.to_string()}),
        )
        .await;
    assert_eq!(
        (v["match_type"].as_str(), v["attributed"].as_bool()),
        (Some("click_id"), Some(true)),
        "{v}"
    );
    assert_eq!(v["click_id"], c1.to_string());
    assert!(v["ctit_seconds"].as_u64().is_some(), "{v}");
    assert_eq!(v["target"]["url"], format!("https://x.example/p?c={c1}"));

    // Play install referrer carrying the click id.
    let c2 = ctx.click("198.51.100.2", ANDROID).await;
    let referrer = format!("utm_source=fb&utm_medium=cpc&click_id={c2}");
    let v = ctx
        .install(
            "192.0.2.2",
            json!({"install_id": "i-ref", "platform": "android", "install_referrer": referrer}),
        )
        .await;
    assert_eq!(
        (v["match_type"].as_str(), v["click_id"].as_str()),
        (Some("referrer"), Some(c2.to_string().as_str()))
    );

    // A click already claimed is not claimed again by id.
    let v = ctx
        .install(
            "192.0.2.3",
            json!({"install_id": "i-again", "platform": "android", "click_id": c1.to_string()}),
        )
        .await;
    assert_eq!(v["match_type"], "organic", "{v}");

    // Self-reported metadata, then organic.
    let v = ctx.install("192.0.2.4", json!({"install_id": "i-meta", "platform": "web", "source": "newsletter", "campaign": "nov"})).await;
    assert_eq!(
        (
            v["match_type"].as_str(),
            v["attributed"].as_bool(),
            v["source"].as_str()
        ),
        (Some("metadata"), Some(true), Some("newsletter"))
    );
    assert!(
        v.get("medium").is_none(),
        "fields not reported are left out: {v}"
    );
    let v = ctx
        .install(
            "192.0.2.5",
            json!({"install_id": "i-organic", "platform": "web"}),
        )
        .await;
    assert_eq!(
        (v["match_type"].as_str(), v["attributed"].as_bool()),
        (Some("organic"), Some(false))
    );

    // Fingerprint window edges, with the install time given: just outside the window and
    // before the click never match; inside it does.
    let c3 = ctx.click("198.51.100.3", IPHONE).await;
    let t3 = c3.timestamp_ms();
    let late = ctx.install("198.51.100.3", json!({"install_id": "i-late", "platform": "ios", "installed_at": at(t3 + WINDOW_MS + 1_000)})).await;
    assert_eq!(late["match_type"], "organic", "{late}");
    let early = ctx
        .install(
            "198.51.100.3",
            json!({"install_id": "i-early", "platform": "ios", "installed_at": at(t3 - 1_000)}),
        )
        .await;
    assert_eq!(early["match_type"], "organic", "{early}");
    let ok = ctx
        .install(
            "198.51.100.3",
            json!({"install_id": "i-inside", "platform": "ios", "installed_at": at(t3 + 60_000)}),
        )
        .await;
    assert_eq!(
        (ok["match_type"].as_str(), ok["ctit_seconds"].as_u64()),
        (Some("fingerprint"), Some(60)),
        "{ok}"
    );

    // Click lookback and an install dated before its click, by explicit id. An install may
    // be dated at most a day ahead of now, so the lookback is shortened to one day and the
    // install dated a day and a second after a click at least two seconds old.
    let c4 = ctx.click("198.51.100.4", ANDROID).await;
    let t4 = c4.timestamp_ms();
    let resp = http()
        .patch(format!("{}/v1/attribution/config", base(&ctx.server)))
        .bearer_auth(&ctx.secret)
        .json(&json!({"click_lookback_days": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let old_enough = t4 + 2_000;
    while sluice::time::now_ms() < old_enough {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = ctx.install("192.0.2.6", json!({"install_id": "i-stale", "platform": "android", "click_id": c4.to_string(), "installed_at": at(t4 + 86_400_000 + 1_000)})).await;
    assert_eq!(stale["match_type"], "organic", "{stale}");
    let before = ctx.install("192.0.2.7", json!({"install_id": "i-before", "platform": "android", "click_id": c4.to_string(), "installed_at": at(t4 - 1_000)})).await;
    assert_eq!(before["match_type"], "organic", "{before}");

    // Another tenant, same IP and the same click id: never this tenant's click.
    let c5 = ctx.click("198.51.100.5", IPHONE).await;
    let other = ctx.env.tenant().await;
    let (status, v) = ctx
        .post(
            "install",
            &other.publishable_key,
            "198.51.100.5",
            json!({"install_id": "i-x", "platform": "ios", "click_id": c5.to_string()}),
        )
        .await;
    assert_eq!(
        (status, v["match_type"].as_str()),
        (200, Some("organic")),
        "{v}"
    );
    let mine = ctx
        .install(
            "198.51.100.5",
            json!({"install_id": "i-mine", "platform": "ios"}),
        )
        .await;
    assert_eq!(
        (mine["match_type"].as_str(), mine["click_id"].as_str()),
        (Some("fingerprint"), Some(c5.to_string().as_str()))
    );

    // Binding a user to a reported install; unknown installs are 404.
    let bind = |install: &str, user: &str| {
        http()
            .put(format!("{}/v1/attribution/link", base(&ctx.server)))
            .bearer_auth(&ctx.key)
            .json(&json!({"install_id": install, "user_id": user}))
            .send()
    };
    assert_eq!(bind("i-click", "usr_1").await.unwrap().status(), 200);
    assert_eq!(bind("never-reported", "usr_2").await.unwrap().status(), 404);
    let tenant_id = ctx
        .env
        .ch("SELECT any(tenant_id) FROM installs WHERE install_id = 'i-click' FORMAT TSV")
        .await;
    let tenant_id = if tenant_id.trim().is_empty() {
        ctx.env
            .wait_for(
                "SELECT count() FROM installs WHERE install_id = 'i-click'",
                1,
                Duration::from_secs(10),
            )
            .await;
        ctx.env
            .ch("SELECT any(tenant_id) FROM installs WHERE install_id = 'i-click' FORMAT TSV")
            .await
    } else {
        tenant_id
    };
    let bound = ctx
        .env
        .redis()
        .await
        .user_install(tenant_id.trim(), "usr_1")
        .await
        .unwrap();
    assert_eq!(bound.as_deref(), Some("i-click"));

    // A publishable key binds first and only first: binding the same pair again is fine, but
    // a user bound to another install stays where it is (else anyone holding the app's key
    // could take the user's conversions). The secret key may rebind; that is logged.
    assert_eq!(bind("i-click", "usr_1").await.unwrap().status(), 200);
    let resp = bind("i-mine", "usr_1").await.unwrap();
    assert_eq!(resp.status(), 409);
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "user_already_bound", "{refused}");
    let redis = ctx.env.redis().await;
    let tenant = tenant_id.trim();
    assert_eq!(
        redis
            .user_install(tenant, "usr_1")
            .await
            .unwrap()
            .as_deref(),
        Some("i-click")
    );
    let resp = http()
        .put(format!("{}/v1/attribution/link", base(&ctx.server)))
        .bearer_auth(&ctx.secret)
        .json(&json!({"install_id": "i-mine", "user_id": "usr_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rebound: Value = resp.json().await.unwrap();
    assert_eq!(rebound["rebound_from"], "i-click", "{rebound}");
    assert_eq!(
        redis
            .user_install(tenant, "usr_1")
            .await
            .unwrap()
            .as_deref(),
        Some("i-mine")
    );
    let mut c = redis_conn().await;
    let log: Vec<String> = ::redis::AsyncCommands::lrange(
        &mut c,
        format!("{}:{{t:{tenant}}}:rebinds", ctx.env.prefix),
        0,
        -1,
    )
    .await
    .unwrap();
    assert_eq!(log.len(), 1);
    let entry: Value = serde_json::from_str(&log[0]).unwrap();
    assert_eq!(
        (
            entry["user_id"].as_str(),
            entry["from"].as_str(),
            entry["to"].as_str()
        ),
        (Some("usr_1"), Some("i-click"), Some("i-mine"))
    );

    ctx.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_stores_nothing() {
    let ctx = Ctx::new().await;
    let cases = [
        (json!({"platform": "ios"}), "install_id"),
        (json!({"install_id": "", "platform": "ios"}), "install_id"),
        (
            json!({"install_id": "x".repeat(129), "platform": "ios"}),
            "install_id",
        ),
        (json!({"install_id": "b1"}), "platform"),
        (
            json!({"install_id": "b2", "platform": "windows"}),
            "platform",
        ),
        (
            json!({"install_id": "b3", "platform": "ios", "click_id": "nope"}),
            "click_id",
        ),
        (
            json!({"install_id": "b4", "platform": "android", "install_referrer": "utm_source=%ZZ"}),
            "install_referrer",
        ),
        (
            json!({"install_id": "b5", "platform": "ios", "installed_at": "yesterday"}),
            "installed_at",
        ),
        (json!({"install_id": 5, "platform": "ios"}), "install_id"),
        (
            json!({"install_id": "b6", "platform": "ios", "source": "s".repeat(300)}),
            "source",
        ),
    ];
    for (body, field) in cases {
        for endpoint in ["install", "deferred"] {
            let (status, v) = ctx
                .post(endpoint, &ctx.key, "192.0.2.9", body.clone())
                .await;
            assert_eq!(status, 400, "{endpoint} {body}: {v}");
            assert_eq!(
                v["error"]["details"]["field"], field,
                "{endpoint} {body}: {v}"
            );
        }
    }
    let resp = http()
        .post(format!("{}/v1/attribution/install", base(&ctx.server)))
        .bearer_auth(&ctx.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .post(format!("{}/v1/attribution/install", base(&ctx.server)))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A good install after all that, so the pipeline has flushed whatever it had.
    ctx.install(
        "192.0.2.9",
        json!({"install_id": "good", "platform": "web"}),
    )
    .await;
    assert_eq!(
        ctx.env
            .wait_for("SELECT count() FROM installs", 1, Duration::from_secs(20))
            .await,
        1
    );
    // Shutting down flushes whatever is still queued: a stored bad request would show now.
    ctx.server.shutdown().await;
    assert_eq!(
        ctx.env
            .ch("SELECT install_id FROM installs FORMAT TSV")
            .await
            .trim(),
        "good",
        "nothing of the bad requests stored"
    );
}

const CHROME_DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX_DESKTOP: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

/// `platform: web`: a web page's deferred check matches a click from the same browser family
/// behind the same address (a page on a phone matches that phone's app clicks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_match_clicks_from_their_own_browser() {
    let ctx = Ctx::new().await;
    let deferred = |ip: &'static str, ua: &'static str, install_id: &'static str| {
        let (url, key) = (
            format!("{}/v1/attribution/deferred", base(&ctx.server)),
            ctx.key.clone(),
        );
        async move {
            let resp = http()
                .post(url)
                .bearer_auth(key)
                .header("x-forwarded-for", ip)
                .header("user-agent", ua)
                .json(&json!({"install_id": install_id, "platform": "web"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let chrome = ctx.click("198.51.100.20", CHROME_DESKTOP).await;
    // Another browser on the same address is another visitor.
    let other = deferred("198.51.100.20", FIREFOX_DESKTOP, "w-firefox").await;
    assert_eq!(other["matched"], false, "{other}");
    let same = deferred("198.51.100.20", CHROME_DESKTOP, "w-chrome").await;
    assert_eq!(same["matched"], true, "{same}");
    assert_eq!(same["match_type"], "fingerprint");
    assert_eq!(same["click_id"], chrome.to_string());
    assert_eq!(
        same["target"]["url"],
        format!("https://x.example/p?c={chrome}"),
        "a web page gets the link's destination"
    );
    // A web page on an iPhone matches that iPhone's click.
    let iphone = ctx.click("198.51.100.21", IPHONE).await;
    let page = deferred("198.51.100.21", IPHONE, "w-iphone").await;
    assert_eq!(page["click_id"], iphone.to_string(), "{page}");
    ctx.server.shutdown().await;
}

/// An install finds its click by id however old within the lookback (a click stored six
/// days ago, straight into ClickHouse as the pipeline stores it), and a click of another
/// tenant with the same id never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_id_finds_a_six_day_old_click_and_never_another_tenants() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mine = env.tenant().await;
    let theirs = env.tenant().await;
    let ts = sluice::time::now_ms() - 6 * 86_400_000;
    let click = ClickId::new(ts);
    let day = sluice::time::date_string((ts / sluice::time::MS_PER_DAY) as u16);
    env.ch(&format!(
        "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview) \
         VALUES ('{day}', {ts}, unhex('{}'), '{}', 'old-link', 'autumn', 'net', 'cpi', 7, 0, 0)",
        hex::encode(click.0),
        theirs.tenant_id,
    ))
    .await;
    let install = |key: String, id: &'static str| {
        let url = format!("{}/v1/attribution/install", base(&server));
        async move {
            api(
                reqwest::Method::POST,
                &url,
                &key,
                Some(
                    json!({"install_id": id, "platform": "android", "click_id": click.to_string()}),
                ),
            )
            .await
        }
    };
    let (status, v) = install(mine.secret_key.clone(), "i-mine").await;
    assert_eq!(
        (status, v["match_type"].as_str()),
        (200, Some("organic")),
        "another tenant's click: {v}"
    );
    let (status, v) = install(theirs.secret_key.clone(), "i-theirs").await;
    assert_eq!(
        (status, v["match_type"].as_str()),
        (200, Some("click_id")),
        "{v}"
    );
    assert_eq!(
        (v["campaign"].as_str(), v["source"].as_str()),
        (Some("autumn"), Some("net")),
        "{v}"
    );
    server.shutdown().await;
}
