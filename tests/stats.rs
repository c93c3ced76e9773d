//! Stats and results against real ClickHouse and Redis: consistency across every grouping on
//! mixed traffic sent over HTTP, a randomized comparison of every figure with plain aggregates
//! over the raw tables, windows and UTC day boundaries, tenant isolation, and cursor paging
//! while inserts continue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sluice::click::ClickId;
use sluice::store::redis::NewTenant;
use sluice_testkit::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

struct Ctx {
    env: TestEnv,
    server: sluice::server::Server,
    tenant: NewTenant,
}

impl Ctx {
    async fn new() -> Ctx {
        let env = TestEnv::new();
        let mut config = env.config();
        config.stats_cache_ms = 0; // every request sees the newest aggregates
        let server = sluice::server::Server::start(config).await.unwrap();
        let tenant = env.tenant().await;
        Ctx {
            env,
            server,
            tenant,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, &self.tenant.secret_key).await
    }

    async fn get_as(&self, path: &str, key: &str) -> (u16, Value) {
        let resp = http()
            .get(format!("{}{path}", base(&self.server)))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, v) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    async fn click(&self, code: &str, ip: &str, ua: &str, head: bool) -> Option<ClickId> {
        let url = format!("{}/{code}", base(&self.server));
        let req = if head {
            http().head(url)
        } else {
            http().get(url)
        };
        let resp = req
            .header("user-agent", ua)
            .header("x-forwarded-for", ip)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        let loc = resp.headers()["location"].to_str().unwrap();
        ClickId::parse(&loc[loc.len() - 36..])
    }

