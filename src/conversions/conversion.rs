//! `POST /w/{token}`: one conversion or an array of them, each validated on its own (a bad
//! item fails alone), and its `conversions` row in the column order of
//! `clickhouse/0004_conversions.sql` (all but the trailing `batch_id`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{bounded_items, currency, is_object, item_fields, string_field, BodyError};
use crate::attribution::install::{encode_attribution, encode_dimensions, InstallAttribution};
use crate::click::row::put_str;
use crate::error::ItemError;
use crate::time;

pub const COLUMNS: &str = "date, ts_ms, tenant_id, conversion_id, source_id, user_id, type, \
    amount_cents, currency, idempotency_key, metadata, install_id, attributed, match_type, \
    click_id, link_id, campaign, source, medium, partner_id, country, platform, sub1, variant, \
    batch_id";

/// The columns of conversion rows spilled before conversions carried the dimensions they are
/// broken down by.
pub const COLUMNS_BEFORE_DIMENSIONS: &str = "date, ts_ms, tenant_id, conversion_id, source_id, \
    user_id, type, amount_cents, currency, idempotency_key, metadata, install_id, attributed, \
    match_type, click_id, link_id, campaign, source, medium, partner_id, batch_id";

pub const MAX_USER_ID: usize = 256;
pub const MAX_TYPE: usize = 64;
pub const MAX_IDEMPOTENCY_KEY: usize = 256;
pub const MAX_METADATA: usize = 1024;

/// The items of a webhook body: one object, or an array of at most `MAX_ITEMS`.
pub fn parse_body(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let mut de = serde_json::Deserializer::from_slice(body);
        let items = bounded_items(&mut de)?;
        de.end()?;
        return Ok(items);
    }
    let item: &RawValue = serde_json::from_slice(body)?;
    if !is_object(item) {
        return Err(BodyError::Malformed(
            "body must be a conversion object or an array of them".into(),
        ));
    }
    Ok(vec![item])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConversion<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount_cents: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<&'a RawValue>,
    #[serde(borrow, default)]
    idempotency_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

/// A valid conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion<'a> {
    pub user_id: String,
    pub kind: String,
    /// In the currency's smallest unit; negative for refunds.
    pub amount_cents: Option<i64>,
    /// Upper-case ISO 4217.
    pub currency: Option<&'static str>,
    pub idempotency_key: Option<String>,
    /// The JSON object as sent.
    pub metadata: Option<&'a str>,
}

/// Validates item `index`; the first problem found fails it.
pub fn validate(index: usize, raw: &RawValue) -> Result<Conversion<'_>, ItemError> {
    let c: RawConversion = item_fields(index, raw)?;
    let user_id = string_field(index, "user_id", c.user_id, MAX_USER_ID, true)?
        .unwrap_or_default()
        .into_owned();
    let kind = string_field(index, "type", c.kind, MAX_TYPE, true)?
        .unwrap_or_default()
        .into_owned();
    let amount_cents = c
        .amount_cents
        .map(|raw| {
            serde_json::from_str::<i64>(raw.get()).map_err(|_| {
                ItemError::new(
                    index,
                    "amount_cents",
                    "must be an integer (a signed 64-bit number of the currency's smallest unit)",
                )
            })
        })
        .transpose()?;
    let currency = string_field(index, "currency", c.currency, 3, false)?
        .map(|s| {
            currency::normalise(&s)
                .ok_or_else(|| ItemError::new(index, "currency", "must be an ISO 4217 code"))
        })
        .transpose()?;
    if amount_cents.is_some() && currency.is_none() {
        return Err(ItemError::new(
            index,
            "currency",
            "is required when amount_cents is set",
        ));
    }
    let idempotency_key = string_field(
        index,
        "idempotency_key",
        c.idempotency_key,
        MAX_IDEMPOTENCY_KEY,
        false,
    )?
    .map(Cow::into_owned);
    let metadata = match c.metadata {
        None => None,
        Some(m) if !is_object(m) => {
            return Err(ItemError::new(index, "metadata", "must be a JSON object"))
        }
        Some(m) if m.get().len() > MAX_METADATA => {
            return Err(ItemError::new(
                index,
                "metadata",
                format!("is larger than {MAX_METADATA} bytes"),
            ))
        }
        Some(m) => Some(m.get()),
    };
    Ok(Conversion {
        user_id,
        kind,
        amount_cents,
        currency,
        idempotency_key,
        metadata,
    })
}

/// Where a conversion came from and what it is attributed to.
pub struct Context<'a> {
    pub ts_ms: u64,
    pub tenant_id: &'a str,
    pub conversion_id: [u8; 16],
    pub source_id: &'a str,
    /// The install the user is bound to (empty when none).
    pub install_id: &'a str,
    pub attribution: Option<&'a InstallAttribution>,
}

