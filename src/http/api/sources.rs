//! Webhook sources (`GET|POST /v1/sources`, `GET|DELETE /v1/sources/{id}`,
//! `POST /v1/sources/{id}/rotate`, secret key) and their receiver, `POST /w/{token}`: one conversion or an array, each validated on its own,
//! deduplicated by idempotency key per tenant for 30 days, attributed through the user's
//! bound install, and stored before the answer.

use ahash::{AHashMap, AHashSet};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HOST};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::events::decode_attributions;
use super::{body_error, busy, read_batch, read_json, store_durably, Taken};
use crate::app::App;
use crate::attribution::install::InstallAttribution;
use crate::click::ClickId;
use crate::conversions::conversion::{self, Context, Conversion};
use crate::conversions::source::{self, Source};
use crate::conversions::MAX_BODY;
use crate::delivery::fanout::{self, Fact};
use crate::delivery::partner::decimal;
use crate::error::ItemError;
use crate::http::auth::{rate_limit, require_secret};
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::pipeline::batch::{BatchKind, Facts};
use crate::time;

/// `rotate`: the path was `/v1/sources/{id}/rotate`.
pub async fn handle(
    app: &App,
    method: &Method,
    id: Option<&str>,
    rotate: bool,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    app.redis.ensure_default_source(tenant).await?;
    let base = public_base(app, headers);
    match (method, id, rotate) {
        (&Method::POST, Some(id), true) => match app.redis.rotate_source(tenant, id).await? {
            Some((s, token)) => Ok(json_response(
                StatusCode::OK,
                &view(&s, &base, Some(&token)),
            )),
            None => Err(no_source(id)),
        },
        (_, _, true) => Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let sources = app.redis.sources(tenant).await?;
            let list: Vec<Value> = sources.iter().map(|s| view(s, &base, None)).collect();
            Ok(json_response(StatusCode::OK, &json!({ "sources": list })))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, 16 * 1024).await?;
            let (name, source_type) = new_source(&value)?;
            let limit = app.config.limits.sources;
            if app.redis.sources(tenant).await?.len() >= limit {
                return Err(ApiError::limit_reached("sources", limit));
            }
            let (source, token) = Source::new(name, source_type);
            app.redis.create_source(tenant, &source).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &view(&source, &base, Some(&token)),
            ))
        }
        (&Method::GET, Some(id), _) => match app.redis.source(tenant, id).await? {
            Some(s) => Ok(json_response(StatusCode::OK, &view(&s, &base, None))),
            None => Err(no_source(id)),
        },
        (&Method::DELETE, Some(id), _) => {
            if app.redis.delete_source(tenant, id).await? {
                Ok(empty_response(StatusCode::NO_CONTENT))
            } else {
                Err(no_source(id))
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn no_source(id: &str) -> ApiError {
    ApiError::not_found(format!("no source {id:?}"))
}

/// The name and type a new source is asked for.
fn new_source(value: &Value) -> Result<(&str, &str), ApiError> {
    let body: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "body must be a JSON object"))?;
    if let Some(field) = body
        .keys()
        .find(|k| !["name", "source_type"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid_field(field, "is not a source field"));
    }
    let name = match body.get("name") {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= source::MAX_NAME
                && !s.chars().any(char::is_control) =>
        {
            s.as_str()
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "name",
                format!(
                    "must be a non-empty string of at most {} characters",
                    source::MAX_NAME
                ),
            ))
        }
        None => return Err(ApiError::invalid_field("name", "is required")),
    };
    let source_type = match body.get("source_type") {
        None | Some(Value::Null) => "custom",
        Some(Value::String(t)) if source::TYPES.contains(&t.as_str()) => t.as_str(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "source_type",
                format!("must be one of {}", source::TYPES.join(", ")),
            ))
        }
    };
    Ok((name, source_type))
}

/// The public origin webhook URLs are given under: `public_url` when configured, else the
/// request's own host.
fn public_base(app: &App, headers: &HeaderMap) -> String {
    if !app.config.public_url.is_empty() {
        return app.config.public_url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A source as the API shows it: its webhook URL only with the `token` just made (on
/// creation or rotation), otherwise the URL's first characters.
fn view(s: &Source, base: &str, token: Option<&str>) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "source_type": s.source_type,
        "webhook_url_hint": format!("{base}{}…", source::webhook_path(&s.token_hint)),
        "created_at": s.created_at,
    });
    if let Some(token) = token {
        v["webhook_url"] = json!(format!("{base}{}", source::webhook_path(token)));
    }
    v
}

/// What became of one item of a webhook call.
enum Outcome {
    Accepted([u8; 16]),
    Unattributed([u8; 16]),
    Deduped,
    Failed(ItemError),
}

