//! Stats for dashboards: date ranges (`window=7d|30d` or `from`/`to` UTC days), the figures
//! every stats answer carries, and their JSON. Figures come only from the aggregate tables the
//! materialized views of `clickhouse/0005_stats.sql` feed (`query.rs`); answers are cached per
//! tenant and query for a second with one ClickHouse computation per interval (`cache.rs`).

pub mod answers;
pub mod breakdown;
pub mod cache;
pub mod ctit;
pub mod query;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::attribution::MatchType;
use crate::error::FieldError;
use crate::time;

/// The longest `from`..`to` range, in days.
pub const MAX_DAYS: u16 = 366;

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    pub from: u16,
    pub to: u16,
    /// `7d` or `30d` when the range came from a window.
    pub window: Option<&'static str>,
}

impl Range {
    /// From the query parameters: `window` (default `7d`, ending today) or both `from` and
    /// `to` (`YYYY-MM-DD`).
    pub fn parse(
        window: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        today: u16,
    ) -> Result<Range, FieldError> {
        match (window, from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(FieldError::new(
                "window",
                "give either window or from/to, not both",
            )),
            (_, Some(_), None) => Err(FieldError::new("to", "is required with from")),
            (_, None, Some(_)) => Err(FieldError::new("from", "is required with to")),
            (_, Some(from), Some(to)) => {
                let from = parse_day(from)
                    .ok_or_else(|| FieldError::new("from", "must be a date YYYY-MM-DD"))?;
                let to = parse_day(to)
                    .ok_or_else(|| FieldError::new("to", "must be a date YYYY-MM-DD"))?;
                if from > to {
                    return Err(FieldError::new("from", "must not be after to"));
                }
                if to - from >= MAX_DAYS {
                    return Err(FieldError::new(
                        "to",
                        format!("range must be at most {MAX_DAYS} days"),
                    ));
                }
                Ok(Range {
                    from,
                    to,
                    window: None,
                })
            }
            (window, None, None) => {
                let (name, days) = match window.unwrap_or("7d") {
                    "7d" => ("7d", 7),
                    "30d" => ("30d", 30),
                    _ => return Err(FieldError::new("window", "must be 7d or 30d")),
                };
                Ok(Range {
                    from: today.saturating_sub(days - 1),
                    to: today,
                    window: Some(name),
                })
            }
        }
    }

    pub fn days(&self) -> impl Iterator<Item = u16> {
        self.from..=self.to
    }

    pub fn describe(&self, out: &mut Map<String, Value>) {
        out.insert("window".into(), json!(self.window));
        out.insert("from".into(), json!(time::date_string(self.from)));
        out.insert("to".into(), json!(time::date_string(self.to)));
    }
}

/// `YYYY-MM-DD` → day number (1970-01-01 = 0), for dates ClickHouse's `Date` holds.
pub fn parse_day(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &s[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let day = time::days_from_civil(i64::from(y), m, d);
    // Reject 2026-02-30 and friends: the day must map back to itself.
    if time::civil_from_days(day) != (i64::from(y), m, d) {
        return None;
    }
    u16::try_from(day).ok()
}

/// How stats are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Total,
    Campaign,
    /// Source and medium.
    Source,
    Day,
}

/// (type, currency) → (count, summed amount); currency empty for conversions without one.
pub type Conversions = BTreeMap<(String, String), (u64, i64)>;

/// Conversions as every stats answer lists them: `[{type, count, sum_cents?, currency?}]`.
pub fn conversions_json(conversions: &Conversions) -> Value {
    Value::Array(
        conversions
            .iter()
            .map(|((kind, currency), (count, sum))| {
                if currency.is_empty() {
                    json!({ "type": kind, "count": count })
                } else {
                    json!({ "type": kind, "count": count, "sum_cents": sum, "currency": currency })
                }
            })
            .collect(),
    )
}

