//! A postback as Sluice stores it, whichever way it came: an SKAdNetwork install-validation
//! postback (versions 1.0–4.0 verifiable) or an AdAttributionKit postback (a JWS and the
//! unsigned fields beside it), read into one shape. A body that is neither is refused with the
//! field at fault named; a postback whose signature fails is still a postback: kept, never
//! counted.

use serde_json::{Map, Value};

use super::keys::AppleKeys;
use super::signature::{check_jws, check_skadnetwork, Check};
use crate::click::row::put_str;
use crate::error::FieldError;
use crate::time;

/// Bytes of a postback body, at most (Apple's are under 2 KB).
pub const MAX_BODY: usize = 16 * 1024;

/// The `skan_postbacks` columns (`clickhouse/0013_skan.sql`), in order.
pub const COLUMNS: &str = "date, received_ms, tenant_id, app_store_id, receiver, framework, \
    version, ad_network_id, source_identifier, transaction_id, conversion_type, fidelity_type, \
    did_win, sequence, fine_value, coarse_value, source_app_id, source_domain, signature, kid, \
    counted, body, batch_id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postback {
    /// `skadnetwork` or `adattributionkit`.
    pub kind: &'static str,
    /// SKAdNetwork's `version`; `aak` for AdAttributionKit.
    pub version: String,
    /// The advertised app (`app-id`, `advertised-item-identifier`).
    pub app_id: u64,
    pub ad_network_id: String,
    /// `source-identifier` (4.0, AdAttributionKit) or `campaign-id` (earlier versions), as
    /// digits: 2, 3 or 4 of them in 4.0 by the postback's data tier.
    pub source_identifier: String,
    /// `transaction-id` or `postback-identifier`: what duplicates share.
    pub transaction_id: String,
    /// `download`, `redownload` or `re-engagement`.
    pub conversion_type: &'static str,
    /// 0 view-through, 1 StoreKit-rendered or clicked; -1 not given.
    pub fidelity_type: i8,
    /// Whether the ad network won the attribution (postbacks before 3.0 only ever went to
    /// winners).
    pub did_win: bool,
    /// 0, 1 or 2: the conversion window (4.0, AdAttributionKit); 0 before.
    pub sequence: u8,
    /// The fine conversion value (0–63), when given.
    pub fine: Option<u8>,
    /// `low`, `medium` or `high`, when given.
    pub coarse: Option<&'static str>,
    pub source_app_id: String,
    pub source_domain: String,
    pub check: Check,
    /// The AdAttributionKit key id.
    pub kid: String,
}

/// How a postback was received, as its row records it.
pub struct Received<'a> {
    pub ms: u64,
    pub tenant_id: &'a str,
    /// `skadnetwork` or `appattribution` (the well-known paths), `ad_network` (the API).
    pub receiver: &'a str,
    pub counted: bool,
    pub body: &'a str,
}

fn bad(field: &str, message: &str) -> FieldError {
    FieldError::new(field, message)
}

/// A string, or an integer written as one (Apple sends ids both ways across versions).
fn id_text(body: &Map<String, Value>, field: &str, required: bool) -> Result<String, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(Value::String(s)) if s.len() <= 256 && !s.chars().any(char::is_control) => {
            Ok(s.clone())
        }
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        Some(_) => Err(bad(field, "must be a string or a non-negative integer")),
    }
}

fn integer(body: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| bad(field, &format!("must be an integer 0-{max}"))),
    }
}

fn boolean(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(_) => Err(bad(field, "must be true or false")),
    }
}

fn coarse(body: &Map<String, Value>, field: &str) -> Result<Option<&'static str>, FieldError> {
    match body.get(field).and_then(Value::as_str) {
        None if body.get(field).is_none_or(Value::is_null) => Ok(None),
        Some("low") => Ok(Some("low")),
        Some("medium") => Ok(Some("medium")),
        Some("high") => Ok(Some("high")),
        _ => Err(bad(field, "must be low, medium or high")),
    }
}

impl Postback {
    /// Reads a body: `jws-string` makes it AdAttributionKit's, `attribution-signature` or
    /// `transaction-id` SKAdNetwork's.
    pub fn read(body: &Map<String, Value>, keys: &AppleKeys) -> Result<Postback, FieldError> {
        if let Some(jws) = body.get("jws-string") {
            let jws = jws
                .as_str()
                .ok_or_else(|| bad("jws-string", "must be a string"))?;
            return Postback::adattributionkit(body, jws, keys);
        }
        if body.contains_key("transaction-id") || body.contains_key("attribution-signature") {
            return Postback::skadnetwork(body, keys);
        }
        Err(bad(
            "body",
            "is not a postback: neither transaction-id (SKAdNetwork) nor jws-string (AdAttributionKit)",
        ))
    }