    async fn install(&self, ip: &str, body: Value) -> Value {
        let resp = http()
            .post(format!("{}/v1/attribution/install", base(&self.server)))
            .bearer_auth(&self.tenant.publishable_key)
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

/// The figures a test expects for one group.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expect {
    clicks: u64,
    ips: BTreeSet<String>,
    bots: u64,
    previews: u64,
    installs: u64,
    organic: u64,
    /// (type, currency) → (count, sum)
    conversions: BTreeMap<(String, String), (u64, i64)>,
}

fn check(got: &Value, want: &Expect, what: &str) {
    assert_eq!(got["clicks"], want.clicks, "{what} clicks: {got}");
    assert_eq!(
        got["unique_clicks"],
        want.ips.len() as u64,
        "{what} unique: {got}"
    );
    assert_eq!(got["bot_clicks"], want.bots, "{what} bots");
    assert_eq!(got["preview_clicks"], want.previews, "{what} previews");
    assert_eq!(got["installs"], want.installs, "{what} installs: {got}");
    assert_eq!(got["organic_installs"], want.organic, "{what} organic");
    assert_eq!(
        got["attributed_installs"],
        want.installs - want.organic,
        "{what} attributed"
    );
    let conversions: BTreeMap<(String, String), (u64, i64)> = got["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["type"].as_str().unwrap().to_string(),
                    c["currency"].as_str().unwrap_or("").to_string(),
                ),
                (
                    c["count"].as_u64().unwrap(),
                    c["sum_cents"].as_i64().unwrap_or(0),
                ),
            )
        })
        .collect();
    assert_eq!(conversions, want.conversions, "{what} conversions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grouping_agrees_with_what_was_sent() {
    let ctx = Ctx::new().await;
    let sk = ctx.tenant.secret_key.clone();
    // Three links over two campaigns and two source/medium pairs.
    let links = [("c1", "s1", "m1"), ("c1", "s2", "m2"), ("c2", "s1", "m1")];
    let mut codes = Vec::new();
    for (campaign, source, medium) in links {
        let code = unique("st");
        create_link(
            &ctx.server,
            &sk,
            json!({"id": code, "destination": "https://x.example/p?c={click_id}",
                   "campaign": campaign, "source": source, "medium": medium}),
        )
        .await;
        codes.push(code);
    }
    let mut want: BTreeMap<usize, Expect> = BTreeMap::new();
    let mut clicks: Vec<(usize, ClickId, String)> = Vec::new();
    let mut sent = 0u64;
    for (i, code) in codes.iter().enumerate() {
        let e = want.entry(i).or_default();
        for n in 0..(6 + 3 * i) {
            // Some IPs click twice: unique clicks count them once.
            let ip = format!("198.51.{i}.{}", n % 4 + 1);
            let ua = if n % 2 == 0 { ANDROID } else { IPHONE };
            let id = ctx.click(code, &ip, ua, false).await.unwrap();
            clicks.push((i, id, ip.clone()));
            e.clicks += 1;
            e.ips.insert(ip);
            sent += 1;
        }
        for _ in 0..i + 1 {
            ctx.click(code, "203.0.113.9", BOT, false).await;
            e.bots += 1;
            sent += 1;
        }
        ctx.click(code, "203.0.113.10", IPHONE, true).await;
        e.previews += 1;
        sent += 1;
    }
    env_wait(&ctx, "SELECT count() FROM clicks", sent).await;
    env_wait(&ctx, STATS_CLICKS, sent).await;
    let ids: Vec<[u8; 16]> = clicks.iter().map(|(_, id, _)| id.0).collect();
    // Installs find clicks by id in click_facts, filled by its view as the insert finishes
    // (bots' clicks too, for the `bot` fraud rule; previews' never).
    let bots: u64 = want.values().map(|e| e.bots).sum();
    env_wait(
        &ctx,
        "SELECT count() FROM click_facts",
        ids.len() as u64 + bots,
    )
    .await;
    ctx.env.wait_for_fingerprints(&ids).await;

    // Installs of every match type.
    let android = |(i, id, _): &(usize, ClickId, String)| (*i, *id);
    let (l0, c0) = android(&clicks[0]); // an android click of link 0
    ctx.install(
        "192.0.2.1",
        json!({"install_id": "i-click", "platform": "android", "click_id": c0.to_string()}),
    )
    .await;
    want.get_mut(&l0).unwrap().installs += 1;
    let (l1, c1) = android(clicks.iter().find(|c| c.0 == 1).unwrap());
    let referrer = format!("utm_source=x&click_id={c1}");
    ctx.install(
        "192.0.2.2",
        json!({"install_id": "i-ref", "platform": "android", "install_referrer": referrer}),
    )
    .await;
    want.get_mut(&l1).unwrap().installs += 1;
    // An iPhone click of link 2, matched by its device's IP.
    let (l2, _, ip2) = clicks
        .iter()
        .find(|c| c.0 == 2 && c.2.ends_with(".2"))
        .unwrap()
        .clone();
    let v = ctx
        .install(&ip2, json!({"install_id": "i-fp", "platform": "ios"}))
        .await;
    assert_eq!(v["match_type"], "fingerprint", "{v}");
    want.get_mut(&l2).unwrap().installs += 1;
    // Metadata and organic installs belong to no link: they count in the campaign and source
    // they reported (or none).
    let v = ctx
        .install("192.0.2.3", json!({"install_id": "i-meta", "platform": "web", "campaign": "c9", "source": "s9", "medium": "m9"}))
        .await;
    assert_eq!(v["match_type"], "metadata");
    let v = ctx
        .install(
            "192.0.2.4",
            json!({"install_id": "i-org", "platform": "web"}),
        )
        .await;
    assert_eq!(v["match_type"], "organic");

    // Conversions, refunds included, through users bound to installs.
    for (user, install) in [
        ("u-click", "i-click"),
        ("u-ref", "i-ref"),
        ("u-org", "i-org"),
    ] {
        let resp = http()
            .put(format!("{}/v1/attribution/link", base(&ctx.server)))
            .bearer_auth(&sk)
            .json(&json!({"install_id": install, "user_id": user}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let hook = default_webhook_url(&base(&ctx.server), &sk).await;
    let resp = http()
        .post(&hook)
        .json(&json!([
            {"user_id": "u-click", "type": "purchase", "amount_cents": 1000, "currency": "usd"},
            {"user_id": "u-click", "type": "purchase", "amount_cents": -400, "currency": "USD"},
            {"user_id": "u-click", "type": "purchase", "amount_cents": 700, "currency": "EUR"},
            {"user_id": "u-ref", "type": "signup"},
            {"user_id": "u-org", "type": "purchase", "amount_cents": 999, "currency": "USD"},
            {"user_id": "nobody", "type": "signup"}
        ]))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["unattributed"].as_u64()),
        (Some(4), Some(2)),
        "{v}"
    );
    want.get_mut(&l0).unwrap().conversions = BTreeMap::from([
        (("purchase".into(), "USD".into()), (2, 600)),
        (("purchase".into(), "EUR".into()), (1, 700)),
    ]);
    want.get_mut(&l1)
        .unwrap()
        .conversions
        .insert(("signup".into(), String::new()), (1, 0));
    env_wait(&ctx, "SELECT count() FROM installs", 5).await;
    env_wait(&ctx, "SELECT sum(installs) FROM stats_installs", 5).await;
    env_wait(&ctx, "SELECT count() FROM conversions", 6).await;
    env_wait(&ctx, "SELECT sum(conversions) FROM stats_conversions", 4).await; // attributed

    // Per link.
    for (i, code) in codes.iter().enumerate() {
        let v = ctx.ok(&format!("/v1/links/{code}/stats")).await;
        let w = &want[&i];
        assert_eq!(v["link_id"], code.as_str());
        assert_eq!(v["click_count"], w.clicks, "{v}");
        assert_eq!(v["install_count"], w.installs, "{v}");
        let rate = v["conversion_rate"].as_f64().unwrap();
        assert!((rate - w.installs as f64 / w.clicks as f64).abs() < 1e-9);
        assert_eq!(v["window"], "7d");
    }
    // Totals: every link, plus the metadata and organic installs.
    let mut total = Expect::default();
    for w in want.values() {
        merge(&mut total, w);
    }
    total.installs += 2;
    total.organic += 1;
    let totals = ctx.ok("/v1/attribution/stats").await;
    check(&totals, &total, "totals");
    for window in ["?window=7d", "?window=30d"] {
        check(
            &ctx.ok(&format!("/v1/attribution/stats{window}")).await,
            &total,
            window,
        );
    }
    // By campaign: c1 = links 0 and 1, c2 = link 2, c9 = the metadata install, "" = organic.
    let mut by_campaign: BTreeMap<String, Expect> = BTreeMap::new();
    let mut by_source: BTreeMap<(String, String), Expect> = BTreeMap::new();
    for (i, (campaign, source, medium)) in links.iter().enumerate() {
        merge(
            by_campaign.entry(campaign.to_string()).or_default(),
            &want[&i],
        );
        merge(
            by_source
                .entry((source.to_string(), medium.to_string()))
                .or_default(),
            &want[&i],
        );
    }
    let meta = Expect {
        installs: 1,
        ..Expect::default()
    };
    let organic = Expect {
        installs: 1,
        organic: 1,
        ..Expect::default()
    };
    merge(by_campaign.entry("c9".into()).or_default(), &meta);
    merge(by_campaign.entry(String::new()).or_default(), &organic);
    merge(
        by_source.entry(("s9".into(), "m9".into())).or_default(),
        &meta,
    );
    merge(
        by_source.entry((String::new(), String::new())).or_default(),
        &organic,
    );
    let rows = ctx.ok("/v1/attribution/stats/by-campaign").await;
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), by_campaign.len());
    let clicks: Vec<u64> = rows.iter().map(|r| r["clicks"].as_u64().unwrap()).collect();
    assert!(
        clicks.windows(2).all(|w| w[0] >= w[1]),
        "sorted by clicks: {clicks:?}"
    );
    for row in rows {
        let key = row["campaign"].as_str().unwrap().to_string();
        check(row, &by_campaign[&key], &format!("campaign {key:?}"));
    }
    let rows = ctx.ok("/v1/attribution/stats/by-source").await;
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), by_source.len());
    for row in rows {
        let key = (
            row["source"].as_str().unwrap().to_string(),
            row["medium"].as_str().unwrap().to_string(),
        );
        check(row, &by_source[&key], &format!("source {key:?}"));
    }
    // The time series: every day of the window, today's row holding everything.
    let series = ctx.ok("/v1/attribution/stats/timeseries").await;
    let days = series["rows"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    check(&days[6], &total, "today");
    assert!(days[..6]
        .iter()
        .all(|d| d["clicks"] == 0 && d["installs"] == 0));
}

