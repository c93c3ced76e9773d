//! Routing on a real server (SPEC "Routing"): rules by each kind of fact a visitor carries,
//! first match wins, split tests that keep each visitor and store its variant, the `{country}`
//! and `{variant}` macros, bad rule bodies named by field, and one tenant's link out of
//! another's reach.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sluice_testkit::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

/// Addresses of MaxMind's test database: a US (Washington) one, a GB (England) one.
const US_WA: &str = "216.160.83.56";
const GB: &str = "81.2.69.160";

async fn visit(
    c: &reqwest::Client,
    url: &str,
    ip: &str,
    ua: &str,
    language: Option<&str>,
) -> String {
    let mut req = c
        .get(url)
        .header("x-forwarded-for", ip)
        .header("user-agent", ua);
    if let Some(language) = language {
        req = req.header("accept-language", language);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 302, "{url}");
    resp.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_each_visitor_and_splits_are_stored() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let c = http();
    let b = base(&server);
    let code = unique("routed");
    let split = json!([
        {"id": "a", "destination": "https://a.example/?v={variant}", "weight": 50},
        {"id": "b", "destination": "https://b.example/?v={variant}", "weight": 30},
        {"id": "c", "destination": "https://c.example/?v={variant}", "weight": 20},
    ]);
    let link = create_link(
        &server,
        &t.secret_key,
        json!({
            "id": code,
            "destination": "https://default.example/",
            "ios_destination": "https://apps.apple.com/app/id1",
            "rules": [
                {"when": {"country": ["US"], "platform": ["ios"]}, "destination": "https://us-ios.example/?c={country}"},
                {"when": {"language": ["de"]}, "destination": "https://de.example/"},
                {"when": {"ip_cidr": ["10.9.0.0/16"]}, "destination": "https://office.example/"},
                {"when": {"query": {"tier": ["gold"]}}, "destination": "https://gold.example/"},
                {"when": {"device": ["desktop"], "os": ["windows"]}, "destination": "https://windows.example/"},
                {"when": {"region": ["GB-ENG"], "browser": ["Chrome"]}, "destination": "https://england.example/{country}/{variant}"},
                {"when": {"platform": ["android"], "hours_utc": "0-24", "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
                 "split": [
                    {"id": "x", "destination": "https://x.example/?v={variant}&c={country}", "weight": 1},
                    {"id": "y", "destination": "https://y.example/?v={variant}&c={country}", "weight": 1},
                 ]},
            ],
            "split": split,
        }),
    )
    .await;
    assert_eq!(link["rules"].as_array().unwrap().len(), 7, "{link}");
    assert_eq!(link["split"], split);
    let url = format!("{b}/{code}");

    // (ip, user agent, Accept-Language, query, where it goes)
    let cases = [
        (US_WA, IPHONE, None, "", "https://us-ios.example/?c=US"),
        // Not the US: the iPhone takes no rule; the link's split, not its iOS destination.
        (
            "10.1.1.1",
            IPHONE,
            Some("de-AT,de;q=0.9,en;q=0.8"),
            "",
            "https://de.example/",
        ),
        (
            "10.9.3.4",
            MAC,
            Some("en-GB"),
            "",
            "https://office.example/",
        ),
        (
            "10.1.1.1",
            MAC,
            None,
            "?tier=gold&x=1",
            "https://gold.example/",
        ),
        ("10.1.1.1", MAC, None, "?tier=silver", ""),
        ("10.1.1.1", WINDOWS, None, "", "https://windows.example/"),
        // England on a Mac with Chrome? The Mac's browser is Safari: no.
        (GB, MAC, None, "", ""),
    ];
    for (ip, ua, language, query, want) in cases {
        let got = visit(&c, &format!("{url}{query}"), ip, ua, language).await;
        if want.is_empty() {
            assert!(
                [
                    "https://a.example/?v=a",
                    "https://b.example/?v=b",
                    "https://c.example/?v=c"
                ]
                .contains(&got.as_str()),
                "{ip} {ua} {query}: {got} (the link's split)"
            );
        } else {
            assert_eq!(got, want, "{ip} {ua} {language:?} {query}");
        }
    }
    // An Android visitor in England on Chrome: the region rule comes first, with its macros
    // (no split there: `{variant}` is empty).
    assert_eq!(
        visit(&c, &url, GB, ANDROID, None).await,
        "https://england.example/GB/"
    );
    // Elsewhere, the Android rule's split, with both macros.
    let android = visit(&c, &url, US_WA, ANDROID, None).await;
    assert!(
        ["https://x.example/?v=x&c=US", "https://y.example/?v=y&c=US"].contains(&android.as_str()),
        "{android}"
    );

    // A returning visitor keeps its variant; 200 visitors spread over all three.
    let mut first = HashMap::new();
    for round in 0..3 {
        for i in 0..200 {
            let ip = format!("10.{}.{}.7", 100 + i / 250, i % 250);
            let got = visit(&c, &url, &ip, MAC, None).await;
            if round == 0 {
                first.insert(ip, got);
            } else {
                assert_eq!(first[&ip], got, "{ip} changed variant");
            }
        }
    }
    let seen: HashSet<_> = first.values().collect();
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Each click stores its variant; clicks no split chose store none.
    let human = 7 + 2 + 600;
    let stored = env
        .wait_for(
            &format!("SELECT count() FROM clicks WHERE link_id = '{code}'"),
            human,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(stored, human);
    let by_variant = env
        .ch(&format!(
            "SELECT variant, count() FROM clicks WHERE link_id = '{code}' GROUP BY variant ORDER BY variant FORMAT CSV"
        ))
        .await;
    let counted: HashMap<String, u64> = by_variant
        .lines()
        .map(|l| {
            let (v, n) = l.split_once(',').unwrap();
            (v.trim_matches('"').to_string(), n.parse().unwrap())
        })
        .collect();
    let split_clicks: u64 = ["a", "b", "c"]
        .iter()
        .map(|v| counted.get(*v).copied().unwrap_or(0))
        .sum();
    assert_eq!(split_clicks, 600 + 2, "{by_variant}");
    assert_eq!(counted.get("").copied(), Some(6), "{by_variant}");
    assert_eq!(
        counted.get("x").copied().unwrap_or(0) + counted.get("y").copied().unwrap_or(0),
        1,
        "{by_variant}"
    );

    // The variant breakdown of the link says the same.
    eventually(
        "the variant breakdown counts every click",
        Duration::from_secs(10),
        || async {
            let (_, v) = api(
                Method::GET,
                &format!("{b}/v1/attribution/stats/breakdown?by=variant&link={code}"),
                &t.secret_key,
                None,
            )
            .await;
            let rows: HashMap<String, u64> = v["rows"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            (
                                r["key"].as_str().unwrap().to_string(),
                                r["clicks"].as_u64().unwrap(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            rows == counted
        },
    )
    .await;

    // A weight change re-buckets: some returning visitors move.
    let (s, v) = api(
        Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"split": [
            {"id": "a", "destination": "https://a.example/?v={variant}", "weight": 20},
            {"id": "b", "destination": "https://b.example/?v={variant}", "weight": 30},
            {"id": "c", "destination": "https://c.example/?v={variant}", "weight": 50},
        ]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut moved = 0;
    for (ip, before) in &first {
        moved += usize::from(visit(&c, &url, ip, MAC, None).await != *before);
    }
    assert!(moved > 40, "only {moved} of 200 visitors moved");

    // Rules cleared: the link's own destinations again (its split stays until cleared too).
    let (s, v) = api(
        Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"rules": [], "split": null})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("rules").is_none() && v.get("split").is_none(), "{v}");
    assert_eq!(
        visit(&c, &url, US_WA, IPHONE, None).await,
        "https://apps.apple.com/app/id1"
    );
    assert_eq!(
        visit(&c, &url, US_WA, MAC, None).await,
        "https://default.example/"
    );

    // Another tenant reaches none of it.
    let other = env.tenant().await;
    let (s, _) = api(
        Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &other.secret_key,
        Some(json!({"rules": [{"when": {}, "destination": "https://evil.example/"}]})),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        visit(&c, &url, US_WA, MAC, None).await,
        "https://default.example/"
    );
    server.shutdown().await;
}

/// Bad rule bodies answer 400 naming the field, and store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_are_named_by_field() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let b = base(&server);
    let dest = "https://x.example/";
    let variants = |n: usize, weight: u32| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"id": format!("v{i}"), "destination": dest, "weight": weight}))
            .collect()
    };
    let cases = [
        (
            json!({"rules": [{"when": {"colour": ["red"]}, "destination": dest}]}),
            "rules[0].when.colour",
        ),
        (
            json!({"rules": [{"when": {"country": []}, "destination": dest}]}),
            "rules[0].when.country",
        ),
        (
            json!({"rules": [{"when": {"ip_cidr": ["10.0.0.0/40"]}, "destination": dest}]}),
            "rules[0].when.ip_cidr[0]",
        ),
        (
            json!({"rules": [{"when": {"hours_utc": "20-30"}, "destination": dest}]}),
            "rules[0].when.hours_utc",
        ),
        (json!({"rules": [{"when": {}}]}), "rules[0].destination"),
        (json!({"split": variants(2, 0)}), "split"),
        (json!({"split": variants(17, 1)}), "split"),
        (
            json!({"rules": [{"when": {}, "split": variants(1, 1)}]}),
            "rules[0].split",
        ),
        (
            json!({"split": [{"id": "a", "destination": dest, "weight": -1}, {"id": "b", "destination": dest, "weight": 1}]}),
            "split[0].weight",
        ),
    ];
    for (extra, field) in cases {
        let code = unique("bad");
        let mut body = json!({"id": code, "destination": dest});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = api(
            Method::POST,
            &format!("{b}/v1/links"),
            &t.secret_key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, v["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
        let (s, _) = api(
            Method::GET,
            &format!("{b}/v1/links/{code}"),
            &t.secret_key,
            None,
        )
        .await;
        assert_eq!(s, 404, "nothing stored for {body}");
    }
    // On PATCH too, and the link is left as it was.
    let code = unique("kept");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": dest}),
    )
    .await;
    let (s, v) = api(
        Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"rules": [{"when": {"weekdays": ["someday"]}, "destination": dest}]})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["details"]["field"].as_str()),
        (400, Some("rules[0].when.weekdays[0]")),
        "{v}"
    );
    let (_, v) = api(
        Method::GET,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        None,
    )
    .await;
    assert!(v.get("rules").is_none(), "{v}");
    server.shutdown().await;
}

