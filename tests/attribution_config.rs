//! `GET|PATCH /v1/attribution/config`: defaults, validation naming the field, per-tenant
//! storage, and secret keys only.

use serde_json::{json, Value};
use sluice_testkit::*;

async fn call(method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let (status, mut value) = api(method, url, key, body).await;
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
        "report_webhook_url": "", "report_signature_header": "X-Signature", "report_signing_secret_set": false,
        "fraud_mode": "shadow", "min_ctit_seconds": 10, "max_ctit_hours": 24, "max_clicks_per_visitor_hour": 20});

    assert_eq!(
        call(reqwest::Method::GET, &url, &a.secret_key, None).await,
        (200, defaults.clone())
    );
    // A failed PATCH stores nothing, not even the signing secret a first PATCH generates.
    let (status, _) = call(
        reqwest::Method::PATCH,
        &url,
        &a.secret_key,
        Some(json!({"click_lookback_days": 99})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        call(reqwest::Method::GET, &url, &a.secret_key, None).await,
        (200, defaults.clone())
    );
    // The first PATCH that succeeds generates the secret and shows it once (`call` checks
    // it and leaves it out); later answers only say that one is set.
    let resp = http()
        .patch(&url)
        .bearer_auth(&a.secret_key)
        .json(&json!({"fingerprint_window_minutes": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let secret = body["report_signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{body}");
    let configured = json!({"click_lookback_days": 7, "fingerprint_window_minutes": 30, "fingerprint_enabled": true, "raw_retention_days": 400,
        "report_webhook_url": "", "report_signature_header": "X-Signature", "report_signing_secret_set": true,
        "fraud_mode": "shadow", "min_ctit_seconds": 10, "max_ctit_hours": 24, "max_clicks_per_visitor_hour": 20});
    for (method, patch) in [
        (reqwest::Method::GET, None),
        (
            reqwest::Method::PATCH,
            Some(json!({"fingerprint_window_minutes": 30})),
        ),
    ] {
        let resp = http()
            .request(method, &url)
            .bearer_auth(&a.secret_key)
            .json(&patch)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, configured, "the secret is not shown again");
    }
    let mut rotated: Value = http()
        .patch(&url)
        .bearer_auth(&a.secret_key)
        .json(&json!({"rotate_report_signing_secret": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated
        .as_object_mut()
        .and_then(|o| o.remove("report_signing_secret"))
        .expect("a rotation shows the new secret");
    assert_ne!(new_secret, json!(secret));
    assert_eq!(rotated, configured);

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
        (
            json!({"report_signing_secret": "mine"}),
            "report_signing_secret",
        ),
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
    // A body that is not an object names no field.
    for body in [json!([]), json!("x"), json!(null), json!(7)] {
        let (status, answer) = call(
            reqwest::Method::PATCH,
            &url,
            &a.secret_key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_json", "{body}: {answer}");
        assert!(answer["error"].get("details").is_none(), "{answer}");
    }
    // Nothing half-applied by the failures: the 3 days in a bad patch did not stick.
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
}
