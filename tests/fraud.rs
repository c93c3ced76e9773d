//! Fraud protection over HTTP against real Redis and ClickHouse: each rule at its threshold
//! (judged in shadow mode and read back from the install receipt), each mode, a rejected
//! install's postback, conversions and claimed click, the figures that count it, and the CTIT
//! histogram.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::click::ClickId;
use sluice::store::redis::NewTenant;
use sluice_testkit::receiver::Receiver;
use sluice_testkit::*;

const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// In the test anonymous-address database (tests/support/make_anonymous_db.py): a hosting
/// provider's address.
const HOSTING: &str = "203.0.113.9";

struct Ctx {
    env: TestEnv,
    server: sluice::server::Server,
    t: NewTenant,
    code: String,
}

impl Ctx {
    async fn new(partner: Option<&Receiver>) -> Ctx {
        let env = TestEnv::new();
        let mut config = env.config();
        config.anonymous_ip_path = Some(
            std::env::var("SLUICE_TEST_ANONYMOUS_IP")
                .unwrap_or_else(|_| format!("{}/var/test/anonymous.mmdb", project_dir().display()))
                .into(),
        );
        config.delivery.allow_private_targets = true;
        let server = sluice::server::Server::start(config).await.unwrap();
        let t = env.tenant().await;
        let code = unique("fr");
        let mut link = json!({"id": code, "destination": "https://x.example/p?c={click_id}", "campaign": "spring", "source": "net"});
        if let Some(receiver) = partner {
            let (status, p) = api(
                reqwest::Method::POST,
                &format!("{}/v1/partners", base(&server)),
                &t.secret_key,
                Some(json!({"name": "Net", "postbacks": {
                    "install": receiver.url("/install?cid={click_id}"),
                    "rejected_install": receiver.url("/rejected?cid={click_id}&reason={rejection_reason}&value={rejection_value}"),
                    "purchase": receiver.url("/purchase?cid={click_id}"),
                }})),
            )
            .await;
            assert_eq!(status, 201, "{p}");
            link["partner_id"] = p["id"].clone();
        }
        create_link(&server, &t.secret_key, link).await;
        Ctx {
            env,
            server,
            t,
            code,
        }
    }

    async fn configure(&self, patch: Value) -> (u16, Value) {
        api(
            reqwest::Method::PATCH,
            &format!("{}/v1/attribution/config", base(&self.server)),
            &self.t.secret_key,
            Some(patch),
        )
        .await
    }

    /// A click from `ip`; its id and time once it is stored (and fingerprinted, if human).
    async fn click(&self, ip: &str, ua: &str) -> (ClickId, u64) {
        let resp = http()
            .get(format!("{}/{}?click_id=p-1", base(&self.server), self.code))
            .header("user-agent", ua)
            .header("x-forwarded-for", ip)
            .send()
            .await
            .unwrap();
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let id = ClickId::parse(&loc[loc.len() - 36..]).unwrap();
        self.env.wait_for_click(id.0).await;
        if ua != BOT {
            self.env.wait_for_fingerprints(&[id.0]).await;
        }
        (id, id.timestamp_ms())
    }