/// `POST /w/{token}`.
pub async fn receive(
    app: &App,
    token: &str,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let unknown = || ApiError::not_found("no webhook source at this URL");
    if !source::plausible_token(token) {
        return Err(unknown());
    }
    let owner = app.redis.webhook_owner(token).await?.ok_or_else(unknown)?;
    let tenant = owner.tenant_id.as_str();
    rate_limit(app, tenant, token)?;
    let bytes = read_batch(headers, body, MAX_BODY).await?;
    let raws = conversion::parse_body(&bytes).map_err(|e| body_error(e, "conversions"))?;
    let items: Vec<Result<Conversion, ItemError>> = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| conversion::validate(i, raw))
        .collect();
    if app.rows.is_full(bytes.len()) {
        return Err(busy());
    }

    // The first item with a key takes it; later ones in the same call are duplicates.
    // key -> (that item's index, the key's place in `take`).
    let mut first_with_key: AHashMap<&str, (usize, usize)> = AHashMap::new();
    let mut take = Vec::new();
    let mut users = Vec::new();
    let mut distinct_users = AHashSet::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(c) = item else { continue };
        if let Some(key) = &c.idempotency_key {
            first_with_key.entry(key.as_str()).or_insert_with(|| {
                take.push(key.as_bytes().to_vec());
                (i, take.len() - 1)
            });
        }
        if distinct_users.insert(c.user_id.as_str()) {
            users.push(c.user_id.as_str());
        }
    }
    let user_keys: Vec<String> = users
        .iter()
        .map(|u| app.redis.user_key(tenant, u))
        .collect();
    let (taken, bound) = tokio::try_join!(Taken::take(app, tenant, "conversion", take), async {
        Ok(app.redis.mget(&user_keys).await?)
    })?;
    let installs: AHashMap<&str, String> = users
        .iter()
        .zip(bound)
        .filter_map(|(u, i)| Some((*u, i?)))
        .collect();
    let install_ids: Vec<&str> = {
        let mut distinct = AHashSet::new();
        installs
            .values()
            .map(String::as_str)
            .filter(|i| distinct.insert(*i))
            .collect()
    };
    let attribution_keys: Vec<String> = install_ids
        .iter()
        .map(|i| app.redis.attribution_key(tenant, i))
        .collect();
    let attributions = decode_attributions(&install_ids, app.redis.mget(&attribution_keys).await?);

    let now = time::now_ms();
    let mut facts = Facts::new(BatchKind::Conversions);
    let outcomes: Vec<Outcome> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let c = match item {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(e.clone()),
            };
            if let Some(key) = &c.idempotency_key {
                let (first, at) = first_with_key[key.as_str()];
                if first != i || !taken.flags[at] {
                    return Outcome::Deduped;
                }
            }
            let install_id = installs.get(c.user_id.as_str()).map_or("", String::as_str);
            let attribution = attributions.get(install_id);
            let id = ClickId::new(now).0;
            conversion::encode(
                &mut facts.data,
                c,
                &Context {
                    ts_ms: now,
                    tenant_id: tenant,
                    conversion_id: id,
                    source_id: &owner.source_id,
                    install_id,
                    attribution,
                },
            );
            facts.end_row(now);
            if attribution.is_some_and(|a| a.attributed()) {
                Outcome::Accepted(id)
            } else {
                Outcome::Unattributed(id)
            }
        })
        .collect();
    let facts_empty = facts.rows.is_empty();
    store_durably(app, facts, &taken).await?;
    let any_partner = attributions.values().any(|a| !a.partner_id.is_empty());
    if !facts_empty && fanout::wanted(&app.delivery, tenant, any_partner).await {
        let delivered = items
            .iter()
            .zip(&outcomes)
            .filter_map(|(item, outcome)| {
                let (Ok(c), Outcome::Accepted(id) | Outcome::Unattributed(id)) = (item, outcome)
                else {
                    return None;
                };
                let install_id = installs.get(c.user_id.as_str()).map_or("", String::as_str);
                Some(conversion_fact(
                    c,
                    *id,
                    install_id,
                    attributions.get(install_id),
                    now,
                    &owner.source_id,
                ))
            })
            .collect();
        fanout::deliver(&app.delivery, tenant, delivered).await;
    }

    let mut counts = [0u64; 4];
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, o)| {
            let (slot, status) = match o {
                Outcome::Accepted(_) => (0, "accepted"),
                Outcome::Deduped => (1, "deduped"),
                Outcome::Unattributed(_) => (2, "unattributed"),
                Outcome::Failed(_) => (3, "failed"),
            };
            counts[slot] += 1;
            let mut r = json!({ "index": index, "status": status });
            match o {
                Outcome::Accepted(id) | Outcome::Unattributed(id) => {
                    r["conversion_id"] = json!(ClickId(*id).to_string());
                }
                Outcome::Failed(e) => {
                    r["error"] = json!({ "field": e.field, "message": e.message });
                }
                Outcome::Deduped => {}
            }
            r
        })
        .collect();
    for (counter, n) in app.metrics.conversions.iter().zip(counts) {
        counter.increment(n);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "accepted": counts[0],
            "deduped": counts[1],
            "unattributed": counts[2],
            "failed": counts[3],
            "results": results,
        }),
    ))
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
    }
}
