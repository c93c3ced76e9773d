//! The stats queries: four per answer (clicks, installs, events, conversions), each over its
//! aggregate table only, re-aggregated with `-Merge` / `sum` and `GROUP BY` (parts may not
//! have merged), scoped to one tenant and an inclusive range of days.

use std::collections::BTreeMap;

use clickhouse::Client;
use serde::Deserialize;
use tracing::warn;

use super::{Figures, Group, Range};
use crate::attribution::MatchType;
use crate::store::clickhouse::ChError;
use crate::time;

/// Number of ClickHouse queries one stats answer costs.
pub const QUERIES_PER_ANSWER: u64 = 5;

#[derive(clickhouse::Row, Deserialize)]
struct ClickRow {
    k1: String,
    k2: String,
    clicks: u64,
    unique_clicks: u64,
    bot_clicks: u64,
    preview_clicks: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct CountRow {
    k1: String,
    k2: String,
    name: String,
    n: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct ConversionRow {
    k1: String,
    k2: String,
    kind: String,
    currency: String,
    n: u64,
    sum_cents: i64,
}

/// What one stats query asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ask {
    pub tenant: String,
    pub group: Group,
    pub range: Range,
    /// Only this link's figures (`/v1/links/{id}/stats`).
    pub link: Option<String>,
}

impl Ask {
    /// `SELECT <keys> … WHERE <scope>` pieces shared by the four queries.
    fn keys(&self) -> (&'static str, &'static str) {
        match self.group {
            Group::Total => ("'' AS k1, '' AS k2", ""),
            Group::Campaign => ("campaign AS k1, '' AS k2", "k1, k2, "),
            Group::Source => ("source AS k1, medium AS k2", "k1, k2, "),
            Group::Day => ("toString(date) AS k1, '' AS k2", "k1, k2, "),
        }
    }

    fn scope(&self) -> String {
        let link = if self.link.is_some() {
            " AND link_id = ?"
        } else {
            ""
        };
        format!(
            "tenant_id = ? AND date >= toDate('{}') AND date <= toDate('{}'){link}",
            time::date_string(self.range.from),
            time::date_string(self.range.to)
        )
    }

    fn key(&self, k1: String, k2: String) -> Vec<String> {
        match self.group {
            Group::Total => Vec::new(),
            Group::Campaign | Group::Day => vec![k1],
            Group::Source => vec![k1, k2],
        }
    }

    fn bind(&self, mut q: clickhouse::query::Query) -> clickhouse::query::Query {
        q = q.bind(&self.tenant);
        if let Some(link) = &self.link {
            q = q.bind(link);
        }
        q
    }
}

/// The figures for `ask`, by group key (empty key for totals).
pub async fn figures(ch: &Client, ask: &Ask) -> Result<BTreeMap<Vec<String>, Figures>, ChError> {
    let (keys, group_by) = ask.keys();
    let scope = ask.scope();
    let clicks = ask
        .bind(ch.query(&format!(
            "SELECT {keys}, sumMerge(clicks) AS clicks, uniqHLL12IfMerge(unique_clicks) AS unique_clicks, \
             sumMerge(bot_clicks) AS bot_clicks, sumMerge(preview_clicks) AS preview_clicks \
             FROM stats_clicks WHERE {scope} {}",
            match group_by.trim_end_matches(", ") {
                // Totals: aggregates over no rows still answer one row of zeros.
                "" => String::new(),
                keys => format!("GROUP BY {keys}"),
            }
        )))
        .fetch_all::<ClickRow>();
    let installs = ask
        .bind(ch.query(&format!(
            "SELECT {keys}, match_type AS name, sum(installs) AS n FROM stats_installs \
             WHERE {scope} GROUP BY {group_by}match_type"
        )))
        .fetch_all::<CountRow>();
    let events = ask
        .bind(ch.query(&format!(
            "SELECT {keys}, event_name AS name, sum(events) AS n FROM stats_events \
             WHERE {scope} GROUP BY {group_by}event_name"
        )))
        .fetch_all::<CountRow>();
    let conversions = ask
        .bind(ch.query(&format!(
            "SELECT {keys}, type AS kind, currency, sum(conversions) AS n, sum(sum_cents) AS sum_cents \
             FROM stats_conversions WHERE {scope} GROUP BY {group_by}type, currency"
        )))
        .fetch_all::<ConversionRow>();
    // Installs the fraud rules fired on: per verdict, the installs (reason '') and each reason.
    let judged = ask
        .bind(ch.query(&format!(
            "SELECT {keys}, concat(verdict, ':', reason) AS name, sum(installs) AS n \
             FROM fraud_installs WHERE {scope} GROUP BY {group_by}verdict, reason"
        )))
        .fetch_all::<CountRow>();
    let (clicks, installs, events, conversions, judged) =
        tokio::try_join!(clicks, installs, events, conversions, judged)?;

    let mut out: BTreeMap<Vec<String>, Figures> = BTreeMap::new();
    if ask.group == Group::Total {
        out.insert(Vec::new(), Figures::default());
    }
    for r in clicks {
        let f = out.entry(ask.key(r.k1, r.k2)).or_default();
        f.clicks += r.clicks;
        f.unique_clicks += r.unique_clicks;
        f.bot_clicks += r.bot_clicks;
        f.preview_clicks += r.preview_clicks;
    }
    for r in installs.into_iter().filter(|r| r.n > 0) {
        let Some(how) = MatchType::parse(&r.name) else {
            warn!(match_type = %r.name, "installs of an unknown match type left out of stats");
            continue;
        };
        *out.entry(ask.key(r.k1, r.k2))
            .or_default()
            .installs
            .entry(how)
            .or_default() += r.n;
    }
    for r in judged.into_iter().filter(|r| r.n > 0) {
        let (verdict, reason) = r.name.split_once(':').unwrap_or((&r.name, ""));
        *out.entry(ask.key(r.k1, r.k2))
            .or_default()
            .judged
            .entry((verdict.to_string(), reason.to_string()))
            .or_default() += r.n;
    }
    for r in events.into_iter().filter(|r| r.n > 0) {
        *out.entry(ask.key(r.k1, r.k2))
            .or_default()
            .events
            .entry(r.name)
            .or_default() += r.n;
    }
    for r in conversions.into_iter().filter(|r| r.n > 0) {
        let c = out
            .entry(ask.key(r.k1, r.k2))
            .or_default()
            .conversions
            .entry((r.kind, r.currency))
            .or_default();
        c.0 += r.n;
        c.1 += r.sum_cents;
    }
    Ok(out)
}