    async fn install(&self, ip: &str, body: Value) -> Value {
        let resp = http()
            .post(format!("{}/v1/attribution/install", base(&self.server)))
            .bearer_auth(&self.t.publishable_key)
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The install's receipt, once its row is stored.
    async fn receipt(&self, install_id: &str) -> Value {
        let url = format!(
            "{}/v1/attribution/installs/{install_id}",
            base(&self.server)
        );
        let mut last = Value::Null;
        for _ in 0..200 {
            let (status, v) = api(reqwest::Method::GET, &url, &self.t.secret_key, None).await;
            if status == 200 {
                return v;
            }
            assert_eq!(status, 404, "{v}");
            last = v;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no receipt for {install_id}: {last}");
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = api(
            reqwest::Method::GET,
            &format!("{}{path}", base(&self.server)),
            &self.t.secret_key,
            None,
        )
        .await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }
}

/// (code, value) pairs of a receipt's reasons.
fn reasons(receipt: &Value) -> Vec<(String, String)> {
    receipt["fraud"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Each rule just under and just over its threshold, in shadow mode (the default): judged,
/// stored with its value, and the install attributed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_at_its_threshold() {
    let ctx = Ctx::new(None).await;
    let (status, v) = ctx
        .configure(json!({"max_ctit_hours": 1, "max_clicks_per_visitor_hour": 2}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["fraud_mode"], "shadow", "{v}");
    let at = |ms: u64| sluice::time::rfc3339_from_ms(ms);
    // (name, install body given the click's id and time, the reasons it must fire)
    type Body = fn(&str, u64, &dyn Fn(u64) -> String) -> Value;
    type Case = (&'static str, Body, Vec<(&'static str, String)>);
    let cases: Vec<Case> = vec![
        (
            "ctit 10 s: at the minimum",
            |id, ts, at| json!({"click_id": id, "installed_at": at(ts + 10_000)}),
            vec![],
        ),
        (
            "ctit 9 s: under",
            |id, ts, at| json!({"click_id": id, "installed_at": at(ts + 9_999)}),
            vec![("click_injection", "9".into())],
        ),
        (
            "ctit 1 h: at the maximum",
            |id, ts, at| json!({"click_id": id, "installed_at": at(ts + 3_600_000)}),
            vec![],
        ),
        (
            "ctit 1 h 1 s: over",
            |id, ts, at| json!({"click_id": id, "installed_at": at(ts + 3_601_000)}),
            vec![("click_flooding", "3601".into())],
        ),
        (
            "install began 10 s before the click: within the skew",
            |id, ts, at| {
                json!({"click_id": id, "installed_at": at(ts + 60_000),
                "install_begin_timestamp_seconds": ts / 1000 - 10})
            },
            vec![],
        ),
        (
            "install began 11 s before the click",
            |id, ts, at| {
                json!({"click_id": id, "installed_at": at(ts + 60_000),
                "install_begin_timestamp_seconds": ts / 1000 - 11})
            },
            vec![("click_injection", "click_after_install_begin:11".into())],
        ),
        (
            "store click an hour before ours",
            |id, ts, at| {
                json!({"click_id": id, "installed_at": at(ts + 60_000),
                "referrer_click_timestamp_seconds": ts / 1000 - 3600,
                "install_begin_timestamp_seconds": ts / 1000 + 30})
            },
            vec![("click_injection", "click_after_referrer_click:3600".into())],
        ),
    ];
    for (i, (name, body, want)) in cases.into_iter().enumerate() {
        // A visitor of its own, so no other rule sees its clicks.
        let ip = format!("198.51.100.{}", 10 + i);
        let (click, ts) = ctx.click(&ip, ANDROID).await;
        let mut b = body(&click.to_string(), ts, &at);
        b["install_id"] = json!(format!("t-{i}"));
        b["platform"] = json!("android");
        let v = ctx.install(&ip, b).await;
        assert_eq!(v["match_type"], "click_id", "{name}: {v}");
        let r = ctx.receipt(&format!("t-{i}")).await;
        let want: Vec<(String, String)> =
            want.into_iter().map(|(c, v)| (c.to_string(), v)).collect();
        assert_eq!(reasons(&r), want, "{name}: {r}");
        let verdict = if want.is_empty() {
            "clean"
        } else {
            "suspicious"
        };
        assert_eq!(r["fraud"]["verdict"], verdict, "{name}: {r}");
        assert_eq!(
            (r["status"].as_str(), r["fraud"]["mode"].as_str()),
            (Some("attributed"), Some("shadow")),
            "{name}"
        );
    }

    // too_many_clicks: the matched click's visitor clicked the link twice before it (at the
    // limit of 2), then three times (over).
    for (n, ip, want) in [
        (3, "198.51.100.50", vec![]),
        (
            4,
            "198.51.100.51",
            vec![("too_many_clicks".to_string(), "3".to_string())],
        ),
    ] {
        let mut last = None;
        for _ in 0..n {
            last = Some(ctx.click(ip, ANDROID).await);
        }
        let (click, ts) = last.unwrap();
        let id = format!("visitor-{n}");
        ctx.install(
            ip,
            json!({"install_id": id, "platform": "android", "click_id": click.to_string(),
                   "installed_at": at(ts + 60_000)}),
        )
        .await;
        let r = ctx.receipt(&id).await;
        assert_eq!(reasons(&r), want, "{n} clicks: {r}");
        // The earlier clicks of the visitor were there to be claimed by a fingerprint.
        assert_eq!(r["competing_clicks"], n - 1, "{r}");
    }
    // The same, matched by fingerprint (the installing device is the visitor).
    for _ in 0..4 {
        ctx.click("198.51.100.52", ANDROID).await;
    }
    ctx.install(
        "198.51.100.52",
        json!({"install_id": "visitor-fp", "platform": "android"}),
    )
    .await;
    let r = ctx.receipt("visitor-fp").await;
    assert_eq!(r["match_type"], "fingerprint", "{r}");
    assert!(
        reasons(&r).contains(&("too_many_clicks".into(), "3".into())),
        "{r}"
    );

    // anonymous_ip, of the click's address and of the install's; bot.
    let (click, ts) = ctx.click(HOSTING, ANDROID).await;
    ctx.install(
        "198.51.100.60",
        json!({"install_id": "anon-click", "platform": "android", "click_id": click.to_string(),
               "installed_at": at(ts + 60_000)}),
    )
    .await;
    let (click, ts) = ctx.click("198.51.100.61", ANDROID).await;
    ctx.install(
        "203.0.113.77",
        json!({"install_id": "anon-install", "platform": "android", "click_id": click.to_string(),
               "installed_at": at(ts + 60_000)}),
    )
    .await;
    let (click, ts) = ctx.click("198.51.100.62", BOT).await;
    // Bot clicks are found by id (previews never are).
    ctx.env
        .wait_for(
            &format!(
                "SELECT count() FROM click_facts WHERE click_id = unhex('{}')",
                hex::encode(click.0)
            ),
            1,
            Duration::from_secs(20),
        )
        .await;
    ctx.install(
        "198.51.100.62",
        json!({"install_id": "bot", "platform": "android", "click_id": click.to_string(),
               "installed_at": at(ts + 60_000)}),
    )
    .await;
    for (id, want) in [
        ("anon-click", ("anonymous_ip", "click")),
        ("anon-install", ("anonymous_ip", "install")),
        ("bot", ("bot", "click")),
    ] {
        let r = ctx.receipt(id).await;
        assert_eq!(
            reasons(&r),
            vec![(want.0.to_string(), want.1.to_string())],
            "{id}: {r}"
        );
    }
    ctx.server.shutdown().await;
}

/// `reject`: the install answered as organic, stored as rejected with its reasons, its click
/// kept from any other install, the partner's rejected_install postback fired with the reason
/// (no install postback), its user's conversions unattributed and not posted back, and the
/// figures count it as rejected, not attributed. `flag` attributes and reports; `off`
/// evaluates nothing. The CTIT histogram counts every matched install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_and_what_a_rejection_does() {
    let receiver = Receiver::start(0, &[]).await;
    let ctx = Ctx::new(Some(&receiver)).await;
    for (patch, field) in [
        (json!({"fraud_mode": "block"}), "fraud_mode"),
        (json!({"min_ctit_seconds": 3601}), "min_ctit_seconds"),
        (
            json!({"max_clicks_per_visitor_hour": 64}),
            "max_clicks_per_visitor_hour",
        ),
    ] {
        let (status, v) = ctx.configure(patch).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    let (status, _) = ctx.configure(json!({"fraud_mode": "reject"})).await;
    assert_eq!(status, 200);

    // Installed 2 s after its click: click injection.
    let (click, _) = ctx.click("198.51.100.20", ANDROID).await;
    let body =
        json!({"install_id": "injected", "platform": "android", "click_id": click.to_string()});
    let v = ctx.install("198.51.100.20", body.clone()).await;
    assert_eq!(
        (
            v["attributed"].as_bool(),
            v["match_type"].as_str(),
            v.get("click_id")
        ),
        (Some(false), Some("organic"), None),
        "the client is answered as for an organic install: {v}"
    );
    let again = ctx.install("198.51.100.20", body).await;
    assert_eq!(again, v, "a retry gets the same answer");
    let r = ctx.receipt("injected").await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["match_type"].as_str(),
            r["fraud"]["verdict"].as_str()
        ),
        (Some("rejected"), Some("click_id"), Some("rejected")),
        "{r}"
    );
    assert_eq!(r["click_id"], click.to_string());
    assert_eq!(reasons(&r)[0].0, "click_injection", "{r}");
    let ctit = r["ctit_seconds"].as_u64().unwrap();
    assert!(ctit < 10, "{r}");
    // The partner hears of the rejection with its reason and value, never of an install.
    let got = receiver.wait_for(1).await;
    assert!(got[0].target.starts_with("/rejected?"), "{got:?}");
    assert!(
        got[0]
            .target
            .ends_with(&format!("cid=p-1&reason=click_injection&value={ctit}")),
        "{got:?}"
    );
    // The rejected install's click stays claimed: a second install naming it gets nothing.
    let other = ctx
        .install(
            "198.51.100.21",
            json!({"install_id": "second", "platform": "android", "click_id": click.to_string()}),
        )
        .await;
    assert_eq!(other["match_type"], "organic", "{other}");
    // Its user's conversion is unattributed and posted back to no one.
    let bind = http()
        .put(format!("{}/v1/attribution/link", base(&ctx.server)))
        .bearer_auth(&ctx.t.publishable_key)
        .json(&json!({"install_id": "injected", "user_id": "u-injected"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bind.status(), 200);
    let hook = default_webhook_url(&base(&ctx.server), &ctx.t.secret_key).await;
    let resp = http()
        .post(hook)
        .json(&json!({"user_id": "u-injected", "type": "purchase", "amount_cents": 500, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    let conv: Value = resp.json().await.unwrap();
    assert_eq!(conv["unattributed"], 1, "{conv}");

    // flag: attributed and reported; its install postback fires.
    ctx.configure(json!({"fraud_mode": "flag"})).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await; // configs are cached for 1 s
    let (click, _) = ctx.click("198.51.100.22", ANDROID).await;
    let v = ctx
        .install(
            "198.51.100.22",
            json!({"install_id": "flagged", "platform": "android", "click_id": click.to_string()}),
        )
        .await;
    assert_eq!(v["match_type"], "click_id", "{v}");
    let r = ctx.receipt("flagged").await;
    assert_eq!(
        (r["status"].as_str(), r["fraud"]["verdict"].as_str()),
        (Some("attributed"), Some("flagged")),
        "{r}"
    );
    let got = receiver.wait_for(2).await;
    assert!(got[1].target.starts_with("/install?cid=p-1"), "{got:?}");

    // off: nothing evaluated.
    ctx.configure(json!({"fraud_mode": "off"})).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (click, _) = ctx.click("198.51.100.23", ANDROID).await;
    ctx.install(
        "198.51.100.23",
        json!({"install_id": "unjudged", "platform": "android", "click_id": click.to_string()}),
    )
    .await;
    let r = ctx.receipt("unjudged").await;
    assert_eq!(
        (r["fraud"]["verdict"].as_str(), r["fraud"]["mode"].as_str()),
        (Some("not_evaluated"), Some("off")),
        "{r}"
    );
    assert!(reasons(&r).is_empty());

    // The figures: 3 installs on the link, 1 rejected (not attributed), 1 flagged.
    ctx.env
        .wait_for(
            &format!(
                "SELECT sum(installs) FROM fraud_installs WHERE tenant_id = '{}' AND reason = ''",
                ctx.t.tenant_id
            ),
            2,
            Duration::from_secs(20),
        )
        .await;
    ctx.env
        .wait_for(
            &format!(
                "SELECT sum(installs) FROM stats_installs WHERE tenant_id = '{}' AND match_type = 'click_id'",
                ctx.t.tenant_id
            ),
            3,
            Duration::from_secs(20),
        )
        .await;
    let totals = ctx.get("/v1/attribution/stats").await;
    assert_eq!(
        (
            totals["installs"].as_u64(),
            totals["rejected_installs"].as_u64(),
            totals["attributed_installs"].as_u64()
        ),
        (Some(4), Some(1), Some(2)),
        "the second install was organic: {totals}"
    );
    assert_eq!(
        totals["fraud_reasons"]["rejected"]["click_injection"], 1,
        "{totals}"
    );
    assert_eq!(
        totals["fraud_reasons"]["flagged"]["click_injection"], 1,
        "{totals}"
    );
    let rows = ctx.get("/v1/attribution/stats/by-campaign").await;
    let spring = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["campaign"] == "spring")
        .cloned()
        .unwrap();
    assert_eq!(spring["rejected_installs"], 1, "{rows}");
    let link = ctx.get(&format!("/v1/links/{}/stats", ctx.code)).await;
    assert_eq!(
        (
            link["install_count"].as_u64(),
            link["rejected_install_count"].as_u64()
        ),
        (Some(2), Some(1)),
        "{link}"
    );
    let by_link = ctx.get("/v1/attribution/stats/breakdown?by=link").await;
    assert_eq!(
        (
            by_link["rows"][0]["rejected_installs"].as_u64(),
            by_link["rows"][0]["attributed_installs"].as_u64()
        ),
        (Some(1), Some(2)),
        "{by_link}"
    );
    // Results by status.
    let rejected = ctx.get("/v1/attribution/results?status=rejected").await;
    let ids: Vec<&str> = rejected["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["install_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["injected"], "{rejected}");
    let attributed = ctx.get("/v1/attribution/results?status=attributed").await;
    assert_eq!(
        attributed["results"].as_array().unwrap().len(),
        2,
        "{attributed}"
    );
    // The CTIT histogram: every matched install, in its bucket; none of another source.
    let h = ctx.get("/v1/attribution/stats/ctit?source=net").await;
    let sum: u64 = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["installs"].as_u64().unwrap())
        .sum();
    assert_eq!((h["installs"].as_u64(), sum), (Some(3), 3), "{h}");
    assert_eq!(h["buckets"][0]["installs"], 3, "all within 10 s: {h}");
    let none = ctx.get("/v1/attribution/stats/ctit?source=other").await;
    assert_eq!(none["installs"], 0, "{none}");
    let (status, v) = api(
        reqwest::Method::GET,
        &format!("{}/v1/attribution/stats/ctit?sauce=x", base(&ctx.server)),
        &ctx.t.secret_key,
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["details"]["field"].as_str()),
        (400, Some("sauce"))
    );
    // Another tenant sees none of it.
    let other = ctx.env.tenant().await;
    let (status, _) = api(
        reqwest::Method::GET,
        &format!("{}/v1/attribution/installs/injected", base(&ctx.server)),
        &other.secret_key,
        None,
    )
    .await;
    assert_eq!(status, 404);
    ctx.server.shutdown().await;
}

/// The atomic flip holds in `reject` mode too: installs racing for one click, one wins it
/// (and is rejected), the rest are organic; each retry answers as its first call did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_click_is_won_once() {
    let ctx = Ctx::new(None).await;
    let (status, _) = ctx.configure(json!({"fraud_mode": "reject"})).await;
    assert_eq!(status, 200);
    let (click, _) = ctx.click("198.51.100.90", ANDROID).await;
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let url = format!("{}/v1/attribution/install", base(&ctx.server));
            let key = ctx.t.publishable_key.clone();
            let body = json!({"install_id": format!("race-{i}"), "platform": "android",
                              "click_id": click.to_string()});
            tokio::spawn(async move {
                let resp = http()
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            })
        })
        .collect();
    for r in racers {
        let v = r.await.unwrap();
        assert_eq!(
            v["match_type"], "organic",
            "every answer looks organic: {v}"
        );
    }
    let mut won = Vec::new();
    for i in 0..16 {
        let r = ctx.receipt(&format!("race-{i}")).await;
        if r["match_type"] == "click_id" {
            assert_eq!(r["status"], "rejected", "{r}");
            won.push(i);
        } else {
            assert_eq!(
                (r["status"].as_str(), r.get("click_id")),
                (Some("organic"), None),
                "{r}"
            );
        }
    }
    assert_eq!(won.len(), 1, "exactly one install won the click: {won:?}");
    ctx.server.shutdown().await;
}
