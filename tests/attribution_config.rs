//! `GET|PATCH /v1/attribution/config`: defaults, validation naming the field, per-tenant
//! storage, and secret keys only.

mod common;

use common::*;
use serde_json::{json, Value};

async fn call(method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, url).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut value: Value = resp.json().await.unwrap();
    // The generated report signing secret is checked here and left out of comparisons.
    if let Some(secret) = value
        .as_object_mut()
        .and_then(|o| o.remove("report_signing_secret"))
    {
        assert!(secret.as_str().unwrap().starts_with("whsec_"), "{secret}");
    }
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_validated_and_per_tenant() {
    let env = TestEnv::new();
    let server = env.start().await;
    let url = format!("{}/v1/attribution/config", base(&server));
    let a = env.tenant().await;
    let b = env.tenant().await;
    let defaults = json!({"click_lookback_days": 7, "fingerprint_window_minutes": 120, "fingerprint_enabled": true, "raw_retention_days": 400,
        "report_webhook_url": "", "report_signature_header": "X-Signature"});

    assert_eq!(
        call(reqwest::Method::GET, &url, &a.secret_key, None).await,
        (200, defaults.clone())
    );
    let (status, body) = call(
        reqwest::Method::PATCH,
        &url,
        &a.secret_key,
        Some(json!({"fingerprint_window_minutes": 30})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"click_lookback_days": 7, "fingerprint_window_minutes": 30, "fingerprint_enabled": true, "raw_retention_days": 400,
        "report_webhook_url": "", "report_signature_header": "X-Signature"})
    );

    // (patch, field named in the 400)
    let bad = [
        (json!({"click_lookback_days": 0}), "click_lookback_days"),
        (json!({"click_lookback_days": 31}), "click_lookback_days"),
        (
            json!({"fingerprint_window_minutes": 1441}),
            "fingerprint_window_minutes",
        ),
        (
            json!({"fingerprint_window_minutes": -5}),
            "fingerprint_window_minutes",
        ),
        (json!({"fingerprint_enabled": "yes"}), "fingerprint_enabled"),
        (json!({"click_lookback_days": 3, "colour": "red"}), "colour"),
    ];
    for (patch, field) in bad {
        let (status, body) = call(
            reqwest::Method::PATCH,
            &url,
            &a.secret_key,
            Some(patch.clone()),
        )
        .await;
        assert_eq!(status, 400, "{patch}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{patch}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{patch}: {body}");
    }
    // Nothing half-applied by the failures: the 3 days in the last bad patch did not stick.
    let (_, now) = call(reqwest::Method::GET, &url, &a.secret_key, None).await;
    assert_eq!(now["click_lookback_days"], 7);
    assert_eq!(now["fingerprint_window_minutes"], 30);

    // Another tenant keeps its own settings; a publishable key may not read or change them.
    assert_eq!(
        call(reqwest::Method::GET, &url, &b.secret_key, None).await,
        (200, defaults)
    );
    let (status, body) = call(reqwest::Method::GET, &url, &a.publishable_key, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("secret_key_required"))
    );
    let (status, _) = call(
        reqwest::Method::PATCH,
        &url,
        &a.publishable_key,
        Some(json!({"click_lookback_days": 1})),
    )
    .await;
    assert_eq!(status, 403);
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    server.shutdown().await;
    env.cleanup().await;
}