/// Appends the conversion's row (without `batch_id`).
pub fn encode(out: &mut Vec<u8>, c: &Conversion<'_>, cx: &Context<'_>) {
    out.extend_from_slice(&((cx.ts_ms / time::MS_PER_DAY) as u16).to_le_bytes());
    out.extend_from_slice(&cx.ts_ms.to_le_bytes());
    put_str(out, cx.tenant_id);
    out.extend_from_slice(&cx.conversion_id);
    put_str(out, cx.source_id);
    put_str(out, &c.user_id);
    put_str(out, &c.kind);
    out.extend_from_slice(&c.amount_cents.unwrap_or(0).to_le_bytes());
    put_str(out, c.currency.unwrap_or(""));
    put_str(out, c.idempotency_key.as_deref().unwrap_or(""));
    put_str(out, c.metadata.unwrap_or(""));
    encode_attribution(out, cx.install_id, cx.attribution);
    encode_dimensions(out, cx.attribution);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<Conversion<'static>, ItemError> {
        let raw: &'static RawValue = Box::leak(RawValue::from_string(body.to_string()).unwrap());
        validate(2, raw)
    }

    #[test]
    fn valid_conversions() {
        let c = check(r#"{"user_id":"u1","type":"deposit","amount_cents":-5000,"currency":"usd","idempotency_key":"tx_1","metadata":{"tx":"0xabc"}}"#).unwrap();
        assert_eq!(c.amount_cents, Some(-5000));
        assert_eq!(c.currency, Some("USD"));
        assert_eq!(c.metadata, Some(r#"{"tx":"0xabc"}"#));
        let c = check(r#"{"user_id":"u1","type":"signup"}"#).unwrap();
        assert_eq!(
            (c.amount_cents, c.currency, c.idempotency_key),
            (None, None, None)
        );
        let max = check(&format!(
            r#"{{"user_id":"u","type":"{}","amount_cents":{},"currency":"JPY","idempotency_key":"{}"}}"#,
            "t".repeat(64),
            i64::MIN,
            "k".repeat(256)
        ))
        .unwrap();
        assert_eq!(max.amount_cents, Some(i64::MIN));
    }

    #[test]
    fn each_failure_names_its_field() {
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(1020));
        let cases = [
            (r#"{"type":"x"}"#.to_string(), "user_id"),
            (r#"{"user_id":"u"}"#.to_string(), "type"),
            (
                format!(r#"{{"user_id":"u","type":"{}"}}"#, "t".repeat(65)),
                "type",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":100}"#.to_string(),
                "currency",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":1.5,"currency":"usd"}"#.to_string(),
                "amount_cents",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":"100","currency":"usd"}"#.to_string(),
                "amount_cents",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":9223372036854775808,"currency":"usd"}"#
                    .to_string(),
                "amount_cents",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":1,"currency":"dollars"}"#.to_string(),
                "currency",
            ),
            (
                r#"{"user_id":"u","type":"x","amount_cents":1,"currency":"ZZZ"}"#.to_string(),
                "currency",
            ),
            (
                format!(
                    r#"{{"user_id":"u","type":"x","idempotency_key":"{}"}}"#,
                    "k".repeat(257)
                ),
                "idempotency_key",
            ),
            (
                r#"{"user_id":"u","type":"x","metadata":[1]}"#.to_string(),
                "metadata",
            ),
            (
                format!(r#"{{"user_id":"u","type":"x","metadata":{big}}}"#),
                "metadata",
            ),
            (
                r#"{"user_id":"u","type":"x","amount":1}"#.to_string(),
                "amount",
            ),
            (r#"{"user_id":"","type":"x"}"#.to_string(), "user_id"),
        ];
        for (body, field) in cases {
            let e = check(&body).unwrap_err();
            assert_eq!((e.index, e.field.as_deref()), (2, Some(field)), "{body}");
        }
        assert_eq!(check("5").unwrap_err().field, None);
    }

    #[test]
    fn body_shapes() {
        assert_eq!(parse_body(br#"{"user_id":"u"}"#).unwrap().len(), 1);
        assert_eq!(parse_body(br#" [{"a":1},{"b":2}] "#).unwrap().len(), 2);
        let many = format!("[{}]", vec!["{}"; 1001].join(","));
        assert_eq!(parse_body(many.as_bytes()).unwrap_err(), BodyError::TooMany);
        for bad in ["", "{", "5", "\"x\"", "[1,", "[] x"] {
            assert!(
                matches!(parse_body(bad.as_bytes()), Err(BodyError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
