//! API keys (SPEC "Keys"): listed by id and prefix, created (shown once), revoked on every
//! node within a second, the last secret key kept; the per-tenant limit; the operator CLI.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_testkit::*;

async fn call(
    b: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api(method, &format!("{b}{path}"), key, body).await
}

/// The status a request with `key` gets on an authenticated endpoint.
async fn status_with(b: &str, key: &str) -> u16 {
    call(b, reqwest::Method::GET, "/v1/sources", key, None)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_created_and_revoked_on_every_node() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.limits.keys = 4;
    let one = sluice::server::Server::start(config.clone()).await.unwrap();
    let two = sluice::server::Server::start(another_node(config, "two"))
        .await
        .unwrap();
    let (b1, b2) = (base(&one), base(&two));
    let t = env.tenant().await;
    let other = env.tenant().await;
    use reqwest::Method;

    // A new tenant's two keys, listed by prefix; neither key nor hash is shown.
    let (status, list) = call(&b1, Method::GET, "/v1/keys", &t.secret_key, None).await;
    assert_eq!(status, 200, "{list}");
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{list}");
    let original_sk = keys.iter().find(|k| k["kind"] == "secret").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        keys.iter()
            .map(|k| k["prefix"].as_str().unwrap())
            .collect::<std::collections::BTreeSet<_>>(),
        [&t.secret_key[..11], &t.publishable_key[..11]]
            .into_iter()
            .collect()
    );
    let text = list.to_string();
    assert!(!text.contains(&t.secret_key) && !text.contains(&t.publishable_key));
    assert!(!text.contains(&sluice::keys::hash(&t.secret_key)));
    // The secret key was used for that very listing: its use is noted in the background.
    let mut used = Value::Null;
    for _ in 0..50 {
        let (_, list) = call(&b1, Method::GET, "/v1/keys", &t.secret_key, None).await;
        used = list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "secret")
            .unwrap()["last_used_at"]
            .clone();
        if used.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(used.is_string(), "last_used_at never set");
    // A publishable key may not manage keys.
    assert_eq!(
        call(&b1, Method::GET, "/v1/keys", &t.publishable_key, None)
            .await
            .0,
        403
    );
    // Bad bodies name the field.
    for (body, field) in [
        (json!({}), "kind"),
        (json!({"kind": "admin"}), "kind"),
        (json!({"kind": "secret", "x": 1}), "x"),
    ] {
        let (status, answer) = call(
            &b1,
            Method::POST,
            "/v1/keys",
            &t.secret_key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }

    // A second secret key works on both nodes at once.
    let (status, created) = call(
        &b1,
        Method::POST,
        "/v1/keys",
        &t.secret_key,
        Some(json!({"kind": "secret"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let new_sk = created["key"].as_str().unwrap().to_string();
    assert!(new_sk.starts_with("sk_") && created["prefix"] == json!(&new_sk[..11]));
    assert_eq!(status_with(&b1, &new_sk).await, 200);
    assert_eq!(status_with(&b2, &new_sk).await, 200);
    let (_, pk) = call(
        &b1,
        Method::POST,
        "/v1/keys",
        &t.secret_key,
        Some(json!({"kind": "publishable"})),
    )
    .await;
    assert!(pk["key"].as_str().unwrap().starts_with("pk_"), "{pk}");
    // Four active keys is this test's limit.
    let (status, answer) = call(
        &b1,
        Method::POST,
        "/v1/keys",
        &t.secret_key,
        Some(json!({"kind": "secret"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("limit_reached")),
        "{answer}"
    );

    // Revoking the original secret key: node two had it cached a moment ago, and still
    // refuses it within a second.
    assert_eq!(status_with(&b2, &t.secret_key).await, 200);
    let (status, _) = call(
        &b1,
        Method::DELETE,
        &format!("/v1/keys/{original_sk}"),
        &new_sk,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        status_with(&b1, &t.secret_key).await,
        401,
        "refused at once where revoked"
    );
    eventually(
        "the revoked key refused on the other node within 1 s",
        Duration::from_millis(1_500),
        || async { status_with(&b2, &t.secret_key).await == 401 },
    )
    .await;
    // Revoking again is harmless; the listing says when.
    assert_eq!(
        call(
            &b1,
            Method::DELETE,
            &format!("/v1/keys/{original_sk}"),
            &new_sk,
            None
        )
        .await
        .0,
        204
    );
    let (_, list) = call(&b1, Method::GET, "/v1/keys", &new_sk, None).await;
    let revoked = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == json!(original_sk))
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string(), "{list}");
    // A revoked key frees its place under the limit.
    assert_eq!(
        call(
            &b1,
            Method::POST,
            "/v1/keys",
            &new_sk,
            Some(json!({"kind": "publishable"}))
        )
        .await
        .0,
        201
    );

    // The last active secret key stays; another tenant's key id is not found.
    let new_id = created["id"].as_str().unwrap();
    let (status, answer) = call(
        &b1,
        Method::DELETE,
        &format!("/v1/keys/{new_id}"),
        &new_sk,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("last_secret_key")),
        "{answer}"
    );
    assert_eq!(status_with(&b1, &new_sk).await, 200);
    assert_eq!(
        call(
            &b1,
            Method::DELETE,
            &format!("/v1/keys/{new_id}"),
            &other.secret_key,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&b1, Method::DELETE, "/v1/keys/key_nope", &new_sk, None)
            .await
            .0,
        404
    );

    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_two_secret_keys_revoked_at_once_leave_one() {
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    let (status, _) = call(
        &b,
        reqwest::Method::POST,
        "/v1/keys",
        &t.secret_key,
        Some(json!({"kind": "secret"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, list) = call(&b, reqwest::Method::GET, "/v1/keys", &t.secret_key, None).await;
    let secrets: Vec<String> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "secret")
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(secrets.len(), 2);
    // Straight at the store: over HTTP each revocation needs a secret key of its own to ask
    // with, and the one revoked first could be the other's.
    let redis = env.redis().await;
    let (x, y) = tokio::join!(
        redis.revoke_key(&t.tenant_id, &secrets[0]),
        redis.revoke_key(&t.tenant_id, &secrets[1])
    );
    use sluice::store::redis::Revocation;
    let outcomes = [x.unwrap(), y.unwrap()];
    assert!(
        outcomes.contains(&Revocation::Revoked) && outcomes.contains(&Revocation::LastSecret),
        "{outcomes:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_issued_before_listing_are_listed_once_used() {
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    // A key as Sluice stored them before keys were listed: a lookup record only.
    let legacy = sluice::keys::generate(sluice::keys::KeyKind::Secret);
    let mut c = redis_conn().await;
    let _: () = redis::AsyncCommands::set(
        &mut c,
        format!("{}:key:{}", env.prefix, sluice::keys::hash(&legacy)),
        json!({"tenant_id": t.tenant_id, "kind": "secret"}).to_string(),
    )
    .await
    .unwrap();
    let (status, list) = call(&b, reqwest::Method::GET, "/v1/keys", &legacy, None).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["prefix"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&&legacy[..11]), "{list}");
    assert_eq!(listed.len(), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_keys_with_the_cli() {
    let env = TestEnv::new();
    let server = env.start().await;
    let b = base(&server);
    let t = env.tenant().await;
    let sluice = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .envs(env.env())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (ok, out, err) = sluice(&["key", "create", "--tenant", &t.tenant_id]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(status_with(&b, key).await, 200);
    let (ok, out, _) = sluice(&["key", "list", "--tenant", &t.tenant_id]);
    assert!(ok);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(!out.contains(key));
    // Revoke the tenant's original secret key, then refuse to revoke the last one.
    let original = lines
        .iter()
        .find(|k| k["prefix"] == json!(&t.secret_key[..11]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = sluice(&["key", "revoke", "--tenant", &t.tenant_id, &original]);
    assert!(ok, "{err}");
    eventually(
        "a key revoked by the CLI refused within 1 s",
        Duration::from_millis(1_500),
        || async { status_with(&b, &t.secret_key).await == 401 },
    )
    .await;
    let (ok, _, err) = sluice(&[
        "key",
        "revoke",
        "--tenant",
        &t.tenant_id,
        created["id"].as_str().unwrap(),
    ]);
    assert!(!ok && err.contains("last active secret key"), "{err}");
    let (ok, _, err) = sluice(&["key", "list", "--tenant", "t_nobody"]);
    assert!(!ok && err.contains("no tenant"), "{err}");
    server.shutdown().await;
}
