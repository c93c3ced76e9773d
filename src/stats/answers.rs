//! The stats use case: a tenant's figures for a range, from the aggregate tables only,
//! cached per tenant and query for `stats_cache_ms` (single flight: one ClickHouse query per
//! question however many dashboards ask it at once).

use std::sync::Arc;

use serde_json::{json, Value};

use super::breakdown::{self, Breakdown};
use super::cache::Cache;
use super::query::{self, Ask, QUERIES_PER_ANSWER};
use super::{answer, Group, Range};
use crate::error::{Error, FieldError};
use crate::metrics::Metrics;
use crate::time;

/// What the stats use case works with.
pub struct Context<'a> {
    pub ch: &'a ::clickhouse::Client,
    pub cache: &'a Cache<Ask, Arc<Value>>,
    pub breakdowns: &'a Cache<Breakdown, Arc<Value>>,
    pub metrics: &'static Metrics,
}

/// The range the query parameters ask for (`window`, or `from` and `to`), as of today.
pub fn range(params: &[(String, String)]) -> Result<Range, FieldError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let today = (time::now_ms() / time::MS_PER_DAY) as u16;
    Range::parse(get("window"), get("from"), get("to"), today)
}

/// The answer to `ask`.
pub async fn figures(ctx: &Context<'_>, ask: Ask) -> Result<Arc<Value>, Error> {
    let group = ask.group;
    ctx.cache
        .get(&ask, || async {
            ctx.metrics.stats_queries.increment(QUERIES_PER_ANSWER);
            let groups = query::figures(ctx.ch, &ask).await?;
            Ok::<_, Error>(Arc::new(answer(group, &ask.range, groups)))
        })
        .await
}

/// A breakdown's rows (cached like the other stats answers).
pub async fn breakdown(ctx: &Context<'_>, question: Breakdown) -> Result<Arc<Value>, Error> {
    ctx.breakdowns
        .get(&question, || async {
            ctx.metrics.stats_queries.increment(1);
            let rows = breakdown::rows(ctx.ch, &question).await?;
            Ok::<_, Error>(Arc::new(breakdown::answer(&question, rows)))
        })
        .await
}

/// One link's figures: `{link_id, click_count, install_count, conversion_rate (installs /
/// clicks), conversions, …}` plus the range. The caller has checked the link is the
/// tenant's.
pub async fn link(
    ctx: &Context<'_>,
    tenant: String,
    id: &str,
    range: Range,
) -> Result<Value, Error> {
    let ask = Ask {
        tenant,
        group: Group::Total,
        range,
        link: Some(id.to_string()),
    };
    let totals = figures(ctx, ask).await?;
    let clicks = totals["clicks"].as_u64().unwrap_or(0);
    // A rejected install names the link but is not attributed to it.
    let rejected = totals["rejected_installs"].as_u64().unwrap_or(0);
    let installs = totals["installs"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(rejected);
    let rate = if clicks == 0 {
        0.0
    } else {
        installs as f64 / clicks as f64
    };
    Ok(json!({
        "link_id": id,
        "click_count": clicks,
        "unique_click_count": totals["unique_clicks"],
        "install_count": installs,
        "rejected_install_count": rejected,
        "conversion_rate": rate,
        "conversions": totals["conversions"],
        "window": totals["window"],
        "from": totals["from"],
        "to": totals["to"],
    }))
}
