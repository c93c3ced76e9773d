//! `POST /v1/events`: server-to-server event batches (Basic auth). The whole batch is
//! validated first (any bad event refuses it, naming each by index and field); then each
//! event id is taken once per tenant for 30 days, the installs are looked up for their
//! attribution, and the new events are stored before the 204.

use ahash::{AHashMap, AHashSet};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tracing::warn;

use super::{body_error, busy, read_batch, store_durably, Taken};
use crate::app::App;
use crate::attribution::install::InstallAttribution;
use crate::conversions::{event, MAX_BODY};
use crate::delivery::fanout::{self, Fact};
use crate::http::auth::authenticate_basic;
use crate::http::error::{empty_response, ApiError, Body};
use crate::pipeline::batch::{BatchKind, Facts};
use crate::time;

pub async fn ingest(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate_basic(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    let bytes = read_batch(headers, body, MAX_BODY).await?;
    let raws = event::parse_batch(&bytes).map_err(|e| body_error(e, "events"))?;
    let now = time::now_ms();
    let mut events = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        match event::validate(index, raw, now) {
            Ok(e) => events.push(e),
            Err(mut bad) => errors.append(&mut bad),
        }
    }
    if !errors.is_empty() {
        let invalid: AHashSet<usize> = errors.iter().map(|e| e.index).collect();
        return Err(ApiError::bad_request(
            "invalid_events",
            format!(
                "{} of {} events are invalid; nothing in this batch was stored",
                invalid.len(),
                raws.len()
            ),
        )
        .with_details(json!({ "errors": errors })));
    }
    // An id twice in one batch is one event.
    let mut seen = AHashSet::with_capacity(events.len());
    events.retain(|e| seen.insert(e.event_id));
    if events.is_empty() {
        return Ok(empty_response(StatusCode::NO_CONTENT));
    }
    if app.rows.is_full(bytes.len()) {
        return Err(busy());
    }

    let ids: Vec<Vec<u8>> = events.iter().map(|e| e.event_id.to_vec()).collect();
    let installs: Vec<&str> = {
        let mut distinct = AHashSet::new();
        events
            .iter()
            .map(|e| &*e.installation_id)
            .filter(|i| distinct.insert(*i))
            .collect()
    };
    let attribution_keys: Vec<String> = installs
        .iter()
        .map(|i| app.redis.attribution_key(tenant, i))
        .collect();
    let (taken, found) = tokio::try_join!(Taken::take(app, tenant, "event", ids), async {
        Ok(app.redis.mget(&attribution_keys).await?)
    })?;
    let attributions = decode_attributions(&installs, found);

    let mut facts = Facts::new(BatchKind::Events);
    facts.data.reserve(bytes.len() + events.len() * 96);
    for (e, _) in events.iter().zip(&taken.flags).filter(|(_, t)| **t) {
        let attribution = attributions.get(&*e.installation_id);
        event::encode(&mut facts.data, e, now, tenant, attribution);
        facts.end_row(e.ts_ms);
    }
    let stored = facts.rows.len() as u64;
    store_durably(app, facts, &taken).await?;
    let any_partner = attributions.values().any(|a| !a.partner_id.is_empty());
    if stored > 0 && fanout::wanted(&app.delivery, tenant, any_partner).await {
        let delivered = events
            .iter()
            .zip(&taken.flags)
            .filter(|(_, t)| **t)
            .map(|(e, _)| event_fact(e, attributions.get(&*e.installation_id)))
            .collect();
        fanout::deliver(&app.delivery, tenant, delivered).await;
    }
    app.metrics.events_received.increment(stored);
    app.metrics
        .events_deduped
        .increment(raws.len() as u64 - stored);
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// An event as webhooks and partner postbacks see it.
fn event_fact(e: &event::Event<'_>, a: Option<&InstallAttribution>) -> Fact {
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
            "event_id": crate::click::ClickId(e.event_id).to_string(),
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
    }
}

/// Pairs installs with their remembered attribution (unknown installs are left out).
pub fn decode_attributions<'a>(
    installs: &[&'a str],
    found: Vec<Option<String>>,
) -> AHashMap<&'a str, InstallAttribution> {
    installs
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
        .collect()
}
