//! The campaign map: which campaign an ad network's source identifier stands for. SKAdNetwork
//! 4.0's source identifier is hierarchical: an ad network encodes up to four digits, and a
//! postback carries the last two, three or all four of them, as many as its crowd-anonymity
//! tier allows (`5239` arrives as `39`, `239` or `5239`). A map entry may name any of those,
//! and a postback takes the most specific entry its digits reach. Earlier versions'
//! `campaign-id` (1–100) is matched as it is.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, FieldError};
use crate::store::redis::Redis;

/// Entries a tenant's map may hold.
pub const MAX_ENTRIES: usize = 10_000;
const MAX_NAME: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ad_network_id: String,
    /// One to four digits.
    pub source_identifier: String,
    pub campaign: String,
}

/// `{"campaigns": [{ad_network_id, source_identifier, campaign}, …]}`, each field checked and
/// named by its place (`campaigns[3].source_identifier`); one entry per network and
/// identifier.
pub fn parse(body: &Value) -> Result<Vec<Entry>, FieldError> {
    let object = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    if let Some(field) = object.keys().find(|k| *k != "campaigns") {
        return Err(FieldError::new(field, "is not a campaign map field"));
    }
    let items = match object.get("campaigns") {
        Some(Value::Array(items)) if items.len() <= MAX_ENTRIES => items,
        Some(Value::Array(_)) => {
            return Err(FieldError::new(
                "campaigns",
                format!("holds at most {MAX_ENTRIES} entries"),
            ))
        }
        None => return Err(FieldError::new("campaigns", "is required")),
        Some(_) => return Err(FieldError::new("campaigns", "must be an array")),
    };
    let mut seen = HashMap::new();
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("campaigns[{i}].{field}");
        let item = item
            .as_object()
            .ok_or_else(|| FieldError::new(&format!("campaigns[{i}]"), "must be an object"))?;
        if let Some(field) = item
            .keys()
            .find(|k| !["ad_network_id", "source_identifier", "campaign"].contains(&k.as_str()))
        {
            return Err(FieldError::new(&at(field), "is not a campaign map field"));
        }
        let text = |field: &str| match item.get(field) {
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= MAX_NAME
                    && !s.chars().any(char::is_control) =>
            {
                Ok(s.clone())
            }
            None => Err(FieldError::new(&at(field), "is required")),
            Some(_) => Err(FieldError::new(
                &at(field),
                format!("must be a non-empty string of at most {MAX_NAME} characters"),
            )),
        };
        let ad_network_id = text("ad_network_id")?;
        let campaign = text("campaign")?;
        let source_identifier = match item.get("source_identifier") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            None => return Err(FieldError::new(&at("source_identifier"), "is required")),
            Some(_) => String::new(),
        };
        if !(1..=4).contains(&source_identifier.len())
            || !source_identifier.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(FieldError::new(
                &at("source_identifier"),
                "must be one to four digits",
            ));
        }
        if let Some(first) = seen.insert((ad_network_id.clone(), source_identifier.clone()), i) {
            return Err(FieldError::new(
                &at("source_identifier"),
                format!("is mapped already by campaigns[{first}] for this ad network"),
            ));
        }
        entries.push(Entry {
            ad_network_id,
            source_identifier,
            campaign,
        });
    }
    Ok(entries)
}

/// The tenant's map (empty until one is put).
pub async fn get(redis: &Redis, tenant: &str) -> Result<Vec<Entry>, Error> {
    let Some(raw) = redis.skan_campaigns(tenant).await? else {
        return Ok(Vec::new());
    };
    serde_json::from_str(&raw).map_err(|e| {
        Error::Unavailable(crate::error::Unavailable::Redis(format!(
            "unreadable SKAdNetwork campaign map: {e}"
        )))
    })
}

/// Replaces the tenant's map with the one in `body`.
pub async fn put(redis: &Redis, tenant: &str, body: &Value) -> Result<Vec<Entry>, Error> {
    let entries = parse(body)?;
    let json = serde_json::to_string(&entries).expect("serializable");
    redis.set_skan_campaigns(tenant, &json).await?;
    Ok(entries)
}

