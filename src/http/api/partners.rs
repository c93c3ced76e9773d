//! Partners (`POST|GET /v1/partners`, `GET|PATCH|DELETE /v1/partners/{id}`,
//! `GET /v1/partners/{id}/deliveries`) and webhooks (`POST|GET /v1/webhooks`,
//! `GET|DELETE /v1/webhooks/{id}`, `GET /v1/webhooks/{id}/deliveries`), secret key only,
//! over the receivers use cases (`delivery::receivers`).

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, read_json};
use crate::app::App;
use crate::delivery::receivers;
use crate::delivery::{Owner, Webhook};
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};

const BODY_LIMIT: usize = 64 * 1024;

/// `/v1/partners…`: `id` and whether the path ends in `/deliveries`.
pub async fn partners(
    app: &App,
    method: &Method,
    id: Option<&str>,
    deliveries: bool,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let (ctx, tenant) = (&app.delivery, caller.tenant_id.as_str());
    let (status, answer) = match (method, id, deliveries) {
        (&Method::GET, Some(id), true) => {
            let owner = Owner::Postback {
                partner_id: id.to_string(),
            };
            let log = receivers::deliveries(ctx, tenant, &owner).await?;
            (StatusCode::OK, json!({ "deliveries": log }))
        }
        (_, _, true) => return Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let list = receivers::partners(ctx, tenant).await?;
            (StatusCode::OK, json!({ "partners": list }))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let limit = app.config.limits.partners;
            let p = receivers::create_partner(ctx, tenant, as_object(&value)?, limit).await?;
            (StatusCode::CREATED, json!(p))
        }
        (&Method::GET, Some(id), _) => {
            let p = receivers::partner(ctx, tenant, id).await?;
            (StatusCode::OK, json!(p))
        }
        (&Method::PATCH, Some(id), _) => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let p = receivers::update_partner(ctx, tenant, id, as_object(&value)?).await?;
            (StatusCode::OK, json!(p))
        }
        (&Method::DELETE, Some(id), _) => {
            receivers::delete_partner(ctx, tenant, id).await?;
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &answer))
}

/// `/v1/webhooks…`.
pub async fn webhooks(
    app: &App,
    method: &Method,
    id: Option<&str>,
    deliveries: bool,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let (ctx, tenant) = (&app.delivery, caller.tenant_id.as_str());
    let (status, answer) = match (method, id, deliveries) {
        (&Method::GET, Some(id), true) => {
            let owner = Owner::Webhook {
                webhook_id: id.to_string(),
            };
            let log = receivers::deliveries(ctx, tenant, &owner).await?;
            (StatusCode::OK, json!({ "deliveries": log }))
        }
        (_, _, true) => return Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let list = receivers::webhooks(ctx, tenant).await?;
            let list: Vec<Value> = list.iter().map(|w| view(w, false)).collect();
            (StatusCode::OK, json!({ "webhooks": list }))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let limit = app.config.limits.webhooks;
            let w = receivers::create_webhook(ctx, tenant, as_object(&value)?, limit).await?;
            (StatusCode::CREATED, view(&w, true))
        }
        (&Method::GET, Some(id), _) => {
            let w = receivers::webhook(ctx, tenant, id).await?;
            (StatusCode::OK, view(&w, false))
        }
        (&Method::DELETE, Some(id), _) => {
            receivers::delete_webhook(ctx, tenant, id).await?;
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &answer))
}

/// The secret is shown once, when the webhook is created.
fn view(w: &Webhook, with_secret: bool) -> Value {
    let mut v = json!({ "id": w.id, "url": w.url, "events": w.events, "created_at": w.created_at });
    if with_secret {
        v["secret"] = json!(w.secret);
    }
    v
}
