//! `GET|POST /v1/keys`, `DELETE /v1/keys/{id}` (secret key): a tenant's API keys, listed by
//! id and prefix, created (the key shown once) and revoked.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::read_json;
use crate::app::App;
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::keys::{lifecycle, KeyKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    kind: KeyKind,
}

pub async fn handle(
    app: &App,
    method: &Method,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    match (method, id) {
        (&Method::GET, None) => {
            let keys: Vec<Value> = lifecycle::list(&app.redis, tenant)
                .await?
                .iter()
                .map(|(key, used)| key.listing(used.as_deref()))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
        }
        (&Method::POST, None) => {
            let new: NewKey = read_json(body, 16 * 1024).await?;
            let limit = app.config.limits.keys;
            let (entry, key) = lifecycle::create(&app.redis, tenant, new.kind, limit).await?;
            Ok(json_response(StatusCode::CREATED, &entry.created(&key)))
        }
        (&Method::DELETE, Some(id)) => {
            lifecycle::revoke(&app.redis, tenant, id).await?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