/// `click_cap`: human clicks on any node count toward it (bots and previews do not); the
/// click that reaches it is answered, later ones get 410 (or the fallback) on every node; a
/// raised cap keeps the count; a daily cap; bad caps named by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_caps_hold_across_nodes() {
    let env = TestEnv::new();
    let config = env.config();
    let node_a = sluice::server::Server::start(config.clone()).await.unwrap();
    let node_b = sluice::server::Server::start(another_node(config, "b"))
        .await
        .unwrap();
    let t = env.tenant().await;
    let c = http();
    let (a, b) = (base(&node_a), base(&node_b));
    let code = unique("capped");
    create_link(
        &node_a,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/", "click_cap": {"total": 4}}),
    )
    .await;
    let get = |base: String, ua: &'static str| {
        let (c, code) = (c.clone(), code.clone());
        async move {
            let resp = c
                .get(format!("{base}/{code}"))
                .header("user-agent", ua)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    // HEAD is a preview: it probes the link without counting.
    let probe = |base: String| {
        let (c, code) = (c.clone(), code.clone());
        async move {
            c.head(format!("{base}/{code}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    eventually("node b has the link", Duration::from_secs(5), || async {
        probe(b.clone()).await == 302
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(a.clone(), BOT).await, 302);
    }
    assert_eq!(get(a.clone(), MAC).await, 302);
    assert_eq!(get(a.clone(), MAC).await, 302);
    assert_eq!(get(b.clone(), MAC).await, 302);
    assert_eq!(probe(b.clone()).await, 302, "3 of 4");
    assert_eq!(
        get(b.clone(), MAC).await,
        302,
        "the 4th human click is answered"
    );
    for node in [&a, &b] {
        eventually(
            "both nodes stop the link",
            Duration::from_secs(5),
            || async { probe(node.clone()).await == 410 },
        )
        .await;
        assert_eq!(get(node.clone(), MAC).await, 410);
    }
    let human = format!(
        "SELECT count() FROM clicks WHERE link_id = '{code}' AND is_bot = 0 AND is_preview = 0"
    );
    assert_eq!(env.wait_for(&human, 4, Duration::from_secs(10)).await, 4);

    // Raised, it answers again, the count kept: 2 more, then stopped again.
    let (s, v) = api(
        Method::PATCH,
        &format!("{a}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"click_cap": {"total": 6}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["click_cap"], json!({"total": 6}));
    for node in [&a, &b] {
        eventually("the raised cap applies", Duration::from_secs(5), || async {
            probe(node.clone()).await == 302
        })
        .await;
        assert_eq!(get(node.clone(), MAC).await, 302);
    }
    for node in [&a, &b] {
        eventually("stopped at 6", Duration::from_secs(5), || async {
            probe(node.clone()).await == 410
        })
        .await;
    }
    assert_eq!(env.wait_for(&human, 6, Duration::from_secs(10)).await, 6);

    // A daily cap with a fallback.
    let daily = unique("daily");
    create_link(
        &node_a,
        &t.secret_key,
        json!({"id": daily, "destination": "https://x.example/", "fallback_url": "https://over.example/",
               "click_cap": {"daily": 1}}),
    )
    .await;
    let location = |base: String| {
        let (c, daily) = (c.clone(), daily.clone());
        async move {
            let resp = c
                .get(format!("{base}/{daily}"))
                .header("user-agent", MAC)
                .send()
                .await
                .unwrap();
            resp.headers()["location"].to_str().unwrap().to_string()
        }
    };
    eventually(
        "node b has the daily link",
        Duration::from_secs(5),
        || async {
            c.head(format!("{b}/{daily}"))
                .send()
                .await
                .unwrap()
                .status()
                == 302
        },
    )
    .await;
    assert_eq!(location(b.clone()).await, "https://x.example/");
    for node in [&a, &b] {
        eventually(
            "the daily cap sends to the fallback",
            Duration::from_secs(5),
            || async { location(node.clone()).await == "https://over.example/" },
        )
        .await;
    }

    for (cap, field) in [
        (json!({}), "click_cap"),
        (json!({"total": 0}), "click_cap.total"),
        (json!({"daily": -1}), "click_cap.daily"),
        (json!({"weekly": 5}), "click_cap.weekly"),
    ] {
        let (s, v) = api(
            Method::POST,
            &format!("{a}/v1/links"),
            &t.secret_key,
            Some(json!({"destination": "https://x.example/", "click_cap": cap})),
        )
        .await;
        assert_eq!(
            (s, v["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{cap}: {v}"
        );
    }
    node_b.shutdown().await;
    node_a.shutdown().await;
}

/// A split variant follows its click: the install matched by click id stores it, a deferred
/// deep link goes to the variant's destination, and the install and its user's conversion are
/// counted under the variant, the country, the platform and sub1 in breakdowns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_follows_its_install_and_conversions() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let c = http();
    let b = base(&server);
    let code = unique("splitapp");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/",
        "split": [
            {"id": "red", "destination": "https://red.example/?c={click_id}", "weight": 1},
            {"id": "blue", "destination": "https://blue.example/?c={click_id}", "weight": 1},
        ]}),
    )
    .await;
    // Clicks from England (MaxMind's test address) with sub1, until both variants are seen.
    let mut clicks: HashMap<String, String> = HashMap::new();
    let mut n = 0;
    while clicks.len() < 2 {
        n += 1;
        let ua = format!("{ANDROID} n{n}");
        let loc = visit(&c, &format!("{b}/{code}?sub1=s-{n}"), GB, &ua, None).await;
        let variant = if loc.starts_with("https://red.example/") {
            "red"
        } else {
            "blue"
        };
        clicks
            .entry(variant.to_string())
            .or_insert(loc[loc.len() - 36..].to_string());
        assert!(n < 64, "never saw both variants");
    }
    let red_click = sluice::click::ClickId::parse(&clicks["red"]).unwrap();
    env.wait_for_click(red_click.0).await;
    // The deferred check for the red click answers the red destination.
    let resp = c
        .post(format!("{b}/v1/attribution/deferred"))
        .bearer_auth(&t.publishable_key)
        .json(&json!({"install_id": "i-red", "platform": "android", "click_id": clicks["red"]}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        v["target"]["url"],
        format!("https://red.example/?c={}", clicks["red"]),
        "{v}"
    );
    let (s, v) = api(
        Method::PUT,
        &format!("{b}/v1/attribution/link"),
        &t.publishable_key,
        Some(json!({"install_id": "i-red", "user_id": "u-red"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let hook = default_webhook_url(&b, &t.secret_key).await;
    let resp = c
        .post(&hook)
        .json(&json!({"user_id": "u-red", "type": "purchase", "amount_cents": 499, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        env.wait_for(
            "SELECT count() FROM installs WHERE variant = 'red'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    // Every dimension the install and conversion carry counts them under the red click's value.
    let sub1 = clicks_sub1(&env, &clicks["red"]).await;
    for (dim, key) in [
        ("variant", "red"),
        ("country", "GB"),
        ("platform", "android"),
        ("sub1", sub1.as_str()),
        ("link", code.as_str()),
    ] {
        eventually(&format!("the install and conversion under {dim}={key}"), Duration::from_secs(10), || async {
            let (_, v) = api(
                Method::GET,
                &format!("{b}/v1/attribution/stats/breakdown?by={dim}"),
                &t.secret_key,
                None,
            )
            .await;
            v["rows"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["key"] == key
                        && r["installs"] == 1
                        && r["attributed_installs"] == 1
                        && r["conversions"] == json!([{"type": "purchase", "count": 1, "sum_cents": 499, "currency": "USD"}])
                })
            })
        })
        .await;
    }
    server.shutdown().await;
}

/// The sub1 a click (by its hyphenated id) was stored with.
async fn clicks_sub1(env: &TestEnv, click: &str) -> String {
    env.ch(&format!(
        "SELECT sub1 FROM clicks WHERE click_id = unhex('{}')",
        click.replace('-', "")
    ))
    .await
    .trim()
    .to_string()
}

/// `POST /v1/links/{id}/preview`: where the stored link, or a draft of its rules and split,
/// sends a described visitor — the same variant the redirect gives that address and user agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_answer_as_the_redirect_does() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let c = http();
    let b = base(&server);
    let code = unique("preview");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/", "ios_destination": "https://apps.example/{click_id}",
               "rules": [
                   {"when": {"country": ["DE"]}, "destination": "https://de.example/?c={click_id}&s={sub1}"},
                   {"when": {"region": ["US-CA"], "hours_utc": "8-20"}, "destination": "https://ca.example/"},
               ],
               "split": [
                   {"id": "a", "destination": "https://a.example/?v={variant}", "weight": 1},
                   {"id": "b", "destination": "https://b.example/?v={variant}", "weight": 1},
               ]}),
    )
    .await;
    let preview = |body: serde_json::Value| {
        let (b, key, code) = (b.clone(), t.secret_key.clone(), code.clone());
        async move {
            api(
                Method::POST,
                &format!("{b}/v1/links/{code}/preview"),
                &key,
                Some(body),
            )
            .await
        }
    };
    // (request, rule, variant, destination)
    let cases = [
        (
            json!({"visitor": {"country": "de"}}),
            json!(0),
            json!(null),
            "https://de.example/?c={click_id}&s={sub1}",
        ),
        (
            json!({"visitor": {"country": "US", "region": "US-CA", "at": "2026-12-05T09:00:00Z"}}),
            json!(1),
            json!(null),
            "https://ca.example/",
        ),
        (
            json!({"visitor": {"country": "US", "region": "US-CA", "at": "2026-12-05T21:00:00Z"}, "split": null, "rules": null}),
            json!(null),
            json!(null),
            "https://x.example/",
        ),
        (
            json!({"visitor": {"country": "DE", "platform": "ios"}, "rules": [], "split": null}),
            json!(null),
            json!(null),
            "https://apps.example/{click_id}",
        ),
        (
            json!({"visitor": {"country": "FR"}, "rules": [{"when": {"country": ["FR"]}, "destination": "https://fr.example/"}]}),
            json!(0),
            json!(null),
            "https://fr.example/",
        ),
    ];
    for (body, rule, variant, destination) in cases {
        let (s, v) = preview(body.clone()).await;
        assert_eq!(s, 200, "{body}: {v}");
        assert_eq!(
            (&v["rule"], &v["variant"], v["destination"].as_str()),
            (&rule, &variant, Some(destination)),
            "{body}"
        );
        assert_eq!(v["gone"], false);
    }
    // A visitor's variant is the one the redirect gives its address and user agent.
    for i in 1..=20 {
        let ip = format!("203.0.113.{i}");
        let (_, v) = preview(json!({"visitor": {"ip": ip, "user_agent": MAC}})).await;
        let variant = v["variant"].as_str().unwrap().to_string();
        let got = visit(&c, &format!("{b}/{code}"), &ip, MAC, None).await;
        assert_eq!(
            got,
            format!("https://{variant}.example/?v={variant}"),
            "{ip}"
        );
    }
    // Bad visitors and drafts are named by field; another tenant's link is not found.
    for (body, field) in [
        (
            json!({"visitor": {"platform": "windows"}}),
            "visitor.platform",
        ),
        (json!({"visitor": {"ip": "nope"}}), "visitor.ip"),
        (json!({"visitor": {"at": "today"}}), "visitor.at"),
        (json!({"visitor": {"colour": "red"}}), "visitor.colour"),
        (
            json!({"rules": [{"when": {"country": []}, "destination": "https://x.example/"}]}),
            "rules[0].when.country",
        ),
        (
            json!({"split": [{"id": "a", "destination": "https://x.example/", "weight": 0}, {"id": "b", "destination": "https://x.example/", "weight": 0}]}),
            "split",
        ),
    ] {
        let (s, v) = preview(body.clone()).await;
        assert_eq!(
            (s, v["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }
    let other = env.tenant().await;
    let (s, _) = api(
        Method::POST,
        &format!("{b}/v1/links/{code}/preview"),
        &other.secret_key,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 404);
    // A paused link says so.
    api(
        Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"paused": true})),
    )
    .await;
    let (_, v) = preview(json!({})).await;
    assert_eq!(v["gone"], true, "{v}");
    server.shutdown().await;
}
