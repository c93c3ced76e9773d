//! SKAdNetwork and AdAttributionKit: apps (`POST|GET /v1/apps`, `GET|DELETE /v1/apps/{id}`),
//! the postback receivers (the two well-known paths, open to Apple's devices, and
//! `POST /v1/skan/postbacks`), the campaign map (`GET|PUT /v1/skan/campaigns`) and the
//! figures (`GET /v1/skan/stats`), secret key apart from the well-known paths; over the
//! `skan` use cases.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, param, params_of, read_batch, read_json};
use crate::app::App;
use crate::error::FieldError;
use crate::http::auth::{rate_limit, require_secret};
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::skan::postback::MAX_BODY;
use crate::skan::receive::{self, Receiver};
use crate::skan::{apps, campaigns, stats};
use crate::stats::answers::range;

/// `/v1/apps[/{id}]`.
pub async fn apps(
    app: &App,
    method: &Method,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let (redis, tenant) = (&app.redis, caller.tenant_id.as_str());
    let (status, answer) = match (method, id) {
        (&Method::GET, None) => (
            StatusCode::OK,
            json!({ "apps": apps::list(redis, tenant).await? }),
        ),
        (&Method::POST, None) => {
            let value: Value = read_json(body, 16 * 1024).await?;
            let created = apps::create(redis, tenant, as_object(&value)?).await?;
            (StatusCode::CREATED, json!(created))
        }
        (&Method::GET, Some(id)) => (StatusCode::OK, json!(apps::get(redis, tenant, id).await?)),
        (&Method::DELETE, Some(id)) => {
            apps::delete(redis, tenant, id).await?;
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &answer))
}

/// A postback: `200` once stored (or a duplicate), `404` for an app no tenant registered.
/// `receiver` is `None` for the API path, whose caller's key names the tenant.
pub async fn postback(
    app: &App,
    receiver: Option<Receiver>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let receiver = match receiver {
        Some(r) => r,
        None => Receiver::AdNetwork {
            tenant: require_secret(app, headers).await?.tenant_id,
        },
    };
    let bytes = read_batch(headers, body, MAX_BODY).await?;
    let ctx = app.skan();
    let read = receive::read(&ctx, receiver, &bytes).await?;
    // Apple's devices carry no key: the well-known paths spend the app's tenant's tokens.
    rate_limit(app, &read.tenant, "skan-postbacks")?;
    let outcome = receive::store(&ctx, read).await?;
    Ok(json_response(StatusCode::OK, &outcome.to_json()))
}

/// `GET|PUT /v1/skan/campaigns`.
pub async fn campaign_map(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let (redis, tenant) = (&app.redis, caller.tenant_id.as_str());
    let entries = match *method {
        Method::GET => campaigns::get(redis, tenant).await?,
        Method::PUT => {
            let value: Value = read_json(body, 2 << 20).await?;
            campaigns::put(redis, tenant, &value).await?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "campaigns": entries }),
    ))
}

/// `GET /v1/skan/stats?window=|from=&to=[&app_store_id=]`.
pub async fn figures(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let params = params_of(query, &["window", "from", "to", "app_store_id"])?;
    let app_store_id = match param(&params, "app_store_id") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            FieldError::new(
                "app_store_id",
                "must be an App Store id (a positive integer)",
            )
        })?),
    };
    let range = range(&params)?;
    app.metrics.stats_queries.increment(1);
    let v = stats::figures(&app.ch, &app.redis, &caller.tenant_id, &range, app_store_id).await?;
    Ok(json_response(StatusCode::OK, &v))
}
