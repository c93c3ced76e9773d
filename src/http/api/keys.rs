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
use crate::keys::KeyKind;
use crate::store::redis::Revocation;

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
            let keys: Vec<Value> = app
                .redis
                .keys_of(tenant)
                .await?
                .iter()
                .map(|(key, used)| key.listing(used.as_deref()))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "keys": keys })))
        }
        (&Method::POST, None) => {
            let new: NewKey = read_json(body, 16 * 1024).await?;
            let limit = app.config.limits.keys;
            let (entry, key) = app
                .redis
                .create_key(tenant, new.kind, limit)
                .await?
                .ok_or_else(|| ApiError::limit_reached("active keys", limit))?;
            Ok(json_response(StatusCode::CREATED, &entry.created(&key)))
        }
        (&Method::DELETE, Some(id)) => match app.redis.revoke_key(tenant, id).await? {
            Revocation::Revoked => Ok(empty_response(StatusCode::NO_CONTENT)),
            Revocation::Missing => Err(ApiError::not_found(format!("no key {id:?}"))),
            Revocation::LastSecret => Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_secret_key",
                "this is the tenant's last active secret key; create another before revoking it",
            )),
        },
        _ => Err(ApiError::method_not_allowed()),
    }
}
