//! Stats endpoints (secret key): `GET /v1/attribution/stats[/by-campaign|/by-source|
//! /timeseries|/breakdown]` and `GET /v1/links/{id}/stats`, over the stats use case
//! (`stats::answers`).

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use super::{param, params_of, query_params};
use crate::app::App;
use crate::http::auth::require_secret;
use crate::http::error::{json_response, ApiError, Body};
use crate::link::catalog;
use crate::stats::answers::{self, range};
use crate::stats::breakdown::Breakdown;
use crate::stats::ctit;
use crate::stats::query::Ask;
use crate::stats::Group;

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
        range: range(&query_params(query))?,
        link: None,
    };
    let figures = answers::figures(&app.stats(), ask).await?;
    Ok(json_response(StatusCode::OK, figures.as_ref()))
}

pub async fn link_stats(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    catalog::get(&app.redis, &caller.tenant_id, id).await?;
    let range = range(&query_params(query))?;
    let figures = answers::link(&app.stats(), caller.tenant_id, id, range).await?;
    Ok(json_response(StatusCode::OK, &figures))
}

/// `GET /v1/attribution/stats/ctit?source=&window=|from=&to=`: the CTIT histogram.
pub async fn ctit(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let params = params_of(query, &["source", "window", "from", "to"])?;
    let range = range(&params)?;
    // One small aggregate query, uncached: the dashboard reads it every 10 s at most.
    app.metrics.stats_queries.increment(1);
    let v = ctit::histogram(&app.ch, &caller.tenant_id, &range, param(&params, "source")).await?;
    Ok(json_response(StatusCode::OK, &v))
}

pub async fn breakdown(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let params = query_params(query);
    let get = |name: &str| param(&params, name).map(str::to_string);
    let question = Breakdown::parse(caller.tenant_id, range(&params)?, get)?;
    let rows = answers::breakdown(&app.stats(), question).await?;
    Ok(json_response(StatusCode::OK, rows.as_ref()))
}
