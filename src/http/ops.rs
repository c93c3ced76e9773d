//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`
//! (ClickHouse and Redis reachable, schema current).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::error::{json_response, Body};
use crate::app::App;
use crate::store::clickhouse;

pub fn metrics(app: &App) -> Response<Body> {
    app.metrics.ring_depth.set(app.ring.len() as f64);
    app.metrics.link_table_size.set(app.links.len() as f64);
    let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

fn spill_state(app: &App) -> &'static str {
    let bytes = app.spill.bytes.load(Ordering::Relaxed);
    let max = app.spill.max_bytes.load(Ordering::Relaxed).max(1);
    if app.spill.failing.load(Ordering::Relaxed) {
        "failing"
    } else if bytes * 10 >= max * 8 {
        "near_full"
    } else if bytes > 0 {
        "replaying"
    } else {
        "ok"
    }
}

/// The OpenAPI document of the HTTP API, written by hand beside the router
/// (`tests/openapi.rs` holds the two to each other; Schemathesis fuzzes the server with it).
pub fn openapi() -> Response<Body> {
    static DOCUMENT: &str = include_str!("openapi.json");
    let mut resp = Response::new(Body::new(bytes::Bytes::from_static(DOCUMENT.as_bytes())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub async fn readyz(app: &App) -> Response<Body> {
    let clickhouse = match clickhouse::schema_current(&app.ch).await {
        Ok(true) => "ok",
        Ok(false) => "schema_outdated",
        Err(_) => "unreachable",
    };
    let redis = match app.redis.ping().await {
        Ok(()) => "ok",
        Err(_) => "unreachable",
    };
    let spill = spill_state(app);
    // A spill backlog, or one near its bound, is a warning: clicks are still taken. A spill
    // that cannot be written is not ready: the next ClickHouse hiccup would lose clicks.
    let ready = clickhouse == "ok" && redis == "ok" && spill != "failing";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "clickhouse": clickhouse,
            "redis": redis,
            "spill": spill,
            "spill_bytes": app.spill.bytes.load(Ordering::Relaxed),
        }),
    )
}
