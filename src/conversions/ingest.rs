//! The one ingest path for events and conversions. Each item may carry an id that is taken
//! once per tenant for 30 days (an event id, an idempotency key; the first item with an id
//! in a request takes it, later ones are duplicates) and an install whose remembered
//! attribution it inherits. Taken items are encoded, handed to the pipeline, and the request
//! waits until they are durable (ClickHouse or the fsynced spill) before its ids stand and
//! its deliveries are queued; rows that never become durable release their ids, so a retry
//! is stored.

use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use serde_json::{json, Value};
use tracing::warn;

use super::conversion::{self, Conversion};
use super::event::{self, Event};
use crate::attribution::install::InstallAttribution;
use crate::click::ClickId;
use crate::delivery::fanout::{self, Fact};
use crate::delivery::partner::decimal;
use crate::error::{Error, ItemError};
use crate::metrics::Metrics;
use crate::pipeline::batch::{BatchKind, Facts};
use crate::pipeline::ring::RowQueue;
use crate::store::redis::{IdClaim, Redis};
use crate::time;

/// How long a request may hold ids before what they guard is durable: if its node dies
/// first, a retry past this window takes the ids over and is stored.
const PENDING_KEY_MS: u64 = 120_000;
/// How long a request waits for its rows to become durable before answering 503.
const DURABLE_WAIT: Duration = Duration::from_secs(30);

/// What ingestion works with.
pub struct Context<'a> {
    pub redis: &'a Redis,
    pub rows: &'a RowQueue,
    pub delivery: &'a crate::delivery::Context,
    pub metrics: &'static Metrics,
}

/// One item to ingest.
struct Item<'a> {
    /// Taken once per tenant (`None`: always stored).
    id: Option<&'a [u8]>,
    /// The install whose attribution it inherits (empty: none).
    install_id: &'a str,
}

/// The shared path. `encode` appends item `i`'s row; `fact` makes its delivery. Answers
/// which items were stored (the rest were duplicates) and the attributions found.
#[allow(clippy::too_many_arguments)]
async fn ingest<'a>(
    ctx: &Context<'_>,
    tenant: &str,
    kind: BatchKind,
    namespace: &'static str,
    items: &[Item<'a>],
    size_hint: usize,
    mut encode: impl FnMut(usize, &mut Facts, Option<&InstallAttribution>),
    fact: impl Fn(usize, Option<&InstallAttribution>) -> Fact,
) -> Result<(Vec<bool>, AHashMap<&'a str, InstallAttribution>), Error> {
    if ctx.rows.is_full(size_hint) {
        return Err(busy());
    }
    // The first item with an id takes it: `slot[i]` is its place in `ids`, `usize::MAX`
    // for a later item with the same id (a duplicate).
    let mut seen = AHashSet::new();
    let mut ids = Vec::new();
    let slot: Vec<Option<usize>> = items
        .iter()
        .map(|item| {
            let id = item.id?;
            if !seen.insert(id) {
                return Some(usize::MAX);
            }
            ids.push(id.to_vec());
            Some(ids.len() - 1)
        })
        .collect();
    let installs: Vec<&str> = {
        let mut distinct = AHashSet::new();
        items
            .iter()
            .map(|i| i.install_id)
            .filter(|i| !i.is_empty() && distinct.insert(*i))
            .collect()
    };
    let claim = IdClaim::new(tenant, namespace, time::now_ms());
    let (taken, attributions) = tokio::try_join!(
        ctx.redis.take_ids(&claim, &ids, PENDING_KEY_MS),
        attributions(ctx.redis, tenant, &installs)
    )?;
    let stored: Vec<bool> = slot
        .iter()
        .map(|s| s.is_none_or(|s| taken.get(s).copied().unwrap_or(false)))
        .collect();

    let mut facts = Facts::new(kind);
    facts.data.reserve(size_hint + items.len() * 96);
    for (i, item) in items.iter().enumerate().filter(|(i, _)| stored[*i]) {
        encode(i, &mut facts, attributions.get(item.install_id));
    }
    if facts.rows.is_empty() {
        return Ok((stored, attributions));
    }
    let taken_ids: Vec<&[u8]> = ids
        .iter()
        .zip(&taken)
        .filter(|(_, t)| **t)
        .map(|(id, _)| id.as_slice())
        .collect();
    store_durably(ctx, facts, &claim, &taken_ids).await?;
    let any_partner = attributions.values().any(|a| !a.partner_id.is_empty());
    if fanout::wanted(ctx.delivery, tenant, any_partner).await {
        let delivered = items
            .iter()
            .enumerate()
            .filter(|(i, _)| stored[*i])
            .map(|(i, item)| fact(i, attributions.get(item.install_id)))
            .collect();
        fanout::deliver(ctx.delivery, tenant, delivered).await;
    }
    Ok((stored, attributions))
}

