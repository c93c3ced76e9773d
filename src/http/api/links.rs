//! `POST|GET /v1/links`, `GET|PATCH|DELETE /v1/links/{id}` (secret key), over the link use
//! cases (`link::catalog`).

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::read_json;
use crate::app::App;
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::link::{catalog, Link};

const BODY_LIMIT: usize = 64 * 1024;

pub async fn handle(
    app: &App,
    method: &Method,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    let ctx = app.catalog();
    let (status, link) = match (method, id) {
        (&Method::POST, None) => {
            let new = read_json(body, BODY_LIMIT).await?;
            (
                StatusCode::CREATED,
                catalog::create(&ctx, tenant, new).await?,
            )
        }
        (&Method::GET, None) => {
            let links = catalog::list(&app.redis, tenant).await?;
            let views: Vec<_> = links.iter().map(view).collect();
            return Ok(json_response(StatusCode::OK, &json!({ "links": views })));
        }
        (&Method::GET, Some(id)) => (StatusCode::OK, catalog::get(&app.redis, tenant, id).await?),
        (&Method::PATCH, Some(id)) => {
            let patch = read_json(body, BODY_LIMIT).await?;
            (
                StatusCode::OK,
                catalog::update(&ctx, tenant, id, patch).await?,
            )
        }
        (&Method::DELETE, Some(id)) => {
            catalog::delete(&ctx, tenant, id).await?;
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(status, &view(&link)))
}

fn view(link: &Link) -> serde_json::Value {
    let mut v = serde_json::to_value(link).expect("links serialize");
    if let Some(map) = v.as_object_mut() {
        map.remove("tenant_id");
        map.remove("deleted_at");
        map.insert("path".into(), json!(format!("/{}", link.id)));
    }
    v
}
