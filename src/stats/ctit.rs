//! The click-to-install time histogram (`GET /v1/attribution/stats/ctit?source=&window=`): the
//! installs matched to a click (rejected ones included), in buckets from seconds to days, from
//! the `ctit_installs` aggregate (`clickhouse/0012_fraud.sql`). Click injection shows as a
//! spike in the first buckets, click flooding as a long flat tail.

use clickhouse::Client;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::Range;
use crate::store::clickhouse::ChError;
use crate::time;

/// Each bucket's lower edge in seconds; the migration's `multiIf` names buckets by them.
pub const EDGES: [u32; 14] = [
    0, 10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 259200, 604800,
];

#[derive(clickhouse::Row, Deserialize)]
struct BucketRow {
    bucket: u32,
    installs: u64,
}

/// The histogram of the tenant's installs in `range`, of one source or all.
pub async fn histogram(
    ch: &Client,
    tenant: &str,
    range: &Range,
    source: Option<&str>,
) -> Result<Value, ChError> {
    let mut sql = format!(
        "SELECT bucket, sum(installs) AS installs FROM ctit_installs WHERE tenant_id = ? \
         AND date >= toDate('{}') AND date <= toDate('{}')",
        time::date_string(range.from),
        time::date_string(range.to)
    );
    if source.is_some() {
        sql += " AND source = ?";
    }
    sql += " GROUP BY bucket";
    let mut q = ch.query(&sql).bind(tenant);
    if let Some(source) = source {
        q = q.bind(source);
    }
    let rows: Vec<BucketRow> = q.fetch_all().await?;
    Ok(answer(range, source, &rows))
}

fn answer(range: &Range, source: Option<&str>, rows: &[BucketRow]) -> Value {
    let count = |edge: u32| {
        rows.iter()
            .filter(|r| r.bucket == edge)
            .map(|r| r.installs)
            .sum::<u64>()
    };
    let buckets: Vec<Value> = EDGES
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = EDGES.get(i + 1).copied();
            json!({
                "from_seconds": from,
                "to_seconds": to,
                "label": label(from, to),
                "installs": count(from),
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("source".into(), json!(source));
    range.describe(&mut out);
    out.insert(
        "installs".into(),
        json!(rows.iter().map(|r| r.installs).sum::<u64>()),
    );
    out.insert("buckets".into(), Value::Array(buckets));
    Value::Object(out)
}

/// `0-10s`, `10-30s`, `30s-1m`, `1-5m`, `12h-1d`, `7d+`: the unit once when both ends share it.
fn label(from: u32, to: Option<u32>) -> String {
    let unit = |s: u32| match s {
        s if s >= 86400 && s % 86400 == 0 => (s / 86400, "d"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "h"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "m"),
        s => (s, "s"),
    };
    let (a, ua) = unit(from);
    match to.map(unit) {
        None => format!("{a}{ua}+"),
        Some((b, ub)) if ua == ub || a == 0 => format!("{a}-{b}{ub}"),
        Some((b, ub)) => format!("{a}{ua}-{b}{ub}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_labelled_and_counted() {
        let range = Range {
            from: 1,
            to: 7,
            window: Some("7d"),
        };
        let rows = [
            BucketRow {
                bucket: 0,
                installs: 3,
            },
            BucketRow {
                bucket: 3600,
                installs: 2,
            },
            BucketRow {
                bucket: 604800,
                installs: 1,
            },
        ];
        let v = answer(&range, Some("fb"), &rows);
        assert_eq!(v["installs"], 6);
        let buckets = v["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), EDGES.len());
        let labels: Vec<&str> = buckets
            .iter()
            .map(|b| b["label"].as_str().unwrap())
            .collect();
        assert_eq!(
            labels,
            [
                "0-10s", "10-30s", "30s-1m", "1-5m", "5-15m", "15-30m", "30m-1h", "1-3h", "3-6h",
                "6-12h", "12h-1d", "1-3d", "3-7d", "7d+"
            ]
        );
        assert_eq!(buckets[0]["installs"], 3);
        assert_eq!(buckets[7]["installs"], 2);
        assert_eq!(buckets[13]["installs"], 1);
        assert_eq!(buckets[13]["to_seconds"], Value::Null);
        let sum: u64 = buckets
            .iter()
            .map(|b| b["installs"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, 6);
    }

    /// The edges here are the edges the migration's view buckets by.
    #[test]
    fn edges_match_the_migration() {
        let sql = include_str!("../../clickhouse/0012_fraud.sql");
        for pair in EDGES.windows(2) {
            let clause = format!("ctit_seconds < {}, {}", pair[1], pair[0]);
            assert!(sql.contains(&clause), "{clause}");
        }
    }
}
