//! The atomic flip (`redis/flip.lua`) against a real Redis: one click, one install, however
//! many race; retries get the same answer; windows, explicit candidates and tenants.

use sluice::attribution::MatchType;
use sluice::click::ClickId;
use sluice::store::redis::{Claim, Flip, FlipRequest, Redis};
use sluice_testkit::*;

const NOW: u64 = 1_795_305_600_000;
const WINDOW: u64 = 2 * 3_600_000;
const LOOKBACK: u64 = 7 * 86_400_000;

fn request<'a>(
    tenant: &'a str,
    install_id: &'a str,
    explicit: &'a [(MatchType, ClickId)],
) -> FlipRequest<'a> {
    FlipRequest {
        tenant,
        install_id,
        explicit,
        fingerprint: ("ios", 42),
        install_ms: NOW,
        now_ms: NOW,
        window_ms: WINDOW,
        lookback_ms: LOOKBACK,
    }
}

/// A fingerprint member as the writer stores it: the click id, then its facts.
fn member(click: ClickId) -> String {
    format!("{}|{{\"l\":\"promo\"}}", hex::encode(click.0))
}

async fn fingerprint(redis: &Redis, tenant: &str, click: ClickId, ts_ms: u64) {
    let mut pipe = redis::pipe();
    let key = redis.fingerprint_key(tenant, "ios", 42);
    pipe.zadd(&key, member(click), ts_ms)
        .ignore()
        .pexpire(&key, (WINDOW * 10) as i64)
        .ignore();
    redis.query_pipeline(&pipe).await.unwrap();
}

fn by_fingerprint(click: ClickId) -> Claim {
    Claim {
        how: MatchType::Fingerprint,
        click,
        member: Some(member(click)),
    }
}

fn by(how: MatchType, click: ClickId) -> Claim {
    Claim {
        how,
        click,
        member: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_race_one_wins() {
    let env = TestEnv::new();
    let redis = env.redis().await;
    let tenant = unique("t");
    let click = ClickId::new(NOW - 60_000);
    fingerprint(&redis, &tenant, click, NOW - 60_000).await;

    let racers: Vec<_> = (0..48)
        .map(|i| {
            let (redis, tenant) = (redis.clone(), tenant.clone());
            tokio::spawn(async move {
                let install = format!("device-{i}");
                (
                    install.clone(),
                    redis.flip(&request(&tenant, &install, &[])).await.unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        let (install, flip) = r.await.unwrap();
        match flip {
            Flip::Claimed(claim) => {
                assert_eq!(claim, by_fingerprint(click));
                winners.push(install);
            }
            Flip::Nothing => {}
            other => panic!("first call of {install} answered {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one install wins the click: {winners:?}"
    );
    // Retries get the first answer, winner and losers alike.
    let again = redis
        .flip(&request(&tenant, &winners[0], &[]))
        .await
        .unwrap();
    assert_eq!(again, Flip::Remembered(Some(by_fingerprint(click))));
    let loser = if winners[0] == "device-0" {
        "device-1"
    } else {
        "device-0"
    };
    assert_eq!(
        redis.flip(&request(&tenant, loser, &[])).await.unwrap(),
        Flip::Remembered(None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_explicit_candidates_and_tenants() {
    let env = TestEnv::new();
    let redis = env.redis().await;
    let tenant = unique("t");

    // Just outside the window: no match; exactly at its edge: match.
    let stale = ClickId::new(NOW - WINDOW - 1);
    fingerprint(&redis, &tenant, stale, NOW - WINDOW - 1).await;
    assert_eq!(
        redis.flip(&request(&tenant, "i-stale", &[])).await.unwrap(),
        Flip::Nothing
    );
    let edge = ClickId::new(NOW - WINDOW);
    fingerprint(&redis, &tenant, edge, NOW - WINDOW).await;
    assert_eq!(
        redis.flip(&request(&tenant, "i-edge", &[])).await.unwrap(),
        Flip::Claimed(by_fingerprint(edge))
    );

    // Newest first among several fingerprints.
    let older = ClickId::new(NOW - 600_000);
    let newer = ClickId::new(NOW - 300_000);
    fingerprint(&redis, &tenant, older, NOW - 600_000).await;
    fingerprint(&redis, &tenant, newer, NOW - 300_000).await;
    assert_eq!(
        redis.flip(&request(&tenant, "i-new", &[])).await.unwrap(),
        Flip::Claimed(by_fingerprint(newer))
    );

    // An explicit click id wins over the fingerprint; once claimed, another install cannot
    // take it by id and falls through to the remaining fingerprint.
    let explicit = ClickId::new(NOW - 86_400_000);
    let wanted = [(MatchType::ClickId, explicit)];
    assert_eq!(
        redis
            .flip(&request(&tenant, "i-k1", &wanted))
            .await
            .unwrap(),
        Flip::Claimed(by(MatchType::ClickId, explicit))
    );
    assert_eq!(
        redis
            .flip(&request(&tenant, "i-k2", &wanted))
            .await
            .unwrap(),
        Flip::Claimed(by_fingerprint(older))
    );
    // A click won by fingerprint cannot be claimed again by id.
    let by_id = [(MatchType::Referrer, newer)];
    assert_eq!(
        redis.flip(&request(&tenant, "i-k3", &by_id)).await.unwrap(),
        Flip::Nothing
    );

    // Fingerprinting off: no fingerprint match.
    let fresh = ClickId::new(NOW - 1_000);
    fingerprint(&redis, &tenant, fresh, NOW - 1_000).await;
    let mut off = request(&tenant, "i-off", &[]);
    off.window_ms = 0;
    assert_eq!(redis.flip(&off).await.unwrap(), Flip::Nothing);

    // Another tenant, same IP hash and platform: never sees this tenant's clicks.
    let other = unique("t");
    assert_eq!(
        redis.flip(&request(&other, "i-other", &[])).await.unwrap(),
        Flip::Nothing
    );
    assert_eq!(
        redis.flip(&request(&tenant, "i-mine", &[])).await.unwrap(),
        Flip::Claimed(by_fingerprint(fresh))
    );
}
