//! Attribution endpoints. `GET|PATCH /v1/attribution/config` (secret key): the tenant's
//! lookback and fingerprint settings, validated, with the offending field named.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::read_json;
use crate::app::App;
use crate::attribution::config::ConfigPatch;
use crate::http::auth::require_secret;
use crate::http::error::{json_response, ApiError, Body};

const BODY_LIMIT: usize = 16 * 1024;

pub async fn config(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let current = app.redis.attribution_config(&caller.tenant_id).await?;
    match *method {
        Method::GET => Ok(json_response(StatusCode::OK, &json!(current))),
        Method::PATCH => {
            let value: serde_json::Value = read_json(body, BODY_LIMIT).await?;
            let next = ConfigPatch::from_json(&value)
                .and_then(|patch| current.patched(&patch))
                .map_err(|e| ApiError::invalid_field(&e.field, e.message))?;
            app.redis
                .put_attribution_config(&caller.tenant_id, &next)
                .await?;
            Ok(json_response(StatusCode::OK, &json!(next)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
