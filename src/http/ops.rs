//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`
//! (ClickHouse and Redis reachable, schema current).

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
    let ready = clickhouse == "ok" && redis == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({ "status": if ready { "ready" } else { "not_ready" }, "clickhouse": clickhouse, "redis": redis }),
    )
}