/// Stores `facts` (one request's rows) once per `id`: takes the id within `namespace` for 30
/// days and stores durably; false when the id was taken before (a duplicate, nothing stored).
pub async fn store_once(
    ctx: &Context<'_>,
    tenant: &str,
    namespace: &'static str,
    id: &[u8],
    facts: Facts,
) -> Result<bool, Error> {
    if ctx.rows.is_full(facts.data.len()) {
        return Err(busy());
    }
    let claim = IdClaim::new(tenant, namespace, time::now_ms());
    let taken = ctx
        .redis
        .take_ids(&claim, &[id.to_vec()], PENDING_KEY_MS)
        .await?;
    if !taken.first().copied().unwrap_or(false) {
        return Ok(false);
    }
    store_durably(ctx, facts, &claim, &[id]).await?;
    Ok(true)
}

/// The remembered attribution of each install that has one.
async fn attributions<'a>(
    redis: &Redis,
    tenant: &str,
    installs: &[&'a str],
) -> Result<AHashMap<&'a str, InstallAttribution>, crate::store::redis::RedisError> {
    let keys: Vec<String> = installs
        .iter()
        .map(|i| redis.attribution_key(tenant, i))
        .collect();
    let found = redis.mget(&keys).await?;
    Ok(installs
        .iter()
        .zip(found)
        .filter_map(|(install, raw)| {
            let raw = raw?;
            match serde_json::from_str(&raw) {
                Ok(a) => Some((*install, a)),
                Err(error) => {
                    warn!(%error, "unreadable install attribution; treated as unknown");
                    None
                }
            }
        })
        .collect())
}

/// Hands a request's rows to the pipeline and waits until they are durable, then marks the
/// request finished so its ids stand. Refused rows release the ids.
async fn store_durably(
    ctx: &Context<'_>,
    facts: Facts,
    claim: &IdClaim,
    taken: &[&[u8]],
) -> Result<(), Error> {
    let (facts, durable) = facts.with_receipt();
    if ctx.rows.push(facts).is_err() {
        ctx.redis.release_request(claim, taken).await?;
        return Err(busy());
    }
    let (claim, redis) = (claim.clone(), ctx.redis.clone());
    let finished = async move {
        if let Err(error) = redis.finish_request(&claim).await {
            // The ids hold for the pending window; past it a retry would be stored again.
            warn!(%error, "could not mark an ingest request finished");
        }
    };
    let mut durable = durable;
    match tokio::time::timeout(DURABLE_WAIT, &mut durable).await {
        Ok(Ok(())) => {
            finished.await;
            Ok(())
        }
        Ok(Err(_)) => Err(Error::NotConfirmed),
        Err(_) => {
            // Still on its way (ClickHouse and the spill both stuck): finish it whenever it
            // lands, so the ids stand then.
            tokio::spawn(async move {
                if durable.await.is_ok() {
                    finished.await;
                }
            });
            Err(Error::NotConfirmed)
        }
    }
}

fn busy() -> Error {
    Error::Busy("ingestion is backed up; retry shortly")
}

