//! No request takes Sluice down: a panic costs its own request (500, counted, logged) and the
//! server, ring and pipeline go on; any method on any path, and any JSON body on any endpoint,
//! gets an answer that is not a 5xx (the stack is up, so not even 503).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};
use sluice_testkit::*;

/// Sends one raw HTTP/1.1 request and returns the status of its answer (`None`: no answer).
fn raw_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request).ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let line = std::str::from_utf8(&got).ok()?.lines().next()?.to_string();
    line.split(' ').nth(1)?.parse().ok()
}

/// Runs `cases` cases of the strategy `make` builds, off the async runtime (some strategies
/// cannot cross threads, so it is built there): each value becomes one raw request
/// (`request`), which must be answered, and not with a 5xx (the stack is up: not even 503).
async fn never_a_5xx<S: Strategy>(
    addr: SocketAddr,
    cases: u32,
    make: impl FnOnce() -> S + Send + 'static,
    request: impl Fn(S::Value) -> String + Send + 'static,
) {
    tokio::task::spawn_blocking(move || {
        let strategy = make();
        let mut runner = TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&strategy, |value| {
                let req = request(value);
                let status = raw_status(addr, req.as_bytes());
                prop_assert!(
                    matches!(status, Some(200..=499)),
                    "{req:?} answered {status:?}"
                );
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_costs_one_request_not_the_process() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.panic_route = true;
    let server = sluice::server::Server::start(config).await.unwrap();
    let b = base(&server);
    let c = http();
    let t = env.tenant().await;
    let code = unique("p");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    let panics = |route: &'static str| {
        let b = b.clone();
        async move { metric(&b, &format!("sluice_panics_total{{route=\"{route}\"}}")).await }
    };
    let (other, redirect) = (panics("other").await, panics("redirect").await);

    // Through hyper (an API route) and straight off the socket (the redirect's front).
    let resp = c.get(format!("{b}/v1/test/panic")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error", "{body}");
    let resp = c.get(format!("{b}/__panic")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error", "{body}");
    assert_eq!(panics("other").await, other + 1.0);
    assert_eq!(panics("redirect").await, redirect + 1.0);

    // A connection that carried a panicking redirect closes after its 500; the requests
    // pipelined behind it are not answered on it, but the next connection is served.
    let addr = server.addr;
    let statuses = tokio::task::spawn_blocking(move || {
        let pipelined = format!(
            "GET /__panic HTTP/1.1\r\nHost: x\r\n\r\nGET /{code} HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let first = raw_status(addr, pipelined.as_bytes());
        let again = raw_status(
            addr,
            format!("GET /{code}?click_id=after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        (first, again)
    })
    .await
    .unwrap();
    assert_eq!(statuses, (Some(500), Some(302)));

    // The ring and the pipeline went on: the click after the panics is stored.
    let stored = env
        .wait_for(
            "SELECT count() FROM clicks WHERE partner_click_id = 'after'",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(stored, 1);
    assert_eq!(
        c.get(format!("{b}/readyz")).send().await.unwrap().status(),
        200
    );
    server.shutdown().await;
}

/// Paths that reach every branch of the router, with arbitrary segments and characters.
fn path() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "/",
        "/v1",
        "/v1/",
        "/v1/links",
        "/v1/links/",
        "/v1/links/stats",
        "/v1/links//stats",
        "/v1/links/a/stats",
        "/v1/links/a/b/stats",
        "/v1/attribution/",
        "/v1/attribution/install",
        "/v1/attribution/deferred",
        "/v1/attribution/link",
        "/v1/attribution/config",
        "/v1/attribution/stats",
        "/v1/attribution/stats/by-source",
        "/v1/attribution/results",
        "/v1/attribution/reports",
        "/v1/attribution/reports/",
        "/v1/partners",
        "/v1/partners/",
        "/v1/partners/x/deliveries",
        "/v1/webhooks/",
        "/v1/webhooks//deliveries",
        "/v1/sources/",
        "/v1/sources/x/rotate",
        "/v1/sources//rotate",
        "/v1/events",
        "/v1/keys",
        "/v1/keys/",
        "/v1/openapi.json",
        "/w/",
        "/w",
        "/dashboard",
        "/dashboard/",
        "/metrics",
        "/healthz",
        "/readyz",
    ]);
    let tail = prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9_.~-]{0,12}",
            Just("/".to_string()),
            Just("stats".to_string()),
            Just("deliveries".to_string()),
            "%[0-9A-Fa-f]{2}",
            "%[^0-9A-Fa-f]{0,2}",
            "\\PC{1,3}",
        ],
        0..6,
    );
    let query = prop::option::of("[ -~]{0,40}");
    (prefix, tail, query).prop_map(|(p, t, q)| {
        let mut s = format!("{p}{}", t.concat());
        if let Some(q) = q {
            s.push('?');
            s.push_str(&q.replace([' ', '#'], "+"));
        }
        s
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
        ])
        .prop_map(str::to_string),
        "[A-Z]{1,10}",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_method_on_any_path_is_answered_without_a_5xx() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    create_link(
        &server,
        &t.secret_key,
        json!({"id": "a", "destination": "https://x.example/{sub1}"}),
    )
    .await;
    let key = prop::sample::select(vec![None, Some(t.secret_key), Some(t.publishable_key)]);
    let body = prop::option::of("\\PC{0,64}");
    never_a_5xx(
        server.addr,
        1500,
        move || (method(), path(), key, body),
        |(method, path, key, body)| {
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
            if let Some(key) = key {
                req.push_str(&format!("Authorization: Bearer {key}\r\n"));
            }
            let body = body.unwrap_or_default();
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            req
        },
    )
    .await;
    server.shutdown().await;
}

/// Every bad field is named: wrong types, missing and unknown fields, out-of-range times, on
/// every endpoint that takes a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_field_is_named() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let b = base(&server);
    let c = http();
    let day = 86_400_000;
    let at = |ms: u64| sluice::time::rfc3339_from_ms(ms);
    let now = sluice::time::now_ms();
    let install = |extra: Value| {
        let mut body = json!({"install_id": unique("i"), "platform": "android"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    // (method, path, key, body, field named)
    let cases: Vec<(reqwest::Method, &str, &str, Value, &str)> = vec![
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            install(json!({"clickid": "x"})),
            "clickid",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/deferred",
            &t.publishable_key,
            install(json!({"os": "17"})),
            "os",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            install(json!({"installed_at": "1999-12-31T23:59:59Z"})),
            "installed_at",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            install(json!({"installed_at": at(now + 2 * day)})),
            "installed_at",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            install(json!({"installed_at": "2026-01-01T00:00:00é:000"})),
            "installed_at",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            install(json!({"platform": 3})),
            "platform",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/install",
            &t.publishable_key,
            json!({"platform": "ios"}),
            "install_id",
        ),
        (
            reqwest::Method::PUT,
            "/v1/attribution/link",
            &t.publishable_key,
            json!({"install_id": "i", "user_id": "u", "userid": "u"}),
            "userid",
        ),
        (
            reqwest::Method::PUT,
            "/v1/attribution/link",
            &t.publishable_key,
            json!({"install_id": "i"}),
            "user_id",
        ),
        (
            reqwest::Method::POST,
            "/v1/links",
            &t.secret_key,
            json!({"destination": ["https://x.example/"]}),
            "destination",
        ),
        (
            reqwest::Method::POST,
            "/v1/links",
            &t.secret_key,
            json!({"destination": "https://x.example/", "campaign": 7}),
            "campaign",
        ),
        (
            reqwest::Method::POST,
            "/v1/partners",
            &t.secret_key,
            json!({"postbacks": {}}),
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/partners",
            &t.secret_key,
            json!({"name": "n", "share_revenue": "yes"}),
            "share_revenue",
        ),
        (
            reqwest::Method::POST,
            "/v1/webhooks",
            &t.secret_key,
            json!({"url": 5, "events": ["install"]}),
            "url",
        ),
        (
            reqwest::Method::POST,
            "/v1/webhooks",
            &t.secret_key,
            json!({"url": "https://x.example/h"}),
            "events",
        ),
        (
            reqwest::Method::POST,
            "/v1/sources",
            &t.secret_key,
            json!({"name": false}),
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/reports",
            &t.secret_key,
            json!({"end_date": "2026-01-01"}),
            "start_date",
        ),
        (
            reqwest::Method::POST,
            "/v1/attribution/reports",
            &t.secret_key,
            json!({"start_date": 20260101, "end_date": "2026-01-01"}),
            "start_date",
        ),
        (
            reqwest::Method::PATCH,
            "/v1/attribution/config",
            &t.secret_key,
            json!({"click_lookback_days": "7"}),
            "click_lookback_days",
        ),
    ];
    for (method, path, key, body, field) in cases {
        let resp = c
            .request(method.clone(), format!("{b}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], field,
            "{method} {path} {body}: {answer}"
        );
    }
    // Nothing of a refused install was stored: the install ids are unknown to a binding.
    let resp = c
        .put(format!("{b}/v1/attribution/link"))
        .bearer_auth(&t.publishable_key)
        .json(&json!({"install_id": "i", "user_id": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    server.shutdown().await;
}

/// Arbitrary JSON: scalars of every kind (Unicode strings, huge and negative numbers) nested
/// in arrays and objects, with the field names the endpoints know mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let names = prop_oneof![
        prop::sample::select(vec![
            "id",
            "destination",
            "campaign",
            "source",
            "medium",
            "paused",
            "expires_at",
            "partner_id",
            "install_id",
            "platform",
            "click_id",
            "installed_at",
            "install_referrer",
            "user_id",
            "name",
            "postbacks",
            "share_revenue",
            "url",
            "events",
            "source_type",
            "start_date",
            "end_date",
            "campaign_id",
            "click_lookback_days",
            "report_webhook_url",
            "event_name",
            "event_datetime",
            "event_id",
            "installation_id",
            "payload",
            "type",
            "amount_cents",
            "currency",
            "idempotency_key",
            "metadata",
            "install",
            "kind",
        ])
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        "\\PC{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "ios",
            "android",
            "web",
            "https://x.example/{click_id}",
            "2026-01-01T00:00:00Z",
            "2026-01-01",
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "install",
            "USD",
            "6f1e1b8e-4a2b-4c3d-9e8f-0a1b2c3d4e5f",
            "http://127.0.0.1/",
            "secret",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_json_body_on_any_endpoint_is_answered_without_a_5xx() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let b = base(&server);
    let webhook = default_webhook_url(&b, &t.secret_key).await;
    let webhook_path = webhook[webhook.find("/w/").unwrap()..].to_string();
    let endpoints: Vec<(&str, String)> = vec![
        ("POST", "/v1/attribution/install".into()),
        ("POST", "/v1/attribution/deferred".into()),
        ("PUT", "/v1/attribution/link".into()),
        ("PATCH", "/v1/attribution/config".into()),
        ("POST", "/v1/attribution/reports".into()),
        ("POST", "/v1/links".into()),
        ("PATCH", "/v1/links/missing".into()),
        ("POST", "/v1/partners".into()),
        ("POST", "/v1/webhooks".into()),
        ("POST", "/v1/sources".into()),
        ("POST", "/v1/events".into()),
        ("POST", "/v1/keys".into()),
        ("POST", webhook_path),
    ];
    let sk = t.secret_key;
    let endpoint = prop::sample::select(endpoints);
    never_a_5xx(server.addr, 1200, move || (endpoint, json_value()), move |((method, path), body)| {
        let body = body.to_string();
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {sk}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_query_on_the_stats_and_results_endpoints_is_answered_without_a_5xx() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    create_link(
        &server,
        &t.secret_key,
        json!({"id": unique("q"), "destination": "https://x.example/"}),
    )
    .await;
    let path = prop::sample::select(vec![
        "/v1/attribution/stats",
        "/v1/attribution/stats/by-campaign",
        "/v1/attribution/stats/by-source",
        "/v1/attribution/stats/timeseries",
        "/v1/attribution/results",
        "/v1/links/a/stats",
        "/v1/links",
        "/v1/partners/x/deliveries",
    ]);
    let name = prop::sample::select(vec![
        "window", "from", "to", "campaign", "source", "limit", "cursor", "x",
    ]);
    let value = prop_oneof![
        "\\PC{0,12}".prop_map(|v| {
            percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        }),
        prop::sample::select(vec![
            "7d",
            "30d",
            "0d",
            "-1",
            "99999999999999999999",
            "2026-01-01",
            "1999-01-01",
            "9999-12-31",
            "2026-02-30",
            "%FF",
            "%",
            "0",
            "1000000",
        ])
        .prop_map(str::to_string),
    ];
    let params = prop::collection::vec((name, value), 0..4);
    let sk = t.secret_key;
    never_a_5xx(server.addr, 400, move || (path, params), move |(path, params)| {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "GET {path}?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {sk}\r\n\r\n",
            query.join("&")
        )
    })
    .await;
    server.shutdown().await;
}

/// Each tenant may have so many links, sources, partners and webhooks (keys: tests/keys.rs);
/// past that a creation is 409 naming the limit, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_answer_409_naming_the_limit() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.limits.links = 2;
    config.limits.sources = 2; // the default source is one
    config.limits.partners = 1;
    config.limits.webhooks = 1;
    config.delivery.allow_private_targets = true;
    let server = sluice::server::Server::start(config).await.unwrap();
    let t = env.tenant().await;
    let b = base(&server);
    let c = http();
    let post = |path: &'static str, body: Value| {
        let (c, b, key) = (c.clone(), b.clone(), t.secret_key.clone());
        async move {
            let resp = c
                .post(format!("{b}{path}"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // (path, bodies that fit, one more, resource)
    let cases = [
        (
            "/v1/links",
            vec![json!({"destination": "https://x.example/"}); 2],
            "links",
        ),
        ("/v1/sources", vec![json!({"name": "shop"})], "sources"),
        ("/v1/partners", vec![json!({"name": "net"})], "partners"),
        (
            "/v1/webhooks",
            vec![json!({"url": "http://127.0.0.1:9/h", "events": ["install"]})],
            "webhooks",
        ),
    ];
    for (path, fit, resource) in cases {
        for body in &fit {
            let (status, answer) = post(path, body.clone()).await;
            assert_eq!(status, 201, "{path}: {answer}");
        }
        let (status, answer) = post(path, fit[0].clone()).await;
        assert_eq!(status, 409, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "limit_reached", "{answer}");
        assert_eq!(answer["error"]["details"]["resource"], resource, "{answer}");
    }
    let (_, links) = {
        let resp = c
            .get(format!("{b}/v1/links"))
            .bearer_auth(&t.secret_key)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(links["links"].as_array().unwrap().len(), 2, "{links}");
    server.shutdown().await;
}
