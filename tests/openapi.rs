//! `GET /v1/openapi.json` against the router: every operation the document describes is
//! served (not "no such route", not 405) and answers one of the statuses the document lists
//! for it. `tests/openapi/run.sh` then fuzzes the server with the document (Schemathesis).

use serde_json::{json, Value};
use sluice_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_as_documented() {
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    create_link(
        &server,
        &t.secret_key,
        json!({"id": "doc", "destination": "https://x.example/"}),
    )
    .await;
    let c = http();
    let resp = c.get(format!("{b}/v1/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (template, item) in paths {
        let path = template
            .replace("{code}", "doc")
            .replace("{id}", "missing")
            .replace("{token}", &"0".repeat(64));
        for (method, operation) in item.as_object().unwrap() {
            let mut req = c
                .request(method.to_uppercase().parse().unwrap(), format!("{b}{path}"))
                .bearer_auth(&t.secret_key);
            if operation.get("requestBody").is_some() {
                req = req.json(&json!({}));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {template} answered {status}, not among {:?}: {text}",
                documented.keys().collect::<Vec<_>>()
            );
            let unrouted = status == 404 && text.contains(r#""message":"no such route""#);
            assert!(
                status != 405 && !unrouted,
                "{method} {template} is not served: {status} {text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 45, "only {checked} operations");
    server.shutdown().await;
}

/// The routes the router serves, each with the document's path for it.
#[test]
fn every_route_is_documented() {
    let doc: Value =
        serde_json::from_str(include_str!("../src/http/openapi.json")).expect("valid JSON");
    let routes = [
        ("get", "/{code}"),
        ("head", "/{code}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/v1/openapi.json"),
        ("post", "/v1/attribution/install"),
        ("post", "/v1/attribution/deferred"),
        ("put", "/v1/attribution/link"),
        ("get", "/v1/attribution/config"),
        ("patch", "/v1/attribution/config"),
        ("get", "/v1/attribution/stats"),
        ("get", "/v1/attribution/stats/by-campaign"),
        ("get", "/v1/attribution/stats/by-source"),
        ("get", "/v1/attribution/stats/timeseries"),
        ("get", "/v1/attribution/stats/breakdown"),
        ("get", "/v1/attribution/results"),
        ("get", "/v1/attribution/installs/{install_id}"),
        ("get", "/v1/attribution/stats/ctit"),
        ("post", "/v1/attribution/reports"),
        ("post", "/v1/attribution/reports/test"),
        ("get", "/v1/attribution/reports/{id}"),
        ("get", "/v1/links"),
        ("post", "/v1/links"),
        ("post", "/v1/links/bulk"),
        ("get", "/v1/links/{id}"),
        ("patch", "/v1/links/{id}"),
        ("delete", "/v1/links/{id}"),
        ("get", "/v1/links/{id}/stats"),
        ("get", "/v1/links/{id}/qr"),
        ("post", "/v1/links/{id}/preview"),
        ("get", "/v1/keys"),
        ("post", "/v1/keys"),
        ("delete", "/v1/keys/{id}"),
        ("post", "/v1/events"),
        ("get", "/v1/sources"),
        ("post", "/v1/sources"),
        ("get", "/v1/sources/{id}"),
        ("delete", "/v1/sources/{id}"),
        ("post", "/v1/sources/{id}/rotate"),
        ("post", "/w/{token}"),
        ("get", "/v1/partners"),
        ("post", "/v1/partners"),
        ("get", "/v1/partners/{id}"),
        ("patch", "/v1/partners/{id}"),
        ("delete", "/v1/partners/{id}"),
        ("get", "/v1/partners/{id}/deliveries"),
        ("get", "/v1/webhooks"),
        ("post", "/v1/webhooks"),
        ("get", "/v1/webhooks/{id}"),
        ("delete", "/v1/webhooks/{id}"),
        ("get", "/v1/webhooks/{id}/deliveries"),
        ("get", "/v1/apps"),
        ("post", "/v1/apps"),
        ("get", "/v1/apps/{id}"),
        ("delete", "/v1/apps/{id}"),
        ("post", "/.well-known/skadnetwork/report-attribution/"),
        ("post", "/.well-known/appattribution/report-attribution/"),
        ("post", "/v1/skan/postbacks"),
        ("get", "/v1/skan/campaigns"),
        ("put", "/v1/skan/campaigns"),
        ("get", "/v1/skan/stats"),
    ];
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in src/http/openapi.json"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "an operation documented but not listed here"
    );
}