/// Every figure of one stats row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub clicks: u64,
    pub unique_clicks: u64,
    pub bot_clicks: u64,
    pub preview_clicks: u64,
    /// Installs by match type.
    pub installs: BTreeMap<MatchType, u64>,
    pub conversions: Conversions,
    /// Events by name.
    pub events: BTreeMap<String, u64>,
    /// Installs the fraud rules fired on, by (verdict, reason); reason "" counts the installs.
    pub judged: BTreeMap<(String, String), u64>,
}

impl Figures {
    pub fn installs_total(&self) -> u64 {
        self.installs.values().sum()
    }

    pub fn organic_installs(&self) -> u64 {
        self.installs.get(&MatchType::Organic).copied().unwrap_or(0)
    }

    /// Installs rejected by the fraud rules (counted under their match type in `installs`).
    pub fn rejected_installs(&self) -> u64 {
        self.judged
            .get(&("rejected".to_string(), String::new()))
            .copied()
            .unwrap_or(0)
    }

    /// `{verdict: {reason: installs}}` for the verdicts that fired (`suspicious` in shadow
    /// mode, `flagged`, `rejected`).
    fn fraud_reasons(&self) -> Value {
        let mut out: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for ((verdict, reason), n) in &self.judged {
            if !reason.is_empty() {
                out.entry(verdict).or_default().insert(reason, *n);
            }
        }
        json!(out)
    }

    /// The figures as the stats endpoints answer them.
    pub fn to_json(&self) -> Map<String, Value> {
        let installs = self.installs_total();
        let organic = self.organic_installs();
        let rejected = self.rejected_installs();
        let mut out = Map::new();
        out.insert("clicks".into(), json!(self.clicks));
        out.insert("unique_clicks".into(), json!(self.unique_clicks));
        out.insert("bot_clicks".into(), json!(self.bot_clicks));
        out.insert("preview_clicks".into(), json!(self.preview_clicks));
        out.insert("installs".into(), json!(installs));
        out.insert(
            "attributed_installs".into(),
            json!(installs.saturating_sub(organic + rejected)),
        );
        out.insert("organic_installs".into(), json!(organic));
        out.insert("rejected_installs".into(), json!(rejected));
        out.insert("fraud_reasons".into(), self.fraud_reasons());
        out.insert("installs_by_match_type".into(), json!(self.installs));
        out.insert("conversions".into(), conversions_json(&self.conversions));
        out.insert(
            "events".into(),
            Value::Array(
                self.events
                    .iter()
                    .map(|(name, count)| json!({ "name": name, "count": count }))
                    .collect(),
            ),
        );
        out
    }
}

