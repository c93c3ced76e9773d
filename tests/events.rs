//! `POST /v1/events` against real Redis and ClickHouse: the batch contract's exact limits,
//! all-or-nothing validation, credentials, idempotency (replays and concurrent duplicates),
//! attribution through the install, and the rate limit.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::store::redis::IdClaim;
use sluice_testkit::*;

fn uuid4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = 0x40 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn event(install: &str) -> Value {
    json!({
        "event_name": "Purchase_Completed",
        "payload": {"currency": "USD", "amount": "9.99"},
        "event_datetime": sluice::time::rfc3339_from_ms(sluice::time::now_ms() - 60_000),
        "event_id": uuid4(),
        "installation_id": install,
    })
}

struct Ctx {
    env: TestEnv,
    server: sluice::server::Server,
    tenant: sluice::store::redis::NewTenant,
}

impl Ctx {
    async fn new() -> Ctx {
        let env = TestEnv::new();
        let server = env.start().await;
        let tenant = env.tenant().await;
        Ctx {
            env,
            server,
            tenant,
        }
    }

    async fn send_raw(&self, user: &str, password: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = http()
            .post(format!("{}/v1/events", base(&self.server)))
            .basic_auth(user, Some(password))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(&self, events: &[Value]) -> (u16, Value) {
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        self.send_raw(&self.tenant.tenant_id, &self.tenant.secret_key, body)
            .await
    }

    /// The tenant's stored events once `want` are there (or the count after 20 s). A 204
    /// means durable: in ClickHouse, or in the spill when another insert was in flight, and
    /// replayed from there moments later.
    async fn stored(&self, want: u64) -> u64 {
        let sql = format!(
            "SELECT count() FROM events WHERE tenant_id = '{}'",
            self.tenant.tenant_id
        );
        self.env.wait_for(&sql, want, Duration::from_secs(20)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_are_exact() {
    let ctx = Ctx::new().await;
    let batch: Vec<Value> = (0..1000).map(|_| event("dev-1")).collect();
    let (status, body) = ctx.send(&batch).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(ctx.stored(1000).await, 1000);

    let batch: Vec<Value> = (0..1001).map(|_| event("dev-1")).collect();
    let (status, body) = ctx.send(&batch).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many_items");

    // Bodies around 1 MB (1,000,000 bytes): exactly at the limit is taken, one byte more not.
    let sized = |len: usize| {
        let mut e = event("dev-1");
        let head = serde_json::to_vec(&json!({ "events": [e.clone()] }))
            .unwrap()
            .len();
        let pad = len - head - r#","pad":"""#.len();
        e["payload"]["pad"] = json!("x".repeat(pad));
        let body = serde_json::to_vec(&json!({ "events": [e] })).unwrap();
        assert_eq!(body.len(), len);
        body
    };
    let t = &ctx.tenant;
    let (status, body) = ctx
        .send_raw(&t.tenant_id, &t.secret_key, sized(1_000_000))
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = ctx
        .send_raw(&t.tenant_id, &t.secret_key, sized(1_000_001))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(ctx.stored(1001).await, 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_rejects_the_batch_and_names_it() {
    let ctx = Ctx::new().await;
    let mut batch: Vec<Value> = (0..50).map(|_| event("dev-1")).collect();
    batch[17]["event_id"] = json!("550e8400-e29b-11d4-a716-446655440000"); // a UUIDv1
    batch[31]["event_name"] = json!("x".repeat(65));
    batch[31]["payload"] = json!("not an object");
    let (status, body) = ctx.send(&batch).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_events");
    let errors = body["error"]["details"]["errors"].as_array().unwrap();
    let named: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        vec![(17, "event_id"), (31, "event_name"), (31, "payload")]
    );
    assert_eq!(
        ctx.stored(0).await,
        0,
        "nothing of a rejected batch is stored"
    );

    let t = &ctx.tenant;
    for bad in [
        &b"{\"events\": [{"[..],
        b"not json",
        b"[]",
        b"{\"events\": 5}",
    ] {
        let (status, body) = ctx
            .send_raw(&t.tenant_id, &t.secret_key, bad.to_vec())
            .await;
        assert_eq!(status, 400, "{}: {body}", String::from_utf8_lossy(bad));
        assert_eq!(body["error"]["code"], "invalid_json");
    }
    let ok = serde_json::to_vec(&json!({ "events": [event("dev-1")] })).unwrap();
    let other = ctx.env.tenant().await;
    for (user, password) in [
        (t.tenant_id.as_str(), "sk_wrong"),
        (t.tenant_id.as_str(), t.publishable_key.as_str()),
        (other.tenant_id.as_str(), t.secret_key.as_str()),
        ("", ""),
    ] {
        let (status, body) = ctx.send_raw(user, password, ok.clone()).await;
        assert_eq!(status, 401, "{user}:{password}: {body}");
    }
    let resp = http()
        .post(format!("{}/v1/events", base(&ctx.server)))
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(ctx.stored(0).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_batches_are_stored_once() {
    let ctx = Ctx::new().await;
    let batch: Vec<Value> = (0..200).map(|_| event("dev-1")).collect();
    assert_eq!(ctx.send(&batch).await.0, 204);
    assert_eq!(ctx.send(&batch).await.0, 204, "a replay is accepted");
    assert_eq!(ctx.stored(200).await, 200);

    // The same new batch sent four times at once: one copy stored.
    let batch: Vec<Value> = (0..300).map(|_| event("dev-2")).collect();
    let body = serde_json::to_vec(&json!({ "events": batch })).unwrap();
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{}/v1/events", base(&ctx.server));
            let (user, password) = (ctx.tenant.tenant_id.clone(), ctx.tenant.secret_key.clone());
            let body = body.clone();
            tokio::spawn(async move {
                let resp = http()
                    .post(url)
                    .basic_auth(user, Some(password))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), 204);
    }
    assert_eq!(ctx.stored(500).await, 500);
    // An id twice within one batch is one event; a partial replay stores only the new ones.
    let mut mixed = batch[..10].to_vec();
    let fresh = event("dev-3");
    mixed.push(fresh.clone());
    mixed.push(fresh);
    assert_eq!(ctx.send(&mixed).await.0, 204);
    assert_eq!(ctx.stored(501).await, 501);
    // Every request answered is finished, the pure replays too (they took nothing).
    let redis = ctx.env.redis().await;
    let tenant = ctx.tenant.tenant_id.as_str();
    assert_eq!(redis.requests_in_flight(tenant).await.unwrap(), 0);
    // Idempotency is per tenant: another tenant may use the same ids.
    let other = ctx.env.tenant().await;
    let body = serde_json::to_vec(&json!({ "events": &batch[..5] })).unwrap();
    let (status, _) = ctx
        .send_raw(&other.tenant_id, &other.secret_key, body)
        .await;
    assert_eq!(status, 204);
    let theirs = ctx
        .env
        .wait_for(
            &format!(
                "SELECT count() FROM events WHERE tenant_id = '{}'",
                other.tenant_id
            ),
            5,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(theirs, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_install_attribution() {
    let ctx = Ctx::new().await;
    let code = unique("ev");
    create_link(
        &ctx.server,
        &ctx.tenant.secret_key,
        json!({
            "id": code, "destination": "https://x.example/p?c={click_id}",
            "campaign": "spring", "source": "tiktok", "medium": "cpi"
        }),
    )
    .await;
    let click = attributed_install(
        &ctx.env,
        &ctx.server,
        &ctx.tenant.publishable_key,
        &code,
        "dev-attr",
    )
    .await;
    let mut known = event("dev-attr");
    known["event_name"] = json!("Level_Up");
    let unknown = event("dev-never-seen");
    assert_eq!(ctx.send(&[known.clone(), unknown.clone()]).await.0, 204);
    assert_eq!(ctx.stored(2).await, 2);
    let rows = ctx
        .env
        .ch(&format!(
            "SELECT install_id, event_name, attributed, match_type, lower(hex(click_id)), link_id, campaign, source, medium, payload \
             FROM events WHERE tenant_id = '{}' ORDER BY install_id FORMAT JSONCompact",
            ctx.tenant.tenant_id
        ))
        .await;
    let rows: Value = serde_json::from_str(&rows).unwrap();
    let data = rows["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        data[0],
        json!([
            "dev-attr",
            "level_up",
            1,
            "click_id",
            hex::encode(click.0),
            code,
            "spring",
            "tiktok",
            "cpi",
            known["payload"].to_string()
        ])
    );
    assert_eq!(
        data[1],
        json!([
            "dev-never-seen",
            "purchase_completed",
            0,
            "",
            "00000000000000000000000000000000",
            "",
            "",
            "",
            "",
            unknown["payload"].to_string()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_rate_limit_gets_429_then_recovers() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.rate_limit.tenant_per_second = 5.0;
    config.rate_limit.burst_seconds = 1.0;
    let server = sluice::server::Server::start(config).await.unwrap();
    let t = env.tenant().await;
    let send = |t: &sluice::store::redis::NewTenant| {
        let request = http()
            .post(format!("{}/v1/events", base(&server)))
            .basic_auth(&t.tenant_id, Some(&t.secret_key))
            .body(serde_json::to_vec(&json!({ "events": [event("dev-1")] })).unwrap());
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    // A burst of 12 at once against a bucket of 5.
    let burst: Vec<_> = (0..12).map(|_| send(&t)).collect();
    let mut ok = 0;
    let mut limited = Vec::new();
    for resp in burst {
        let resp = resp.await.unwrap();
        match resp.status().as_u16() {
            204 => ok += 1,
            429 => {
                let retry: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limited");
                limited.push(retry);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=7).contains(&ok), "about the burst admitted: {ok}");
    assert!(
        !limited.is_empty() && limited.iter().all(|r| (1..=2).contains(r)),
        "{limited:?}"
    );
    tokio::time::sleep(Duration::from_secs(limited[0])).await;
    assert_eq!(send(&t).await.unwrap().status(), 204, "recovered");
    // Another tenant has its own bucket.
    let other = env.tenant().await;
    assert_eq!(send(&other).await.unwrap().status(), 204);
    let stored = env
        .wait_for(
            &format!(
                "SELECT count() FROM events WHERE tenant_id = '{}'",
                t.tenant_id
            ),
            ok + 1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(stored, ok + 1, "refused requests stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_died_does_not_block_its_retry() {
    let ctx = Ctx::new().await;
    let redis = ctx.env.redis().await;
    let tenant = ctx.tenant.tenant_id.as_str();
    let now = sluice::time::now_ms();
    let pending = 120_000;
    let claim = |request: &str, now_ms| IdClaim {
        tenant: tenant.to_string(),
        namespace: "event",
        request: request.to_string(),
        now_ms,
    };
    // A request took these ids three minutes ago and never finished (its node died before
    // the rows were durable): the sender's retry is stored.
    let dead: Vec<Value> = (0..3).map(|_| event("dev-1")).collect();
    let taken = redis
        .take_ids(
            &claim("dead-request", now - 180_000),
            &ids_of(&dead),
            pending,
        )
        .await
        .unwrap();
    assert_eq!(taken, [true, true, true]);
    // A request still within its window holds its ids: a concurrent copy is a duplicate.
    let live: Vec<Value> = (0..2).map(|_| event("dev-1")).collect();
    redis
        .take_ids(&claim("live-request", now), &ids_of(&live), pending)
        .await
        .unwrap();
    let mut batch = dead.clone();
    batch.extend(live.iter().cloned());
    assert_eq!(ctx.send(&batch).await.0, 204);
    assert_eq!(ctx.stored(3).await, 3);
    // Once stored, the retried ids stand like any other, and the dead request, all of its
    // ids taken over, is no longer in flight (only the live one is).
    assert_eq!(ctx.send(&dead).await.0, 204);
    assert_eq!(ctx.stored(3).await, 3);
    assert_eq!(redis.requests_in_flight(tenant).await.unwrap(), 1);
}

/// The raw 16-byte event ids of `events`.
fn ids_of(events: &[Value]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| hex::decode(e["event_id"].as_str().unwrap().replace('-', "")).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_remembered_for_at_least_one_lifetime() {
    let ctx = Ctx::new().await;
    let redis = ctx.env.redis().await;
    let tenant = ctx.tenant.tenant_id.as_str();
    let ttl = sluice::conversions::IDEMPOTENCY_TTL_MS;
    let now = sluice::time::now_ms();
    let take = |ids: Vec<Vec<u8>>, now_ms| {
        let claim = IdClaim::new(tenant, "event", now_ms);
        let redis = &redis;
        async move {
            let taken = redis.take_ids(&claim, &ids, 120_000).await.unwrap();
            redis.finish_request(&claim).await.unwrap();
            taken
        }
    };
    // Taken a full lifetime ago (the previous generation): still a duplicate.
    let last_month = ids_of(&[event("dev-1"), event("dev-1")]);
    assert_eq!(take(last_month.clone(), now - ttl).await, [true, true]);
    assert_eq!(take(last_month, now).await, [false, false]);
    // Taken two lifetimes ago: forgotten (its generation has expired), taken again.
    let older = ids_of(&[event("dev-1")]);
    assert_eq!(take(older.clone(), now - 2 * ttl).await, [true]);
    assert_eq!(take(older, now).await, [true]);
    // Ids whose rows were refused are released (from whichever generation held them, the
    // previous one included after a takeover): a retry takes them again.
    let refused = IdClaim::new(tenant, "event", now);
    let ids = ids_of(&[event("dev-1"), event("dev-1")]);
    assert_eq!(
        redis.take_ids(&refused, &ids, 120_000).await.unwrap(),
        [true, true]
    );
    let taken: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
    redis.release_request(&refused, &taken).await.unwrap();
    assert_eq!(take(ids, now).await, [true, true]);
    // Events and conversions are separate namespaces.
    let shared = ids_of(&[event("dev-1")]);
    assert_eq!(take(shared.clone(), now).await, [true]);
    let conversion = IdClaim::new(tenant, "conversion", now);
    assert_eq!(
        redis.take_ids(&conversion, &shared, 120_000).await.unwrap(),
        [true]
    );
    redis.finish_request(&conversion).await.unwrap();
    assert_eq!(redis.requests_in_flight(tenant).await.unwrap(), 0);
}