fn merge(into: &mut Expect, from: &Expect) {
    into.clicks += from.clicks;
    into.ips.extend(from.ips.iter().cloned());
    into.bots += from.bots;
    into.previews += from.previews;
    into.installs += from.installs;
    into.organic += from.organic;
    for (k, (n, sum)) in &from.conversions {
        let e = into.conversions.entry(k.clone()).or_default();
        e.0 += n;
        e.1 += sum;
    }
}

/// Every click in the stats view, each counted once as a click, a bot or a preview.
const STATS_CLICKS: &str =
    "SELECT sumMerge(clicks) + sumMerge(bot_clicks) + sumMerge(preview_clicks) FROM stats_clicks";

/// Waits for the tenant's rows. The stats endpoints read the views' tables, not the facts: one
/// insert writes its fact table's part first and the views' parts after it, so facts can be
/// visible before the stats are (seen once in CI: the totals' conversions still empty).
async fn env_wait(ctx: &Ctx, sql: &str, want: u64) {
    let sql = format!("{sql} WHERE tenant_id = '{}'", ctx.tenant.tenant_id);
    assert_eq!(
        ctx.env.wait_for(&sql, want, Duration::from_secs(20)).await,
        want,
        "{sql}"
    );
}

fn today() -> u16 {
    (sluice::time::now_ms() / sluice::time::MS_PER_DAY) as u16
}

