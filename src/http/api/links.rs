//! `POST|GET /v1/links`, `POST /v1/links/bulk`, `GET|PATCH|DELETE /v1/links/{id}`,
//! `GET /v1/links/{id}/qr`, `POST /v1/links/{id}/preview` (secret key), over the link use
//! cases (`link::catalog`, `link::qr`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{
    decode, page_limit, param, parse_json, public_base, query_params, read_batch, read_json, Decode,
};
use crate::app::App;
use crate::error::FieldError;
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::http::visitor;
use crate::link::catalog::{self, NewLink, BULK_MAX, PAGE_DEFAULT, PAGE_MAX};
use crate::link::qr;
use crate::link::Link;
use crate::store::redis::valid_cursor;

const BODY_LIMIT: usize = 64 * 1024;
/// SPEC, Bulk links.
const BULK_BODY_LIMIT: usize = 8 << 20;

pub async fn handle(
    app: &App,
    parts: &Parts,
    id: Option<&str>,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, &parts.headers).await?;
    let tenant = caller.tenant_id.as_str();
    let ctx = app.catalog();
    let (status, link) = match (&parts.method, id) {
        (&Method::POST, None) => {
            let new = read_json(body, BODY_LIMIT).await?;
            (
                StatusCode::CREATED,
                catalog::create(&ctx, tenant, new).await?,
            )
        }
        (&Method::POST, Some("bulk")) => {
            let items = parse_bulk(&read_batch(&parts.headers, body, BULK_BODY_LIMIT).await?)?;
            let bulk = catalog::create_many(&ctx, tenant, items).await?;
            let created: Vec<_> = bulk
                .created
                .iter()
                .map(|(index, link)| json!({"index": index, "id": link.id, "path": format!("/{}", link.id)}))
                .collect();
            let body = json!({"created": created.len(), "links": created, "failed": bulk.failed});
            return Ok(json_response(StatusCode::OK, &body));
        }
        (&Method::GET, None) => {
            let (cursor, limit) = page(parts.uri.query())?;
            let (links, next) = catalog::list(&app.redis, tenant, cursor.as_deref(), limit).await?;
            let views: Vec<_> = links.iter().map(view).collect();
            let next = next.map(|position| URL_SAFE_NO_PAD.encode(position));
            let body = json!({ "links": views, "next_cursor": next });
            return Ok(json_response(StatusCode::OK, &body));
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

/// `GET /v1/links/{id}/qr?format=svg|png&size=`: a QR code of the link's public URL.
pub async fn qr(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let params = query_params(query);
    let (format, size) = qr::params(param(&params, "format"), param(&params, "size"))?;
    let link = catalog::get(&app.redis, &caller.tenant_id, id).await?;
    let image = qr::render(
        &format!("{}/{}", public_base(app, headers), link.id),
        format,
        size,
    )?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, format.content_type())
        .body(Body::new(image.into()))
        .expect("a valid response"))
}

/// `POST /v1/links/{id}/preview`: where the link (or a draft of its rules and split) sends a
/// described visitor, evaluated as the redirect would.
pub async fn preview(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let request = read_json(body, BODY_LIMIT).await?;
    let identity = |ip, user_agent: &str| visitor::identity(app, ip, user_agent.as_bytes());
    let p = catalog::preview(&app.redis, &caller.tenant_id, id, request, identity).await?;
    let body =
        json!({"rule": p.rule, "variant": p.variant, "destination": p.destination, "gone": p.gone});
    Ok(json_response(StatusCode::OK, &body))
}

/// A bulk body's links, each parsed on its own so that one bad link is reported by index
/// instead of refusing the request.
fn parse_bulk(body: &[u8]) -> Result<Vec<Result<NewLink, FieldError>>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Bulk<'a> {
        #[serde(borrow)]
        links: Vec<&'a RawValue>,
    }
    let bulk: Bulk = parse_json(body)?;
    if bulk.links.len() > BULK_MAX {
        return Err(ApiError::invalid_field(
            "links",
            format!("has more than {BULK_MAX} links (at most {BULK_MAX} a request)"),
        ));
    }
    Ok(bulk
        .links
        .iter()
        .map(|raw| match decode(raw.get().as_bytes()) {
            Ok(new) => Ok(new),
            Err(Decode::Field(e)) => Err(e),
            Err(Decode::Json(e)) => Err(FieldError::new("", e.to_string())),
        })
        .collect())
}

/// `cursor` (a previous page's `next_cursor`) and `limit` of `GET /v1/links`.
fn page(query: Option<&str>) -> Result<(Option<String>, usize), FieldError> {
    let mut cursor = None;
    let mut limit = PAGE_DEFAULT;
    for (key, value) in query_params(query) {
        match key.as_str() {
            "limit" => limit = page_limit(&value, PAGE_MAX)?,
            "cursor" => {
                let position = URL_SAFE_NO_PAD
                    .decode(&value)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|p| valid_cursor(p))
                    .ok_or_else(|| FieldError::new("cursor", "is not a cursor"))?;
                cursor = Some(position);
            }
            other => return Err(FieldError::new(other, "is not a known parameter")),
        }
    }
    Ok((cursor, limit))
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