/// The map, ready to decode postbacks.
#[derive(Debug, Default)]
pub struct CampaignMap {
    by_key: HashMap<(String, String), String>,
}

impl CampaignMap {
    pub fn new(entries: &[Entry]) -> CampaignMap {
        CampaignMap {
            by_key: entries
                .iter()
                .map(|e| {
                    (
                        (e.ad_network_id.clone(), e.source_identifier.clone()),
                        e.campaign.clone(),
                    )
                })
                .collect(),
        }
    }

    /// The campaign of a postback's source identifier: its own digits' entry, else the
    /// entries of its last three and last two digits, the most specific first.
    pub fn campaign(&self, ad_network_id: &str, source_identifier: &str) -> Option<&str> {
        let digits = source_identifier.len();
        let shortest = if digits >= 3 { 2 } else { digits };
        (shortest..=digits).rev().find_map(|n| {
            let key = (
                ad_network_id.to_string(),
                source_identifier[digits - n..].to_string(),
            );
            self.by_key.get(&key).map(String::as_str)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn source_identifiers_decode_hierarchically() {
        let entries = parse(&json!({"campaigns": [
            {"ad_network_id": "net.skadnetwork", "source_identifier": "39", "campaign": "summer"},
            {"ad_network_id": "net.skadnetwork", "source_identifier": "239", "campaign": "summer/video"},
            {"ad_network_id": "net.skadnetwork", "source_identifier": "5239", "campaign": "summer/video/us"},
            {"ad_network_id": "net.skadnetwork", "source_identifier": 7, "campaign": "legacy"},
            {"ad_network_id": "other.skadnetwork", "source_identifier": "39", "campaign": "theirs"},
        ]}))
        .unwrap();
        let map = CampaignMap::new(&entries);
        let cases = [
            ("net.skadnetwork", "5239", Some("summer/video/us")),
            ("net.skadnetwork", "6239", Some("summer/video")),
            ("net.skadnetwork", "6139", Some("summer")),
            ("net.skadnetwork", "239", Some("summer/video")),
            ("net.skadnetwork", "139", Some("summer")),
            ("net.skadnetwork", "39", Some("summer")),
            ("net.skadnetwork", "38", None),
            ("net.skadnetwork", "7", Some("legacy")),
            ("net.skadnetwork", "17", None),
            ("net.skadnetwork", "", None),
            ("other.skadnetwork", "5239", Some("theirs")),
            ("unknown.skadnetwork", "5239", None),
        ];
        for (network, source, campaign) in cases {
            assert_eq!(
                map.campaign(network, source),
                campaign,
                "{network} {source}"
            );
        }
    }

    #[test]
    fn bad_maps_are_named_by_field() {
        let entry = |source: Value| {
            json!({"campaigns": [
                {"ad_network_id": "a", "source_identifier": "1", "campaign": "c"},
                {"ad_network_id": "a", "source_identifier": source, "campaign": "c"},
            ]})
        };
        let cases = [
            (json!([]), "body"),
            (json!({}), "campaigns"),
            (json!({"campaigns": {}}), "campaigns"),
            (json!({"campaigns": [], "x": 1}), "x"),
            (json!({"campaigns": [5]}), "campaigns[0]"),
            (
                json!({"campaigns": [{"source_identifier": "1", "campaign": "c"}]}),
                "campaigns[0].ad_network_id",
            ),
            (
                json!({"campaigns": [{"ad_network_id": "a", "source_identifier": "1"}]}),
                "campaigns[0].campaign",
            ),
            (
                json!({"campaigns": [{"ad_network_id": "a", "source_identifier": "1", "campaign": "c", "y": 2}]}),
                "campaigns[0].y",
            ),
            (entry(json!("12345")), "campaigns[1].source_identifier"),
            (entry(json!("1a")), "campaigns[1].source_identifier"),
            (entry(json!(-1)), "campaigns[1].source_identifier"),
            (entry(json!("")), "campaigns[1].source_identifier"),
            (entry(json!("1")), "campaigns[1].source_identifier"),
        ];
        for (body, field) in cases {
            assert_eq!(parse(&body).unwrap_err().field, field, "{body}");
        }
        assert_eq!(parse(&entry(json!("01"))).unwrap().len(), 2);
    }
}