/// The answer for a grouped query: totals, or `{"rows": [...]}` sorted by clicks (then key).
pub fn answer(group: Group, range: &Range, groups: BTreeMap<Vec<String>, Figures>) -> Value {
    let mut out = Map::new();
    range.describe(&mut out);
    match group {
        Group::Total => {
            let totals = groups.into_values().next().unwrap_or_default();
            out.extend(totals.to_json());
        }
        Group::Campaign | Group::Source => {
            let mut rows: Vec<(Vec<String>, Figures)> = groups.into_iter().collect();
            rows.sort_by(|(ka, a), (kb, b)| b.clicks.cmp(&a.clicks).then_with(|| ka.cmp(kb)));
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|(key, figures)| {
                    let mut row = Map::new();
                    if group == Group::Campaign {
                        row.insert("campaign".into(), json!(key[0]));
                    } else {
                        row.insert("source".into(), json!(key[0]));
                        row.insert("medium".into(), json!(key[1]));
                    }
                    row.extend(figures.to_json());
                    Value::Object(row)
                })
                .collect();
            out.insert("rows".into(), Value::Array(rows));
        }
        Group::Day => {
            // Every day of the range, zero or not, oldest first (charts want no gaps).
            let mut groups = groups;
            let rows: Vec<Value> = range
                .days()
                .map(|day| {
                    let date = time::date_string(day);
                    let figures = groups.remove(&vec![date.clone()]).unwrap_or_default();
                    let mut row = Map::new();
                    row.insert("date".into(), json!(date));
                    row.extend(figures.to_json());
                    Value::Object(row)
                })
                .collect();
            out.insert("rows".into(), Value::Array(rows));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: u16 = 20_414; // 2025-11-22

    #[test]
    fn ranges() {
        let ok = |w, f, t| Range::parse(w, f, t, TODAY).map(|r| (r.from, r.to, r.window));
        assert_eq!(ok(None, None, None), Ok((TODAY - 6, TODAY, Some("7d"))));
        assert_eq!(
            ok(Some("30d"), None, None),
            Ok((TODAY - 29, TODAY, Some("30d")))
        );
        assert_eq!(
            ok(None, Some("2026-01-01"), Some("2026-01-31")),
            Ok((20_454, 20_484, None))
        );
        assert_eq!(
            ok(None, Some("2024-02-29"), Some("2024-02-29")),
            Ok((19_782, 19_782, None))
        );
        let bad = |w, f, t| Range::parse(w, f, t, TODAY).unwrap_err().field;
        assert_eq!(bad(Some("1d"), None, None), "window");
        assert_eq!(
            bad(Some("7d"), Some("2026-01-01"), Some("2026-01-02")),
            "window"
        );
        assert_eq!(bad(None, Some("2026-01-01"), None), "to");
        assert_eq!(bad(None, None, Some("2026-01-01")), "from");
        assert_eq!(bad(None, Some("2026-02-30"), Some("2026-03-01")), "from");
        assert_eq!(bad(None, Some("2026-01-01"), Some("26-01-01")), "to");
        assert_eq!(bad(None, Some("2026-01-02"), Some("2026-01-01")), "from");
        // 366 days at most: 2025-01-01..=2026-01-01 is 366 days, one more is too many.
        assert!(ok(None, Some("2025-01-01"), Some("2026-01-01")).is_ok());
        assert_eq!(bad(None, Some("2025-01-01"), Some("2026-01-02")), "to");
    }

    #[test]
    fn days() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-11-22"), Some(20_779));
        for bad in [
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-1-01",
            "20261122",
            "2026-11-22T",
            "1969-12-31",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn grouped_rows_sort_by_clicks_and_totals_derive() {
        let mut groups = BTreeMap::new();
        let mut a = Figures {
            clicks: 5,
            ..Figures::default()
        };
        a.installs.insert(MatchType::Organic, 2);
        a.installs.insert(MatchType::ClickId, 3);
        a.conversions
            .insert(("deposit".into(), "USD".into()), (2, -500));
        a.conversions
            .insert(("signup".into(), String::new()), (4, 0));
        groups.insert(vec!["a".to_string()], a);
        groups.insert(
            vec!["b".to_string()],
            Figures {
                clicks: 9,
                ..Figures::default()
            },
        );
        let range = Range::parse(None, None, None, TODAY).unwrap();
        let v = answer(Group::Campaign, &range, groups);
        assert_eq!(v["rows"][0]["campaign"], "b");
        let a = &v["rows"][1];
        assert_eq!(
            (
                a["installs"].as_u64(),
                a["attributed_installs"].as_u64(),
                a["organic_installs"].as_u64()
            ),
            (Some(5), Some(3), Some(2))
        );
        assert_eq!(
            a["conversions"],
            json!([{"type": "deposit", "count": 2, "sum_cents": -500, "currency": "USD"}, {"type": "signup", "count": 4}])
        );
        assert_eq!(v["window"], "7d");
    }

    proptest::proptest! {
        /// Any window, from and to: a range within the limits or a named refusal.
        #[test]
        fn any_range_parameters(
            window in proptest::option::of("\\PC{0,6}"),
            from in proptest::option::of("[0-9\\-é]{0,12}"),
            to in proptest::option::of("[0-9\\-é]{0,12}"),
        ) {
            match Range::parse(window.as_deref(), from.as_deref(), to.as_deref(), TODAY) {
                Ok(r) => proptest::prop_assert!(r.from <= r.to && r.to - r.from < MAX_DAYS),
                Err(e) => proptest::prop_assert!(["window", "from", "to"].contains(&e.field.as_str())),
            }
        }
    }
}