/// Stores a validated batch of events (an id twice is one event); answers how many were
/// new.
pub async fn events(
    ctx: &Context<'_>,
    tenant: &str,
    events: &[Event<'_>],
    size_hint: usize,
) -> Result<u64, Error> {
    let items: Vec<Item> = events
        .iter()
        .map(|e| Item {
            id: Some(e.event_id.as_slice()),
            install_id: &e.installation_id,
        })
        .collect();
    let now = time::now_ms();
    let (stored, _) = ingest(
        ctx,
        tenant,
        BatchKind::Events,
        "event",
        &items,
        size_hint,
        |i, facts, a| {
            event::encode(&mut facts.data, &events[i], now, tenant, a);
            facts.end_row(events[i].ts_ms);
        },
        |i, a| event_fact(&events[i], a),
    )
    .await?;
    let new = stored.iter().filter(|s| **s).count() as u64;
    ctx.metrics.events_received.increment(new);
    ctx.metrics
        .events_deduped
        .increment(events.len() as u64 - new);
    Ok(new)
}

/// What became of one item of a webhook call.
pub enum Outcome {
    Accepted([u8; 16]),
    Unattributed([u8; 16]),
    Deduped,
    Failed(ItemError),
}

impl Outcome {
    /// Its slot in the answer's counts and `sluice_conversions_total`.
    pub fn index(&self) -> usize {
        match self {
            Outcome::Accepted(_) => 0,
            Outcome::Deduped => 1,
            Outcome::Unattributed(_) => 2,
            Outcome::Failed(_) => 3,
        }
    }
}

/// Stores the valid conversions of a webhook call to source `source_id`, each attributed
/// through its user's bound install.
pub async fn conversions(
    ctx: &Context<'_>,
    tenant: &str,
    source_id: &str,
    items: Vec<Result<Conversion<'_>, ItemError>>,
    size_hint: usize,
) -> Result<Vec<Outcome>, Error> {
    let valid: Vec<&Conversion> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
    let installs = bound_installs(ctx.redis, tenant, &valid).await?;
    let install_of = |c: &Conversion| installs.get(c.user_id.as_str()).map_or("", String::as_str);
    let now = time::now_ms();
    let ids: Vec<[u8; 16]> = valid.iter().map(|_| ClickId::new(now).0).collect();
    let ingested: Vec<Item> = valid
        .iter()
        .map(|c| Item {
            id: c.idempotency_key.as_deref().map(str::as_bytes),
            install_id: install_of(c),
        })
        .collect();
    let (stored, attributions) = ingest(
        ctx,
        tenant,
        BatchKind::Conversions,
        "conversion",
        &ingested,
        size_hint,
        |i, facts, attribution| {
            conversion::encode(
                &mut facts.data,
                valid[i],
                &conversion::Context {
                    ts_ms: now,
                    tenant_id: tenant,
                    conversion_id: ids[i],
                    source_id,
                    install_id: install_of(valid[i]),
                    attribution,
                },
            );
            facts.end_row(now);
        },
        |i, a| conversion_fact(valid[i], ids[i], install_of(valid[i]), a, now, source_id),
    )
    .await?;
    let mut next = 0;
    let outcomes: Vec<Outcome> = items
        .iter()
        .map(|item| {
            if let Err(e) = item {
                return Outcome::Failed(e.clone());
            }
            let i = next;
            next += 1;
            if !stored[i] {
                Outcome::Deduped
            } else if attributions
                .get(ingested[i].install_id)
                .is_some_and(InstallAttribution::attributed)
            {
                Outcome::Accepted(ids[i])
            } else {
                Outcome::Unattributed(ids[i])
            }
        })
        .collect();
    for o in &outcomes {
        ctx.metrics.conversions[o.index()].increment(1);
    }
    Ok(outcomes)
}

/// The install each user is bound to.
async fn bound_installs(
    redis: &Redis,
    tenant: &str,
    conversions: &[&Conversion<'_>],
) -> Result<AHashMap<String, String>, crate::store::redis::RedisError> {
    let mut distinct = AHashSet::new();
    let users: Vec<&str> = conversions
        .iter()
        .map(|c| c.user_id.as_str())
        .filter(|u| distinct.insert(*u))
        .collect();
    let keys: Vec<String> = users.iter().map(|u| redis.user_key(tenant, u)).collect();
    let bound = redis.mget(&keys).await?;
    Ok(users
        .iter()
        .zip(bound)
        .filter_map(|(u, i)| Some((u.to_string(), i?)))
        .collect())
}

/// An event as webhooks and partner postbacks see it.
fn event_fact(e: &Event<'_>, a: Option<&InstallAttribution>) -> Fact {
    let payload: Value = serde_json::from_str(e.payload).unwrap_or(Value::Null);
    // `{revenue}` / `{currency}` come from the payload when it carries them.
    let amount = ["revenue", "amount"]
        .iter()
        .find_map(|k| match payload.get(*k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    let currency = payload.get("currency").and_then(Value::as_str);
    Fact {
        kind: "event",
        name: e.name.clone(),
        attribution: a.cloned().filter(InstallAttribution::attributed),
        ts_ms: e.ts_ms,
        revenue: amount.zip(currency.map(str::to_string)),
        data: json!({
            "event_id": ClickId(e.event_id).to_string(),
            "event_name": e.name,
            "event_datetime": time::rfc3339_from_ms(e.ts_ms),
            "installation_id": e.installation_id,
            "payload": payload,
            "attributed": a.is_some_and(InstallAttribution::attributed),
            "link_id": a.map(|a| a.link_id.as_str()),
            "campaign": a.map(|a| a.campaign.as_str()),
            "source": a.map(|a| a.source.as_str()),
            "medium": a.map(|a| a.medium.as_str()),
        }),
        rejection: None,
    }
}

/// A stored conversion as webhooks and partner postbacks see it.
fn conversion_fact(
    c: &Conversion<'_>,
    id: [u8; 16],
    install_id: &str,
    a: Option<&InstallAttribution>,
    ts_ms: u64,
    source_id: &str,
) -> Fact {
    let attributed = a.filter(|a| a.attributed());
    Fact {
        kind: "conversion",
        name: c.kind.clone(),
        attribution: attributed.cloned(),
        ts_ms,
        revenue: c
            .amount_cents
            .zip(c.currency)
            .map(|(amount, currency)| (decimal(amount, currency), currency.to_string())),
        data: json!({
            "conversion_id": ClickId(id).to_string(),
            "source_id": source_id,
            "user_id": c.user_id,
            "type": c.kind,
            "amount_cents": c.amount_cents,
            "currency": c.currency,
            "idempotency_key": c.idempotency_key,
            "metadata": c.metadata.and_then(|m| serde_json::from_str::<Value>(m).ok()),
            "attributed": attributed.is_some(),
            "install_id": (!install_id.is_empty()).then_some(install_id),
            "link_id": attributed.map(|a| a.link_id.as_str()),
            "campaign": attributed.map(|a| a.campaign.as_str()),
            "source": attributed.map(|a| a.source.as_str()),
            "medium": attributed.map(|a| a.medium.as_str()),
        }),
        rejection: None,
    }
}