    fn skadnetwork(body: &Map<String, Value>, keys: &AppleKeys) -> Result<Postback, FieldError> {
        let version = match body.get("version") {
            None | Some(Value::Null) => "1.0".to_string(),
            Some(Value::String(v)) if v.len() <= 8 => v.clone(),
            Some(_) => return Err(bad("version", "must be a version string such as \"4.0\"")),
        };
        let app_id =
            integer(body, "app-id", u64::MAX)?.ok_or_else(|| bad("app-id", "is required"))?;
        let source_field = if body.contains_key("source-identifier") {
            "source-identifier"
        } else {
            "campaign-id"
        };
        let source_identifier = id_text(body, source_field, false)?;
        if !source_identifier.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(source_field, "must be digits"));
        }
        let redownload = boolean(body, "redownload")?.unwrap_or(false);
        Ok(Postback {
            kind: "skadnetwork",
            app_id,
            ad_network_id: id_text(body, "ad-network-id", true)?,
            source_identifier,
            transaction_id: id_text(body, "transaction-id", true)?,
            conversion_type: if redownload { "redownload" } else { "download" },
            fidelity_type: integer(body, "fidelity-type", 1)?.map_or(-1, |n| n as i8),
            did_win: boolean(body, "did-win")?.unwrap_or(true),
            sequence: integer(body, "postback-sequence-index", 2)?.unwrap_or(0) as u8,
            fine: integer(body, "conversion-value", 63)?.map(|n| n as u8),
            coarse: coarse(body, "coarse-conversion-value")?,
            source_app_id: id_text(body, "source-app-id", false)?,
            source_domain: id_text(body, "source-domain", false)?,
            check: check_skadnetwork(body, keys),
            kid: String::new(),
            version,
        })
    }

    fn adattributionkit(
        body: &Map<String, Value>,
        jws: &str,
        keys: &AppleKeys,
    ) -> Result<Postback, FieldError> {
        let signed = check_jws(jws, keys)
            .ok_or_else(|| bad("jws-string", "is not a compact JWS with a kid"))?;
        let p = &signed.payload;
        let field = |name: &str| format!("jws-string.{name}");
        let text = |name: &str, required: bool| {
            id_text(p, name, required).map_err(|e| bad(&field(name), &e.message))
        };
        let source_identifier = text("source-identifier", false)?;
        if !source_identifier.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&field("source-identifier"), "must be digits"));
        }
        let conversion_type = match p.get("conversion-type").and_then(Value::as_str) {
            Some("download") => "download",
            Some("redownload") => "redownload",
            Some("re-engagement") => "re-engagement",
            _ => {
                return Err(bad(
                    &field("conversion-type"),
                    "must be download, redownload or re-engagement",
                ))
            }
        };
        let app_id = integer(p, "advertised-item-identifier", u64::MAX)
            .map_err(|e| bad(&field("advertised-item-identifier"), &e.message))?
            .ok_or_else(|| bad(&field("advertised-item-identifier"), "is required"))?;
        Ok(Postback {
            kind: "adattributionkit",
            version: "aak".into(),
            app_id,
            ad_network_id: text("ad-network-identifier", true)?,
            source_identifier,
            transaction_id: text("postback-identifier", true)?,
            conversion_type,
            fidelity_type: -1,
            did_win: boolean(p, "did-win")
                .map_err(|e| bad(&field("did-win"), &e.message))?
                .unwrap_or(true),
            sequence: integer(p, "postback-sequence-index", 2)
                .map_err(|e| bad(&field("postback-sequence-index"), &e.message))?
                .unwrap_or(0) as u8,
            fine: integer(body, "conversion-value", 63)?.map(|n| n as u8),
            coarse: coarse(body, "coarse-conversion-value")?,
            source_app_id: text("publisher-item-identifier", false)?,
            source_domain: String::new(),
            check: signed.check,
            kid: signed.kid,
        })
    }

    /// Appends its `skan_postbacks` row (without `batch_id`): `receiver` is where it came in,
    /// `body` the JSON as received.
    pub fn encode(&self, out: &mut Vec<u8>, received: &Received<'_>) {
        out.extend_from_slice(&((received.ms / time::MS_PER_DAY) as u16).to_le_bytes());
        out.extend_from_slice(&received.ms.to_le_bytes());
        put_str(out, received.tenant_id);
        out.extend_from_slice(&self.app_id.to_le_bytes());
        put_str(out, received.receiver);
        put_str(out, self.kind);
        put_str(out, &self.version);
        put_str(out, &self.ad_network_id);
        put_str(out, &self.source_identifier);
        put_str(out, &self.transaction_id);
        put_str(out, self.conversion_type);
        out.push(self.fidelity_type as u8);
        out.push(self.did_win as u8);
        out.push(self.sequence);
        out.extend_from_slice(&self.fine.map_or(-1i16, i16::from).to_le_bytes());
        put_str(out, self.coarse.unwrap_or(""));
        put_str(out, &self.source_app_id);
        put_str(out, &self.source_domain);
        put_str(out, self.check.as_str());
        put_str(out, &self.kid);
        out.push(received.counted as u8);
        put_str(out, received.body);
    }

    /// Counted in stats: a verified signature, and (for AdAttributionKit's development keys)
    /// only when the app accepts test postbacks.
    pub fn counts(&self, accept_development: bool) -> bool {
        self.check == Check::Valid || (accept_development && self.check == Check::Development)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::signature::tests::{aak_example, apple_examples};
    use super::*;

    #[test]
    fn apples_examples_read() {
        let keys = AppleKeys::published();
        let read = |v: Value| Postback::read(v.as_object().unwrap(), &keys);
        let examples = apple_examples();
        let fine = read(examples[0].1.clone()).unwrap();
        assert_eq!(
            (
                fine.kind,
                fine.version.as_str(),
                fine.app_id,
                fine.source_identifier.as_str()
            ),
            ("skadnetwork", "4.0", 525463029, "5239")
        );
        assert_eq!(
            (fine.fine, fine.coarse, fine.check),
            (Some(63), None, Check::Valid)
        );
        assert_eq!(fine.source_domain, "example.com");
        let coarse = read(examples[1].1.clone()).unwrap();
        assert_eq!((coarse.fine, coarse.coarse), (None, Some("high")));
        let loser = read(examples[3].1.clone()).unwrap();
        assert_eq!(
            (loser.did_win, loser.source_identifier.as_str()),
            (false, "42")
        );
        assert_eq!(loser.conversion_type, "redownload");
        let aak = read(json!({"jws-string": aak_example(), "conversion-value": 24,
            "ad-interaction-type": "click", "country-code": "US"}))
        .unwrap();
        assert_eq!(
            (aak.kind, aak.app_id, aak.conversion_type, aak.check),
            (
                "adattributionkit",
                10738027756,
                "re-engagement",
                Check::Development
            )
        );
        assert_eq!(
            (
                aak.transaction_id.as_str(),
                aak.source_identifier.as_str(),
                aak.fine
            ),
            ("85546EB7-FD39-44BC-8990-C98A4AC36A49", "1234", Some(24))
        );
        assert!(!aak.counts(false) && aak.counts(true));
        assert!(fine.counts(false));
    }

    #[test]
    fn bad_bodies_are_named_by_field() {
        let keys = AppleKeys::published();
        let fine = apple_examples()[0].1.clone();
        let with = |field: &str, v: Value| {
            let mut b = fine.clone();
            b[field] = v;
            b
        };
        let cases = [
            (json!({}), "body"),
            (json!({"hello": 1}), "body"),
            (with("app-id", json!("abc")), "app-id"),
            (with("conversion-value", json!(64)), "conversion-value"),
            (
                with("coarse-conversion-value", json!("huge")),
                "coarse-conversion-value",
            ),
            (
                with("postback-sequence-index", json!(3)),
                "postback-sequence-index",
            ),
            (with("did-win", json!("yes")), "did-win"),
            (with("source-identifier", json!("12a")), "source-identifier"),
            (with("transaction-id", json!(null)), "transaction-id"),
            (with("version", json!(4)), "version"),
            (json!({"jws-string": 5}), "jws-string"),
            (json!({"jws-string": "a.b.c"}), "jws-string"),
        ];
        for (body, field) in cases {
            let err = Postback::read(body.as_object().unwrap(), &keys).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
    }
}
