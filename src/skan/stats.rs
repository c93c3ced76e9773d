//! `GET /v1/skan/stats`: counted postbacks (verified, of the tenant's apps) by ad network and
//! campaign. A postback's campaign comes from the campaign map; one no entry names is shown
//! by its source identifier with `campaign: null`, so the map can be completed.
//!
//! Installs, redownloads and re-engagements are the winning first postbacks (sequence 0) of
//! each conversion type: later postbacks report the same install again. `fine` and `coarse`
//! are the first postbacks' values; `by_sequence` gives every conversion window's.

use std::collections::BTreeMap;

use clickhouse::Client;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::campaigns::CampaignMap;
use crate::error::Error;
use crate::stats::Range;
use crate::store::clickhouse::ChError;
use crate::store::redis::Redis;
use crate::time;

/// One group of counted postbacks: a network's source identifier in one window, by win and
/// conversion type, with its coarse values counted and its fine values as `value → postbacks`.
#[derive(clickhouse::Row, Deserialize, Debug, Clone)]
pub struct Group {
    pub ad_network_id: String,
    pub source_identifier: String,
    pub sequence: u8,
    pub did_win: u8,
    pub conversion_type: String,
    pub postbacks: u64,
    pub coarse: [u64; 3],
    pub fine_values: Vec<i16>,
    pub fine_counts: Vec<u64>,
}

/// The tenant's counted postbacks received in `range`, of one app or all, grouped (from the
/// `skan_daily` aggregate).
pub async fn groups(
    ch: &Client,
    tenant: &str,
    range: &Range,
    app_store_id: Option<u64>,
) -> Result<Vec<Group>, ChError> {
    let mut sql = format!(
        "SELECT ad_network_id, source_identifier, sequence, did_win, conversion_type, \
         sum(postbacks) AS postbacks, \
         (sum(coarse_low), sum(coarse_medium), sum(coarse_high)) AS coarse, \
         tupleElement(sumMap(`fineMap.value`, `fineMap.postbacks`), 1) AS fine_values, \
         tupleElement(sumMap(`fineMap.value`, `fineMap.postbacks`), 2) AS fine_counts \
         FROM skan_daily WHERE tenant_id = ? AND date >= toDate('{}') AND date <= toDate('{}')",
        time::date_string(range.from),
        time::date_string(range.to)
    );
    if app_store_id.is_some() {
        sql += " AND app_store_id = ?";
    }
    sql += " GROUP BY ad_network_id, source_identifier, sequence, did_win, conversion_type";
    let mut q = ch.query(&sql).bind(tenant);
    if let Some(id) = app_store_id {
        q = q.bind(id);
    }
    Ok(q.fetch_all().await?)
}

/// The stats use case: the tenant's figures in `range`, decoded by its campaign map.
pub async fn figures(
    ch: &Client,
    redis: &Redis,
    tenant: &str,
    range: &Range,
    app_store_id: Option<u64>,
) -> Result<Value, Error> {
    let (entries, groups) = tokio::join!(
        super::campaigns::get(redis, tenant),
        groups(ch, tenant, range, app_store_id)
    );
    let map = CampaignMap::new(&entries?);
    let groups = groups?;
    Ok(answer(range, &map, &groups))
}

/// One window's figures.
#[derive(Default)]
struct Values {
    postbacks: u64,
    fine: BTreeMap<i16, u64>,
    coarse: [u64; 3],
}

impl Values {
    fn add(&mut self, g: &Group) {
        self.postbacks += g.postbacks;
        for (value, n) in g.fine_values.iter().zip(&g.fine_counts) {
            *self.fine.entry(*value).or_default() += n;
        }
        for (sum, n) in self.coarse.iter_mut().zip(g.coarse) {
            *sum += n;
        }
    }

    fn fine_json(&self) -> Value {
        Value::Object(
            self.fine
                .iter()
                .map(|(v, n)| (v.to_string(), json!(n)))
                .collect(),
        )
    }

    fn coarse_json(&self) -> Value {
        json!({"low": self.coarse[0], "medium": self.coarse[1], "high": self.coarse[2]})
    }
}

#[derive(Default)]
struct Row {
    installs: u64,
    redownloads: u64,
    re_engagements: u64,
    non_winning: u64,
    by_sequence: [Values; 3],
}