/// Inserts raw fact rows for `tenant` straight into ClickHouse (the views aggregate them like
/// the pipeline's inserts).
async fn insert_raw(env: &TestEnv, table: &str, columns: &str, rows: &[String]) {
    for chunk in rows.chunks(500) {
        env.ch(&format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            chunk.join(",")
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_traffic_matches_plain_aggregates_over_the_raw_tables() {
    let ctx = Ctx::new().await;
    let t = ctx.tenant.tenant_id.clone();
    let today = today();
    for seed in 0..4u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pick = |rng: &mut rand::rngs::StdRng, from: &[&str]| {
            from[rng.random_range(0..from.len())].to_string()
        };
        let (links, campaigns, sources, mediums) = (
            ["la", "lb", "lc", ""],
            ["spring", "fall", ""],
            ["fb", "tt", "g"],
            ["cpc", "cpi"],
        );
        let day = |rng: &mut rand::rngs::StdRng| today - rng.random_range(0..40u16);
        let ms = |d: u16, rng: &mut rand::rngs::StdRng| {
            u64::from(d) * 86_400_000 + rng.random_range(0..86_400_000)
        };
        let mut clicks = Vec::new();
        for _ in 0..rng.random_range(50..400) {
            let d = day(&mut rng);
            clicks.push(format!(
                "(toDate('{}'), {}, '{t}', '{}', '{}', '{}', '{}', {}, {}, {})",
                sluice::time::date_string(d),
                ms(d, &mut rng),
                pick(&mut rng, &links),
                pick(&mut rng, &campaigns),
                pick(&mut rng, &sources),
                pick(&mut rng, &mediums),
                rng.random_range(0..60u64),
                u8::from(rng.random_bool(0.1)),
                u8::from(rng.random_bool(0.1)),
            ));
        }
        insert_raw(&ctx.env, "clicks", "date, ts_ms, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview", &clicks).await;
        let mut installs = Vec::new();
        for n in 0..rng.random_range(10..80) {
            let d = day(&mut rng);
            installs.push(format!(
                "(toDate('{}'), {}, '{t}', 'r{seed}-{n}', '{}', '{}', '{}', '{}', '{}')",
                sluice::time::date_string(d),
                ms(d, &mut rng),
                pick(
                    &mut rng,
                    &["click_id", "referrer", "fingerprint", "metadata", "organic"]
                ),
                pick(&mut rng, &links),
                pick(&mut rng, &campaigns),
                pick(&mut rng, &sources),
                pick(&mut rng, &mediums),
            ));
        }
        insert_raw(
            &ctx.env,
            "installs",
            "date, ts_ms, tenant_id, install_id, match_type, link_id, campaign, source, medium",
            &installs,
        )
        .await;
        let mut conversions = Vec::new();
        for _ in 0..rng.random_range(10..80) {
            let d = day(&mut rng);
            let with_amount = rng.random_bool(0.7);
            conversions.push(format!(
                "(toDate('{}'), {}, '{t}', '{}', {}, '{}', {}, '{}', '{}', '{}', '{}')",
                sluice::time::date_string(d),
                ms(d, &mut rng),
                pick(&mut rng, &["purchase", "signup"]),
                if with_amount {
                    rng.random_range(-5000..20000i64)
                } else {
                    0
                },
                if with_amount {
                    pick(&mut rng, &["USD", "EUR"])
                } else {
                    String::new()
                },
                u8::from(rng.random_bool(0.8)),
                pick(&mut rng, &links),
                pick(&mut rng, &campaigns),
                pick(&mut rng, &sources),
                pick(&mut rng, &mediums),
            ));
        }
        insert_raw(&ctx.env, "conversions", "date, ts_ms, tenant_id, type, amount_cents, currency, attributed, link_id, campaign, source, medium", &conversions).await;

        for range in [
            "window=7d",
            "window=30d",
            &format!(
                "from={}&to={}",
                sluice::time::date_string(today - 39),
                sluice::time::date_string(today - 5)
            ),
        ] {
            let v = ctx.ok(&format!("/v1/attribution/stats?{range}")).await;
            let scope = format!(
                "tenant_id = '{t}' AND date >= toDate('{}') AND date <= toDate('{}')",
                v["from"].as_str().unwrap(),
                v["to"].as_str().unwrap()
            );
            let raw = |sql: String| {
                let env = &ctx.env;
                async move { env.ch(&sql).await }
            };
            let clicks = raw(format!(
                "SELECT sum(is_bot = 0 AND is_preview = 0), uniqHLL12If(ip_hash, is_bot = 0 AND is_preview = 0), sum(is_bot), sum(is_preview) FROM clicks WHERE {scope}"
            ))
            .await;
            let got = format!(
                "{}\t{}\t{}\t{}\n",
                v["clicks"], v["unique_clicks"], v["bot_clicks"], v["preview_clicks"]
            );
            assert_eq!(got, clicks, "seed {seed} {range} clicks");
            let installs = raw(format!(
                "SELECT count(), countIf(match_type = 'organic') FROM installs WHERE {scope}"
            ))
            .await;
            assert_eq!(
                format!("{}\t{}\n", v["installs"], v["organic_installs"]),
                installs,
                "seed {seed} {range} installs"
            );
            let conversions = raw(format!(
                "SELECT type, currency, count(), sum(amount_cents) FROM conversions WHERE {scope} AND attributed = 1 \
                 GROUP BY type, currency ORDER BY type, currency"
            ))
            .await;
            let got: String = v["conversions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    format!(
                        "{}\t{}\t{}\t{}\n",
                        c["type"].as_str().unwrap(),
                        c["currency"].as_str().unwrap_or(""),
                        c["count"],
                        c["sum_cents"].as_i64().unwrap_or(0)
                    )
                })
                .collect();
            assert_eq!(got, conversions, "seed {seed} {range} conversions");
            // Grouped: the same plain aggregate per campaign and per source/medium.
            for (path, keys) in [("by-campaign", "campaign"), ("by-source", "source, medium")] {
                let rows = ctx
                    .ok(&format!("/v1/attribution/stats/{path}?{range}"))
                    .await;
                let mut got: Vec<String> = rows["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| {
                        r["clicks"].as_u64().unwrap()
                            + r["bot_clicks"].as_u64().unwrap()
                            + r["preview_clicks"].as_u64().unwrap()
                            > 0
                    })
                    .map(|r| {
                        let key = if keys == "campaign" {
                            r["campaign"].as_str().unwrap().to_string()
                        } else {
                            format!(
                                "{}\t{}",
                                r["source"].as_str().unwrap(),
                                r["medium"].as_str().unwrap()
                            )
                        };
                        format!("{key}\t{}\t{}\n", r["clicks"], r["unique_clicks"])
                    })
                    .collect();
                got.sort();
                let want = raw(format!(
                    "SELECT {keys}, sum(is_bot = 0 AND is_preview = 0), uniqHLL12If(ip_hash, is_bot = 0 AND is_preview = 0) \
                     FROM clicks WHERE {scope} GROUP BY {keys} ORDER BY {keys}"
                ))
                .await;
                let mut want: Vec<String> = want.lines().map(|l| format!("{l}\n")).collect();
                want.sort();
                assert_eq!(got, want, "seed {seed} {range} {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_utc_day_boundaries() {
    let ctx = Ctx::new().await;
    let t = ctx.tenant.tenant_id.as_str();
    let today = today();
    let at = |day: u16, ms_of_day: u64| u64::from(day) * 86_400_000 + ms_of_day;
    let rows: Vec<String> = [
        (today - 20, 43_200_000, 1),
        (today - 3, 86_399_999, 2), // the last millisecond of a day
        (today - 2, 0, 4),          // the first of the next
    ]
    .iter()
    .flat_map(|&(day, ms, n)| {
        (0..n).map(move |i| {
            format!(
                "(toDate('{}'), {}, '{t}', 'l', {i}, 0, 0)",
                sluice::time::date_string(day),
                at(day, ms)
            )
        })
    })
    .collect();
    insert_raw(
        &ctx.env,
        "clicks",
        "date, ts_ms, tenant_id, link_id, ip_hash, is_bot, is_preview",
        &rows,
    )
    .await;
    let clicks = |v: Value| v["clicks"].as_u64().unwrap();
    assert_eq!(clicks(ctx.ok("/v1/attribution/stats?window=7d").await), 6);
    assert_eq!(clicks(ctx.ok("/v1/attribution/stats?window=30d").await), 7);
    let day = |d: u16| sluice::time::date_string(d);
    let range =
        |from: u16, to: u16| format!("/v1/attribution/stats?from={}&to={}", day(from), day(to));
    assert_eq!(clicks(ctx.ok(&range(today - 3, today - 3)).await), 2);
    assert_eq!(clicks(ctx.ok(&range(today - 2, today - 2)).await), 4);
    assert_eq!(clicks(ctx.ok(&range(today - 20, today - 3)).await), 3);
    let v = ctx.ok(&range(today - 3, today - 2)).await;
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str(), v["window"].is_null()),
        (
            Some(day(today - 3).as_str()),
            Some(day(today - 2).as_str()),
            true
        )
    );
    // Bad ranges name the parameter.
    for (query, field) in [
        ("window=1y", "window"),
        ("from=2026-02-30&to=2026-03-01", "from"),
        ("from=2026-03-02&to=2026-03-01", "from"),
        ("from=2025-01-01&to=2026-01-02", "to"),
        ("from=2026-01-01", "to"),
    ] {
        let (status, v) = ctx
            .get(&format!("/v1/attribution/stats/by-campaign?{query}"))
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(v["error"]["details"]["field"], field, "{query}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_stats_and_results() {
    let ctx = Ctx::new().await;
    let code = unique("iso");
    create_link(
        &ctx.server,
        &ctx.tenant.secret_key,
        json!({"id": code, "destination": "https://x.example/p?c={click_id}", "campaign": "mine"}),
    )
    .await;
    attributed_install(
        &ctx.env,
        &ctx.server,
        &ctx.tenant.publishable_key,
        &code,
        "iso-1",
    )
    .await;
    // The stats read the views' table, written after the installs' part.
    env_wait(&ctx, "SELECT sum(installs) FROM stats_installs", 1).await;
    let other = ctx.env.tenant().await;
    for path in [
        "/v1/attribution/stats",
        "/v1/attribution/stats/by-campaign",
        "/v1/attribution/stats/by-source",
        "/v1/attribution/stats/timeseries",
        "/v1/attribution/results",
    ] {
        let (status, mine) = ctx.get(path).await;
        assert_eq!(status, 200);
        let (status, theirs) = ctx.get_as(path, &other.secret_key).await;
        assert_eq!(status, 200);
        let text = theirs.to_string();
        assert!(
            !text.contains("mine") && !text.contains("iso-1"),
            "{path}: {text}"
        );
        assert_ne!(mine, theirs, "{path}");
        let (status, _) = ctx.get_as(path, &ctx.tenant.publishable_key).await;
        assert_eq!(status, 403, "{path} needs a secret key");
    }
    let (_, theirs) = ctx.get_as("/v1/attribution/stats", &other.secret_key).await;
    assert_eq!(
        (theirs["clicks"].as_u64(), theirs["installs"].as_u64()),
        (Some(0), Some(0))
    );
    let (status, _) = ctx
        .get_as(&format!("/v1/links/{code}/stats"), &other.secret_key)
        .await;
    assert_eq!(status, 404, "another tenant's link");
    let (status, _) = ctx.get("/v1/links/no-such-link/stats").await;
    assert_eq!(status, 404);
    let v = ctx.ok(&format!("/v1/links/{code}/stats")).await;
    assert_eq!(
        (v["click_count"].as_u64(), v["install_count"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_page_every_install_once_while_inserts_continue() {
    let ctx = Ctx::new().await;
    let t = ctx.tenant.tenant_id.clone();
    let now = sluice::time::now_ms();
    let row = |i: u64, ts: u64, campaign: &str| {
        format!(
            "(toDate('{}'), {ts}, '{t}', 'p-{i:04}', 'click_id', '{campaign}', 'fb')",
            sluice::time::date_string((ts / 86_400_000) as u16)
        )
    };
    // 250 matched installs (some sharing a millisecond), 20 organic ones, 30 of another campaign.
    let mut rows: Vec<String> = (0..250)
        .map(|i| row(i, now - 3_600_000 + (i / 3) * 1000, "spring"))
        .collect();
    rows.extend((0..30).map(|i| row(1000 + i, now - 1000 * i, "fall")));
    insert_raw(
        &ctx.env,
        "installs",
        "date, ts_ms, tenant_id, install_id, match_type, campaign, source",
        &rows,
    )
    .await;
    let organic: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "(toDate('{}'), {}, '{t}', 'o-{i}', 'organic', 'spring')",
                sluice::time::date_string((now / 86_400_000) as u16),
                now - i
            )
        })
        .collect();
    insert_raw(
        &ctx.env,
        "installs",
        "date, ts_ms, tenant_id, install_id, match_type, campaign",
        &organic,
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/attribution/results?campaign=spring&limit=40&cursor={c}"),
            None => "/v1/attribution/results?campaign=spring&limit=40".to_string(),
        };
        let v = ctx.ok(&path).await;
        let results = v["results"].as_array().unwrap();
        assert!(results.len() <= 40);
        let times: Vec<&str> = results
            .iter()
            .map(|r| r["installed_at"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        seen.extend(
            results
                .iter()
                .map(|r| r["install_id"].as_str().unwrap().to_string()),
        );
        // New installs keep arriving (newer than anything listed) between pages.
        insert_raw(
            &ctx.env,
            "installs",
            "date, ts_ms, tenant_id, install_id, match_type, campaign, source",
            &[row(5000 + page, now + page, "spring")],
        )
        .await;
        page += 1;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // The first page saw the newest rows; after it, only the original 250 remain below the cursor.
    let original: BTreeSet<String> = (0..250).map(|i| format!("p-{i:04}")).collect();
    let listed: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), listed.len(), "no install listed twice");
    assert!(original.is_subset(&listed), "every install listed");
    assert!(
        listed.iter().all(|id| id.starts_with("p-")),
        "only matched spring installs"
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=!!", "cursor"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
    ] {
        let (status, v) = ctx.get(&format!("/v1/attribution/results?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(v["error"]["details"]["field"], field);
    }
}

/// Breakdowns against plain aggregates over the raw tables: random clicks and installs with
/// every dimension filled, each dimension asked over two ranges, with and without a filter,
/// and cut to a limit (the first rows of the full answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_agree_with_plain_aggregates_over_the_raw_tables() {
    let ctx = Ctx::new().await;
    let t = ctx.tenant.tenant_id.clone();
    let today = today();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let pick = |rng: &mut rand::rngs::StdRng, from: &[&str]| {
        from[rng.random_range(0..from.len())].to_string()
    };
    let day = |rng: &mut rand::rngs::StdRng| today - rng.random_range(0..40u16);
    let (links, campaigns, countries, subs) = (
        ["la", "lb", "lc"],
        ["spring", "fall"],
        ["US", "DE", "GB", ""],
        ["s1", "s2", "s3", ""],
    );
    let mut clicks = Vec::new();
    for _ in 0..600 {
        let d = day(&mut rng);
        let country = pick(&mut rng, &countries);
        clicks.push(format!(
            "(toDate('{}'), '{t}', '{}', '{}', 'fb', {}, '{country}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', {}, {})",
            sluice::time::date_string(d),
            pick(&mut rng, &links),
            pick(&mut rng, &campaigns),
            rng.random_range(0..80u64),
            if country.is_empty() { String::new() } else { pick(&mut rng, &["CA", "BY", ""]) },
            pick(&mut rng, &["Springfield", "Berlin", ""]),
            pick(&mut rng, &["ios", "android", "other"]),
            pick(&mut rng, &["iPhone", "iPad", "Android", "Windows 10"]),
            pick(&mut rng, &["Safari", "Chrome"]),
            pick(&mut rng, &["smartphone", "pc", "UNKNOWN"]),
            pick(&mut rng, &["https://news.example/a?b", "http://t.co/x", ""]),
            pick(&mut rng, &["a", "b", ""]),
            pick(&mut rng, &subs),
            u8::from(rng.random_bool(0.1)),
            u8::from(rng.random_bool(0.1)),
        ));
    }
    insert_raw(&ctx.env, "clicks", "date, tenant_id, link_id, campaign, source, ip_hash, country, region, city, platform, os, browser, device, referrer, variant, sub1, is_bot, is_preview", &clicks).await;
    let mut installs = Vec::new();
    for n in 0..150 {
        let d = day(&mut rng);
        installs.push(format!(
            "(toDate('{}'), '{t}', 'i{n}', '{}', '{}', '{}', 'fb', '{}', '{}', '{}')",
            sluice::time::date_string(d),
            pick(&mut rng, &["click_id", "fingerprint", "organic"]),
            pick(&mut rng, &links),
            pick(&mut rng, &campaigns),
            pick(&mut rng, &countries),
            pick(&mut rng, &["ios", "android", "web"]),
            pick(&mut rng, &subs),
        ));
    }
    insert_raw(&ctx.env, "installs", "date, tenant_id, install_id, match_type, link_id, campaign, source, country, platform, sub1", &installs).await;
    let d = sluice::time::date_string(today);
    insert_raw(
        &ctx.env,
        "conversions",
        "date, tenant_id, type, amount_cents, currency, attributed, link_id",
        &[
            format!("(toDate('{d}'), '{t}', 'purchase', 100, 'USD', 1, 'la')"),
            format!("(toDate('{d}'), '{t}', 'purchase', 200, 'USD', 1, 'la')"),
            format!("(toDate('{d}'), '{t}', 'purchase', 999, 'USD', 0, 'la')"),
            format!("(toDate('{d}'), '{t}', 'signup', 0, '', 1, 'lb')"),
        ],
    )
    .await;
    let by_link = ctx
        .ok("/v1/attribution/stats/breakdown?by=link&window=7d")
        .await;
    let conversions = |link: &str| {
        by_link["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == link)
            .map(|r| r["conversions"].clone())
    };
    assert_eq!(
        conversions("la"),
        Some(json!([{"type": "purchase", "count": 2, "sum_cents": 300, "currency": "USD"}])),
        "{by_link}"
    );
    assert_eq!(
        conversions("lb"),
        Some(json!([{"type": "signup", "count": 1}])),
        "{by_link}"
    );
    // The key of each dimension over the raw tables (installs: where the row has it).
    let keys = [
        ("country", "country", Some("country")),
        ("region", "if(region = '', '', concat(country, '-', region))", None),
        ("city", "city", None),
        ("platform", "platform", Some("platform")),
        ("os", "os", None),
        ("browser", "browser", None),
        ("device", "multiIf(os = 'iPad', 'tablet', device IN ('smartphone', 'mobilephone'), 'mobile', device = 'pc', 'desktop', 'other')", None),
        ("referrer_host", "domain(referrer)", None),
        ("variant", "variant", Some("variant")),
        ("link", "link_id", Some("link_id")),
        ("sub1", "sub1", Some("sub1")),
    ];
    for range in [
        "window=30d",
        &format!(
            "from={}&to={}",
            sluice::time::date_string(today - 39),
            sluice::time::date_string(today - 10)
        ),
    ] {
        for (filter, sql_filter) in [
            ("", String::new()),
            (
                "&campaign=spring&link=lb",
                " AND campaign = 'spring' AND link_id = 'lb'".to_string(),
            ),
        ] {
            for (dim, click_key, install_key) in keys {
                let v = ctx
                    .ok(&format!(
                        "/v1/attribution/stats/breakdown?by={dim}&{range}{filter}&limit=1000"
                    ))
                    .await;
                assert_eq!(v["by"], dim);
                let scope = format!(
                    "tenant_id = '{t}' AND date >= toDate('{}') AND date <= toDate('{}'){sql_filter}",
                    v["from"].as_str().unwrap(),
                    v["to"].as_str().unwrap()
                );
                let mut want: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
                for line in ctx.env.ch(&format!(
                    "SELECT {click_key} AS k, count(), uniqHLL12(ip_hash) FROM clicks WHERE {scope} AND is_bot = 0 AND is_preview = 0 GROUP BY k FORMAT TSV"
                )).await.lines() {
                    let f: Vec<&str> = line.split('\t').collect();
                    let e = want.entry(f[0].to_string()).or_default();
                    (e.0, e.1) = (f[1].parse().unwrap(), f[2].parse().unwrap());
                }
                if let Some(install_key) = install_key {
                    for line in ctx.env.ch(&format!(
                        "SELECT {install_key} AS k, count(), countIf(match_type != 'organic') FROM installs WHERE {scope} GROUP BY k FORMAT TSV"
                    )).await.lines() {
                        let f: Vec<&str> = line.split('\t').collect();
                        let e = want.entry(f[0].to_string()).or_default();
                        (e.2, e.3) = (f[1].parse().unwrap(), f[2].parse().unwrap());
                    }
                }
                let rows = v["rows"].as_array().unwrap();
                let got: BTreeMap<String, (u64, u64, u64, u64)> = rows
                    .iter()
                    .map(|r| {
                        let n = |f: &str| r[f].as_u64().unwrap();
                        (
                            r["key"].as_str().unwrap().to_string(),
                            (
                                n("clicks"),
                                n("unique_clicks"),
                                n("installs"),
                                n("attributed_installs"),
                            ),
                        )
                    })
                    .collect();
                assert_eq!(got, want, "{dim} {range}{filter}");
                // Most clicks first, then installs, then key.
                let order: Vec<(std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String)> = rows
                    .iter()
                    .map(|r| {
                        (
                            std::cmp::Reverse(r["clicks"].as_u64().unwrap()),
                            std::cmp::Reverse(r["installs"].as_u64().unwrap()),
                            r["key"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                assert!(order.windows(2).all(|w| w[0] <= w[1]), "{dim} order: {v}");
                let cut = ctx
                    .ok(&format!(
                        "/v1/attribution/stats/breakdown?by={dim}&{range}{filter}&limit=2"
                    ))
                    .await;
                assert_eq!(
                    cut["rows"].as_array().unwrap()[..],
                    rows[..rows.len().min(2)],
                    "{dim} limit 2"
                );
            }
        }
    }
    // Bad parameters are named; another tenant sees none of it.
    for (query, field) in [
        ("", "by"),
        ("by=campaign", "by"),
        ("by=os&limit=0", "limit"),
        ("by=os&window=1y", "window"),
    ] {
        let (status, v) = ctx
            .get(&format!("/v1/attribution/stats/breakdown?{query}"))
            .await;
        assert_eq!(
            (status, v["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {v}"
        );
    }
    let other = ctx.env.tenant().await;
    let (status, v) = ctx
        .get_as(
            "/v1/attribution/stats/breakdown?by=country&window=30d",
            &other.secret_key,
        )
        .await;
    assert_eq!(
        (status, v["rows"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}
