//! Breakdowns (`GET /v1/attribution/stats/breakdown?by=…`): human clicks, unique clicks,
//! installs and conversions by one dimension's value, most clicks first, from the aggregate
//! tables only — `breakdown_clicks`, `breakdown_installs`, `breakdown_conversions`
//! (`clickhouse/0011_breakdown_scopes.sql`), and for the `link` dimension the stats tables.
//! Installs and conversions exist for the dimensions they carry (`JOINED`). A first query
//! finds the rows from sums alone: clicks and installs by key, joined on it (a country can
//! have installs and no clicks), sorted and cut to `limit` by ClickHouse. Then, for those keys
//! only, the unique-click sketches are merged and the conversions summed: merging every key's
//! sketches cost 0.3-0.6 s at 10M clicks. A window's full weeks take their weekly sketches
//! (`breakdown_clicks_weekly`, `clickhouse/0014_breakdown_weeks.sql`), its edge days the daily
//! ones.

use std::collections::BTreeMap;

use clickhouse::Client;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{conversions_json, Conversions, Range};
use crate::error::FieldError;
use crate::store::clickhouse::ChError;
use crate::time;

pub const DIMENSIONS: [&str; 11] = [
    "country",
    "region",
    "city",
    "platform",
    "os",
    "browser",
    "device",
    "referrer_host",
    "variant",
    "link",
    "sub1",
];

/// The dimensions with many keys, whose unique clicks are also kept by week
/// (`breakdown_clicks_weekly`), for breakdowns of the whole tenant.
const WEEKLY: [&str; 4] = ["region", "city", "referrer_host", "sub1"];

/// The dimensions installs and conversions are broken down by too (the others' rows have
/// clicks only).
pub const JOINED: [&str; 5] = ["country", "platform", "variant", "link", "sub1"];

/// Rows a breakdown answers unless asked, and at most.
pub const LIMIT_DEFAULT: usize = 100;
pub const LIMIT_MAX: usize = 1_000;
const FILTER_MAX: usize = 256;

/// One breakdown question: the tenant's facts in `range`, by `dim`, optionally narrowed to
/// one link, campaign or source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Breakdown {
    pub tenant: String,
    pub dim: &'static str,
    pub range: Range,
    pub link: Option<String>,
    pub campaign: Option<String>,
    pub source: Option<String>,
    pub limit: usize,
}

impl Breakdown {
    /// From the query parameters (the range already parsed).
    pub fn parse(
        tenant: String,
        range: Range,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Breakdown, FieldError> {
        let by = get("by").ok_or_else(|| {
            FieldError::new(
                "by",
                format!("is required: one of {}", DIMENSIONS.join(", ")),
            )
        })?;
        let dim = DIMENSIONS.into_iter().find(|d| *d == by).ok_or_else(|| {
            FieldError::new("by", format!("must be one of {}", DIMENSIONS.join(", ")))
        })?;
        let limit = match get("limit") {
            None => LIMIT_DEFAULT,
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| (1..=LIMIT_MAX).contains(n))
                .ok_or_else(|| FieldError::new("limit", format!("must be 1-{LIMIT_MAX}")))?,
        };
        let filter = |name: &str| match get(name) {
            Some(v) if v.len() > FILTER_MAX => Err(FieldError::new(
                name,
                format!("is longer than {FILTER_MAX} bytes"),
            )),
            v => Ok(v),
        };
        Ok(Breakdown {
            tenant,
            dim,
            range,
            link: filter("link")?,
            campaign: filter("campaign")?,
            source: filter("source")?,
            limit,
        })
    }

    /// The `WHERE` of every query of the answer (placeholders bound by `bind`). A breakdown
    /// narrowed to a link, campaign or source reads the `link` scope's rows, else the `all`
    /// scope's (`clickhouse/0011_breakdown_scopes.sql`); the `link` dimension reads the stats
    /// tables, which have no scopes.
    fn scope(&self) -> String {
        self.scope_of(&format!(
            "date >= toDate('{}') AND date <= toDate('{}')",
            time::date_string(self.range.from),
            time::date_string(self.range.to)
        ))
    }

    /// The `WHERE` of `scope` with other days: `dates` (no placeholders, so `bind` binds it).
    fn scope_of(&self, dates: &str) -> String {
        let mut scope = format!("tenant_id = ? AND {dates}");
        if self.dim != "link" {
            scope += " AND dim = ? AND scope = ?";
        }
        for (column, value) in self.filters() {
            if value.is_some() {
                scope += &format!(" AND {column} = ?");
            }
        }
        scope
    }

