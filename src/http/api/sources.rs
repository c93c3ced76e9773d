//! Webhook sources (`GET|POST /v1/sources`, `GET|DELETE /v1/sources/{id}`,
//! `POST /v1/sources/{id}/rotate`, secret key) and their receiver, `POST /w/{token}`: one conversion or an array, each validated on its own,
//! deduplicated by idempotency key per tenant for 30 days, attributed through the user's
//! bound install, and stored before the answer.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, body_error, public_base, read_batch, read_json};
use crate::app::App;
use crate::click::ClickId;
use crate::conversions::conversion;
use crate::conversions::ingest::{self, Outcome};
use crate::conversions::source::{self, Source};
use crate::conversions::sources;
use crate::conversions::MAX_BODY;
use crate::http::auth::{rate_limit, require_secret};
use crate::http::error::{empty_response, json_response, ApiError, Body};

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
    let (redis, tenant) = (&app.redis, caller.tenant_id.as_str());
    let base = public_base(app, headers);
    let (status, answer) = match (method, id, rotate) {
        (&Method::POST, Some(id), true) => {
            let (s, token) = sources::rotate(redis, tenant, id).await?;
            (StatusCode::OK, view(&s, &base, Some(&token)))
        }
        (_, _, true) => return Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let list = sources::list(redis, tenant).await?;
            let list: Vec<Value> = list.iter().map(|s| view(s, &base, None)).collect();
            (StatusCode::OK, json!({ "sources": list }))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, 16 * 1024).await?;
            let limit = app.config.limits.sources;
            let (s, token) = sources::create(redis, tenant, as_object(&value)?, limit).await?;
            (StatusCode::CREATED, view(&s, &base, Some(&token)))
        }
        (&Method::GET, Some(id), _) => {
            let s = sources::get(redis, tenant, id).await?;
            (StatusCode::OK, view(&s, &base, None))
        }
        (&Method::DELETE, Some(id), _) => {
            sources::delete(redis, tenant, id).await?;
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &answer))
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
    rate_limit(app, &owner.tenant_id, token)?;
    let bytes = read_batch(headers, body, MAX_BODY).await?;
    let raws = conversion::parse_body(&bytes).map_err(|e| body_error(e, "conversions"))?;
    let items = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| conversion::validate(i, raw))
        .collect();
    let outcomes = ingest::conversions(
        &app.ingest(),
        &owner.tenant_id,
        &owner.source_id,
        items,
        bytes.len(),
    )
    .await?;
    let mut counts = [0u64; 4];
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, o)| {
            counts[o.index()] += 1;
            let status = ["accepted", "deduped", "unattributed", "failed"][o.index()];
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
