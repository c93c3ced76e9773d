//! No request takes Sluice down: a panic costs its own request (500, counted, logged) and the
//! server, ring and pipeline go on; any method on any path, and any JSON body on any endpoint,
//! gets an answer that is not a 5xx (other than 503).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_costs_one_request_not_the_process() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.panic_route = true;
    let server = sluice::app::Server::start(config).await.unwrap();
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
    env.cleanup().await;
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
    let addr = server.addr;
    let (sk, pk) = (t.secret_key.clone(), t.publishable_key.clone());
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 1500,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let key = prop::sample::select(vec![None, Some(sk), Some(pk)]);
        let body = prop::option::of("\\PC{0,64}");
        runner
            .run(
                &(method(), path(), key, body),
                |(method, path, key, body)| {
                    let mut req =
                        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
                    if let Some(key) = key {
                        req.push_str(&format!("Authorization: Bearer {key}\r\n"));
                    }
                    let body = body.unwrap_or_default();
                    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
                    let status = raw_status(addr, req.as_bytes());
                    prop_assert!(
                        matches!(status, Some(200..=499 | 503)),
                        "{req:?} answered {status:?}"
                    );
                    Ok(())
                },
            )
            .unwrap();
    })
    .await
    .unwrap();
    server.shutdown().await;
    env.cleanup().await;
}
