//! Stats endpoints (secret key): `GET /v1/attribution/stats[/by-campaign|/by-source|
//! /timeseries]` and `GET /v1/links/{id}/stats`. Answers are computed from the aggregate
//! tables only and cached per tenant and query for `stats_cache_ms` (single flight).

use std::sync::Arc;

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::query_params;
use crate::app::App;
use crate::http::auth::require_secret;
use crate::http::error::{json_response, ApiError, Body};
use crate::link::catalog;
use crate::stats::query::{self, Ask, QUERIES_PER_ANSWER};
use crate::stats::{answer, Group, Range};
use crate::time;

/// The range a request asks for (400 naming the parameter when it is wrong).
pub fn range(query: Option<&str>) -> Result<Range, ApiError> {
    let params = query_params(query);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let today = (time::now_ms() / time::MS_PER_DAY) as u16;
    Range::parse(get("window"), get("from"), get("to"), today)
        .map_err(|(field, message)| ApiError::invalid_field(field, message))
}

async fn figures(app: &App, ask: Ask) -> Result<Arc<Value>, ApiError> {
    let group = ask.group;
    app.stats
        .get(&ask, || async {
            app.metrics.stats_queries.increment(QUERIES_PER_ANSWER);
            let groups = query::figures(&app.ch, &ask).await?;
            Ok::<_, ApiError>(Arc::new(answer(group, &ask.range, groups)))
        })
        .await
}

pub async fn tenant_stats(
    app: &App,
    group: Group,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let ask = Ask {
        tenant: caller.tenant_id,
        group,
        range: range(query)?,
        link: None,
    };
    Ok(json_response(
        StatusCode::OK,
        figures(app, ask).await?.as_ref(),
    ))
}

/// `GET /v1/links/{id}/stats`: `{link_id, click_count, install_count, conversion_rate
/// (installs / clicks), conversions, …}` plus the range.
pub async fn link_stats(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    catalog::get(&app.redis, &caller.tenant_id, id).await?;
    let ask = Ask {
        tenant: caller.tenant_id,
        group: Group::Total,
        range: range(query)?,
        link: Some(id.to_string()),
    };
    let totals = figures(app, ask).await?;
    let clicks = totals["clicks"].as_u64().unwrap_or(0);
    let installs = totals["installs"].as_u64().unwrap_or(0);
    let rate = if clicks == 0 {
        0.0
    } else {
        installs as f64 / clicks as f64
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "link_id": id,
            "click_count": clicks,
            "unique_click_count": totals["unique_clicks"],
            "install_count": installs,
            "conversion_rate": rate,
            "conversions": totals["conversions"],
            "window": totals["window"],
            "from": totals["from"],
            "to": totals["to"],
        }),
    ))
}