/// The answer: one row per ad network and campaign (or unmapped source identifier).
pub fn answer(range: &Range, map: &CampaignMap, groups: &[Group]) -> Value {
    // (network, unmapped, campaign, source identifier when unmapped): each network's
    // campaigns first, then what the map does not name.
    type Key<'a> = (&'a str, bool, Option<&'a str>, Option<&'a str>);
    let mut rows: BTreeMap<Key, Row> = BTreeMap::new();
    for g in groups {
        let campaign = map.campaign(&g.ad_network_id, &g.source_identifier);
        let unmapped = campaign.is_none().then_some(g.source_identifier.as_str());
        let row = rows
            .entry((&g.ad_network_id, campaign.is_none(), campaign, unmapped))
            .or_default();
        if g.did_win == 0 {
            row.non_winning += g.postbacks;
            continue;
        }
        let sequence = usize::from(g.sequence.min(2));
        row.by_sequence[sequence].add(g);
        if sequence == 0 {
            match g.conversion_type.as_str() {
                "download" => row.installs += g.postbacks,
                "redownload" => row.redownloads += g.postbacks,
                _ => row.re_engagements += g.postbacks,
            }
        }
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|((network, _, campaign, unmapped), r)| {
            let first = &r.by_sequence[0];
            let mut v = json!({
                "ad_network": network,
                "campaign": campaign,
                "installs": r.installs,
                "redownloads": r.redownloads,
                "re_engagements": r.re_engagements,
                "non_winning_postbacks": r.non_winning,
                "fine": first.fine_json(),
                "coarse": first.coarse_json(),
                "by_sequence": r.by_sequence.iter().enumerate().map(|(i, s)| json!({
                    "sequence": i,
                    "postbacks": s.postbacks,
                    "fine": s.fine_json(),
                    "coarse": s.coarse_json(),
                })).collect::<Vec<_>>(),
            });
            if let Some(source) = unmapped {
                v["source_identifier"] = json!(source);
            }
            v
        })
        .collect();
    let mut out = Map::new();
    range.describe(&mut out);
    out.insert("rows".into(), Value::Array(rows));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::super::campaigns::Entry;
    use super::*;

    fn group(
        source: &str,
        sequence: u8,
        win: bool,
        kind: &str,
        fine: &[(i16, u64)],
        coarse: [u64; 3],
    ) -> Group {
        Group {
            ad_network_id: "net".into(),
            source_identifier: source.into(),
            sequence,
            did_win: win as u8,
            conversion_type: kind.into(),
            postbacks: fine.iter().map(|(_, n)| n).sum::<u64>() + coarse.iter().sum::<u64>(),
            coarse,
            fine_values: fine.iter().map(|(v, _)| *v).collect(),
            fine_counts: fine.iter().map(|(_, n)| *n).collect(),
        }
    }

    #[test]
    fn figures_by_campaign_and_window() {
        let map = CampaignMap::new(&[Entry {
            ad_network_id: "net".into(),
            source_identifier: "39".into(),
            campaign: "summer".into(),
        }]);
        let groups = [
            group("5239", 0, true, "download", &[(12, 3)], [0; 3]),
            group("39", 0, true, "download", &[], [0, 0, 2]),
            group("239", 0, true, "redownload", &[(12, 1)], [0; 3]),
            group("39", 0, true, "re-engagement", &[], [1, 0, 0]),
            group("39", 0, false, "download", &[], [4, 0, 0]),
            group("5239", 1, true, "download", &[], [0, 2, 0]),
            group("5239", 2, true, "download", &[], [0, 0, 1]),
            group("77", 0, true, "download", &[(5, 1)], [0; 3]),
        ];
        let range = Range {
            from: 1,
            to: 7,
            window: Some("7d"),
        };
        let v = answer(&range, &map, &groups);
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let summer = &rows[0];
        assert_eq!(summer["campaign"], "summer");
        assert_eq!(
            (
                &summer["installs"],
                &summer["redownloads"],
                &summer["re_engagements"],
                &summer["non_winning_postbacks"]
            ),
            (&json!(5), &json!(1), &json!(1), &json!(4))
        );
        assert_eq!(summer["fine"], json!({"12": 4}));
        assert_eq!(summer["coarse"], json!({"low": 1, "medium": 0, "high": 2}));
        assert_eq!(summer["by_sequence"][1]["postbacks"], 2);
        assert_eq!(summer["by_sequence"][1]["coarse"]["medium"], 2);
        assert_eq!(summer["by_sequence"][2]["coarse"]["high"], 1);
        assert!(summer.get("source_identifier").is_none());
        let unmapped = &rows[1];
        assert_eq!(
            (&unmapped["campaign"], &unmapped["source_identifier"]),
            (&Value::Null, &json!("77"))
        );
        assert_eq!(unmapped["installs"], 1);
    }
}