    fn filters(&self) -> [(&'static str, &Option<String>); 3] {
        [
            ("link_id", &self.link),
            ("campaign", &self.campaign),
            ("source", &self.source),
        ]
    }

    fn bind(&self, mut q: clickhouse::query::Query) -> clickhouse::query::Query {
        q = q.bind(&self.tenant);
        if self.dim != "link" {
            let narrowed = self.filters().iter().any(|(_, v)| v.is_some());
            q = q.bind(self.dim).bind(if narrowed { "link" } else { "all" });
        }
        for (_, value) in self.filters() {
            if let Some(value) = value {
                q = q.bind(value);
            }
        }
        q
    }

    /// The tables and key column of each kind of fact (clicks, installs, conversions).
    fn tables(&self) -> [&'static str; 4] {
        match self.dim {
            "link" => [
                "stats_clicks",
                "stats_installs",
                "stats_conversions",
                "link_id",
            ],
            _ => [
                "breakdown_clicks",
                "breakdown_installs",
                "breakdown_conversions",
                "key",
            ],
        }
    }
}

/// One row of a breakdown.
#[derive(clickhouse::Row, Deserialize)]
pub struct Row {
    pub key: String,
    pub clicks: u64,
    pub installs: u64,
    pub organic: u64,
    /// Filled by the second queries: sketches are merged only for the keys shown.
    #[serde(skip)]
    pub unique_clicks: u64,
    /// Likewise, for the `JOINED` dimensions.
    #[serde(skip)]
    pub conversions: Conversions,
    /// Likewise: installs the fraud rules rejected (counted in `installs` too).
    #[serde(skip)]
    pub rejected: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct UniqueRow {
    key: String,
    n: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct ConversionRow {
    key: String,
    kind: String,
    currency: String,
    n: u64,
    sum_cents: i64,
}

/// The rows of `b`, in order: the keys with the most clicks (sums only), then their unique
/// clicks and conversions.
pub async fn rows(ch: &Client, b: &Breakdown) -> Result<Vec<Row>, ChError> {
    let scope = b.scope();
    let [clicks, installs, conversions, key] = b.tables();
    // 18.16 wants the join's strictness spelled out, current servers the subqueries named; a
    // key missing on one side reads 0s.
    let sql = format!(
        "SELECT key, clicks, all_installs AS installs, organic FROM \
         (SELECT {key} AS key, sumMerge(clicks) AS clicks FROM {clicks} WHERE {scope} GROUP BY key) AS c \
         ALL FULL OUTER JOIN \
         (SELECT {key} AS key, sum(installs) AS all_installs, sumIf(installs, match_type = 'organic') AS organic \
          FROM {installs} WHERE {scope} GROUP BY key) AS i USING key \
         ORDER BY clicks DESC, installs DESC, key LIMIT {}",
        b.limit
    );
    let mut out: Vec<Row> = b.bind(b.bind(ch.query(&sql))).fetch_all().await?;
    if out.is_empty() {
        return Ok(out);
    }
    // `select … FROM table` for the rows' keys, grouped by `group`.
    let of_keys = |select: String, group: &str| {
        let placeholders = vec!["?"; out.len()].join(", ");
        let mut q = b.bind(ch.query(&format!(
            "{select} WHERE {scope} AND {key} IN ({placeholders}) GROUP BY {group}"
        )));
        for row in &out {
            q = q.bind(&row.key);
        }
        q
    };
    let today = (time::now_ms() / time::MS_PER_DAY) as u16;
    let weekly = WEEKLY.contains(&b.dim) && b.filters().iter().all(|(_, v)| v.is_none());
    let uniques = match (b.dim, weeks(&b.range, today).filter(|_| weekly)) {
        ("link", _) => of_keys(
            format!("SELECT {key} AS key, uniqHLL12IfMerge(unique_clicks) AS n FROM {clicks}"),
            "key",
        ),
        (_, None) => of_keys(
            format!("SELECT key, uniqHLL12Merge(unique_clicks) AS n FROM {clicks}"),
            "key",
        ),
        // The weeks' sketches, and the edge days' daily ones.
        (_, Some((first, last))) => {
            let day = time::date_string;
            let edges = b.scope_of(&format!(
                "date >= toDate('{}') AND date <= toDate('{}') \
                 AND (date < toDate('{}') OR date > toDate('{}'))",
                day(b.range.from),
                day(b.range.to),
                day(first),
                day(last.saturating_add(6))
            ));
            let placeholders = vec!["?"; out.len()].join(", ");
            let mut q = ch.query(&format!(
                "SELECT key, uniqHLL12Merge(u) AS n FROM (\
                 SELECT key, unique_clicks AS u FROM {clicks} WHERE {edges} AND key IN ({placeholders}) \
                 UNION ALL \
                 SELECT key, unique_clicks AS u FROM breakdown_clicks_weekly \
                 WHERE tenant_id = ? AND dim = ? AND week >= toDate('{}') AND week <= toDate('{}') \
                 AND key IN ({placeholders})) GROUP BY key",
                day(first),
                day(last)
            ));
            q = b.bind(q);
            for row in &out {
                q = q.bind(&row.key);
            }
            q = q.bind(&b.tenant).bind(b.dim);
            for row in &out {
                q = q.bind(&row.key);
            }
            q
        }
    }
    .fetch_all::<UniqueRow>();
    let conversions = async {
        if !JOINED.contains(&b.dim) {
            return Ok(Vec::new());
        }
        of_keys(
            format!(
                "SELECT {key} AS key, type AS kind, currency, sum(conversions) AS n, \
                 sum(sum_cents) AS sum_cents FROM {conversions}"
            ),
            "key, kind, currency",
        )
        .fetch_all::<ConversionRow>()
        .await
    };
    let rejected = async {
        if !JOINED.contains(&b.dim) {
            return Ok(Vec::new());
        }
        rejected_of(ch, b, &out).await
    };
    let (uniques, conversions, rejected) = tokio::try_join!(uniques, conversions, rejected)?;
    let uniques: BTreeMap<String, u64> = uniques.into_iter().map(|u| (u.key, u.n)).collect();
    let rejected: BTreeMap<String, u64> = rejected.into_iter().map(|u| (u.key, u.n)).collect();
    let mut by_key: BTreeMap<String, Vec<ConversionRow>> = BTreeMap::new();
    for c in conversions.into_iter().filter(|c| c.n > 0) {
        by_key.entry(c.key.clone()).or_default().push(c);
    }
    for row in &mut out {
        row.unique_clicks = uniques.get(&row.key).copied().unwrap_or(0);
        row.rejected = rejected.get(&row.key).copied().unwrap_or(0);
        for c in by_key.remove(&row.key).unwrap_or_default() {
            row.conversions
                .insert((c.kind, c.currency), (c.n, c.sum_cents));
        }
    }
    Ok(out)
}

/// The Mondays of the first and the last week whose clicks all fall in `range`, if any: the
/// weeks wholly inside it, and the week of its last day when that day is today or later
/// (there are no clicks after today).
fn weeks(range: &Range, today: u16) -> Option<(u16, u16)> {
    // Day 0, 1970-01-01, was a Thursday: the day after a Sunday has weekday 0.
    let monday = |day: u16| day.saturating_sub(((u32::from(day) + 3) % 7) as u16);
    let first = monday(range.from.saturating_add(6));
    let last = if range.to >= today {
        monday(range.to)
    } else {
        monday(range.to.saturating_add(1).checked_sub(7)?)
    };
    (first <= last).then_some((first, last))
}

/// The rejected installs of the rows' keys, from `fraud_installs` (which has a column per
/// joined dimension instead of scopes).
async fn rejected_of(
    ch: &Client,
    b: &Breakdown,
    rows: &[Row],
) -> Result<Vec<UniqueRow>, clickhouse::error::Error> {
    let column = match b.dim {
        "link" => "link_id",
        dim => dim,
    };
    let mut sql = format!(
        "SELECT {column} AS key, sum(installs) AS n FROM fraud_installs \
         WHERE tenant_id = ? AND date >= toDate('{}') AND date <= toDate('{}') \
         AND verdict = 'rejected' AND reason = ''",
        time::date_string(b.range.from),
        time::date_string(b.range.to)
    );
    for (filter, value) in b.filters() {
        if value.is_some() {
            sql += &format!(" AND {filter} = ?");
        }
    }
    sql += &format!(
        " AND {column} IN ({}) GROUP BY key",
        vec!["?"; rows.len()].join(", ")
    );
    let mut q = ch.query(&sql).bind(&b.tenant);
    for value in b.filters().into_iter().filter_map(|(_, v)| v.as_ref()) {
        q = q.bind(value);
    }
    for row in rows {
        q = q.bind(&row.key);
    }
    q.fetch_all().await
}

/// The answer's JSON: `{by, window, from, to, rows: [{key, clicks, unique_clicks, installs,
/// attributed_installs, rejected_installs, conversions}]}`.
pub fn answer(b: &Breakdown, rows: Vec<Row>) -> Value {
    let mut out = Map::new();
    out.insert("by".into(), json!(b.dim));
    b.range.describe(&mut out);
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "key": r.key,
                "clicks": r.clicks,
                "unique_clicks": r.unique_clicks,
                "installs": r.installs,
                "attributed_installs": r.installs.saturating_sub(r.organic + r.rejected),
                "rejected_installs": r.rejected,
                "conversions": conversions_json(&r.conversions),
            })
        })
        .collect();
    out.insert("rows".into(), Value::Array(rows));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_of_ranges() {
        let day = |s: &str| super::super::parse_day(s).unwrap();
        let range = |from: &str, to: &str| Range {
            from: day(from),
            to: day(to),
            window: None,
        };
        // 2026-11-30 is a Monday; "today" is Saturday 2026-12-05 unless said.
        let cases = [
            (
                ("2026-11-23", "2026-11-29"),
                Some(("2026-11-23", "2026-11-23")),
            ),
            (
                ("2026-11-22", "2026-11-30"),
                Some(("2026-11-23", "2026-11-23")),
            ),
            (("2026-11-24", "2026-11-29"), None),
            (("2026-11-23", "2026-11-28"), None),
            (
                ("2026-11-06", "2026-11-28"),
                Some(("2026-11-09", "2026-11-16")),
            ),
            // Ending today: the week so far is whole.
            (
                ("2026-11-06", "2026-12-05"),
                Some(("2026-11-09", "2026-11-30")),
            ),
            (("2026-12-01", "2026-12-05"), None),
            (
                ("2026-11-30", "2026-12-05"),
                Some(("2026-11-30", "2026-11-30")),
            ),
            (
                ("2026-11-30", "2026-12-31"),
                Some(("2026-11-30", "2026-12-28")),
            ),
            (("1970-01-05", "1970-01-06"), None),
            (("1970-01-01", "1970-01-08"), None),
            (
                ("1970-01-01", "1970-01-11"),
                Some(("1970-01-05", "1970-01-05")),
            ),
        ];
        for ((from, to), want) in cases {
            let want = want.map(|(a, b)| (day(a), day(b)));
            assert_eq!(
                weeks(&range(from, to), day("2026-12-05")),
                want,
                "{from} {to}"
            );
        }
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let range = Range {
            from: 1,
            to: 7,
            window: Some("7d"),
        };
        let parse = |params: &[(&str, &str)]| {
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Breakdown::parse("t".into(), range, |name| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let long = "x".repeat(257);
        // (parameters, the field refused, or the dimension and limit understood)
        let cases: &[(&[(&str, &str)], Result<(&str, usize), &str>)] = &[
            (&[("by", "country")], Ok(("country", 100))),
            (&[("by", "link"), ("limit", "1000")], Ok(("link", 1000))),
            (&[("by", "sub1"), ("limit", "1")], Ok(("sub1", 1))),
            (&[], Err("by")),
            (&[("by", "Country")], Err("by")),
            (&[("by", "campaign")], Err("by")),
            (&[("by", "os"), ("limit", "0")], Err("limit")),
            (&[("by", "os"), ("limit", "1001")], Err("limit")),
            (&[("by", "os"), ("limit", "ten")], Err("limit")),
            (&[("by", "os"), ("campaign", &long)], Err("campaign")),
        ];
        for (params, want) in cases {
            let got = parse(params).map(|b| (b.dim, b.limit)).map_err(|e| e.field);
            assert_eq!(got, want.map_err(String::from), "{params:?}");
        }
        let b = parse(&[("by", "variant"), ("link", "l1"), ("source", "fb")]).unwrap();
        assert_eq!(
            b.scope(),
            "tenant_id = ? AND date >= toDate('1970-01-02') AND date <= toDate('1970-01-08') \
             AND dim = ? AND scope = ? AND link_id = ? AND source = ?"
        );
    }
}
