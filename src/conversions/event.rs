//! `POST /v1/events`: the batch envelope, one event's validation, and its `events` row in the
//! column order of `clickhouse/0003_events.sql` (all but the trailing `batch_id`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{bounded_items, is_object, item_fields, string_field, BodyError};
use crate::attribution::install::{encode_attribution, InstallAttribution};
use crate::click::row::put_str;
use crate::error::ItemError;
use crate::time;

pub const COLUMNS: &str = "date, ts_ms, received_ms, tenant_id, event_id, event_name, payload, \
    install_id, attributed, match_type, click_id, link_id, campaign, source, medium, partner_id, \
    batch_id";

pub const MAX_NAME: usize = 64;
pub const MAX_INSTALL_ID: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow, deserialize_with = "bounded_items")]
    events: Vec<&'a RawValue>,
}

/// The events of a batch body, unvalidated; at most `MAX_ITEMS`.
pub fn parse_batch(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let envelope: Envelope = serde_json::from_slice(body)?;
    Ok(envelope.events)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    event_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_datetime: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    installation_id: Option<&'a RawValue>,
}

/// A valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub event_id: [u8; 16],
    /// Lower-cased: names are case-insensitive.
    pub name: String,
    pub ts_ms: u64,
    pub installation_id: Cow<'a, str>,
    /// The JSON object as sent.
    pub payload: &'a str,
}

/// Validates event `index`, naming every bad field.
pub fn validate(index: usize, raw: &RawValue, now_ms: u64) -> Result<Event<'_>, Vec<ItemError>> {
    let e: RawEvent = item_fields(index, raw).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    fn keep<T>(errors: &mut Vec<ItemError>, r: Result<Option<T>, ItemError>) -> Option<T> {
        r.map_err(|e| errors.push(e)).ok().flatten()
    }
    let name = keep(
        &mut errors,
        string_field(index, "event_name", e.event_name, MAX_NAME, true),
    );
    let installation_id = keep(
        &mut errors,
        string_field(
            index,
            "installation_id",
            e.installation_id,
            MAX_INSTALL_ID,
            true,
        ),
    );
    let event_id = keep(
        &mut errors,
        string_field(index, "event_id", e.event_id, 36, true).and_then(|s| {
            s.map(|s| {
                parse_uuid_v4(&s)
                    .ok_or_else(|| ItemError::new(index, "event_id", "must be a UUIDv4"))
            })
            .transpose()
        }),
    );
    let ts_ms = keep(
        &mut errors,
        string_field(index, "event_datetime", e.event_datetime, 64, true).and_then(|s| {
            s.map(|s| {
                event_time(&s, now_ms).map_err(|m| ItemError::new(index, "event_datetime", m))
            })
            .transpose()
        }),
    );
    let payload = match e.payload {
        None => {
            errors.push(ItemError::new(index, "payload", "is required"));
            None
        }
        Some(p) if !is_object(p) => {
            errors.push(ItemError::new(index, "payload", "must be a JSON object"));
            None
        }
        Some(p) => Some(p.get()),
    };
    match (name, installation_id, event_id, ts_ms, payload) {
        (Some(name), Some(installation_id), Some(event_id), Some(ts_ms), Some(payload))
            if errors.is_empty() =>
        {
            Ok(Event {
                event_id,
                name: name.to_lowercase(),
                ts_ms,
                installation_id,
                payload,
            })
        }
        _ => Err(errors),
    }
}

fn event_time(s: &str, now_ms: u64) -> Result<u64, &'static str> {
    let ts = time::parse_rfc3339(s).ok_or("must be an ISO 8601 date-time with a zone")?;
    time::plausible(ts, now_ms)
}

/// A hyphenated UUID of version 4 (RFC 4122 variant), any case.
pub fn parse_uuid_v4(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut hex = [0u8; 32];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if ![8, 13, 18, 23].contains(&i) {
            hex[n] = c;
            n += 1;
        }
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex, &mut out).ok()?;
    let version = out[6] >> 4;
    let variant = out[8] >> 6;
    (version == 4 && variant == 0b10).then_some(out)
}

/// Appends the event's row (without `batch_id`).
pub fn encode(
    out: &mut Vec<u8>,
    e: &Event<'_>,
    received_ms: u64,
    tenant_id: &str,
    attribution: Option<&InstallAttribution>,
) {
    out.extend_from_slice(&((e.ts_ms / time::MS_PER_DAY) as u16).to_le_bytes());
    out.extend_from_slice(&e.ts_ms.to_le_bytes());
    out.extend_from_slice(&received_ms.to_le_bytes());
    put_str(out, tenant_id);
    out.extend_from_slice(&e.event_id);
    put_str(out, &e.name);
    put_str(out, e.payload);
    encode_attribution(out, &e.installation_id, attribution);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_305_600_000; // 2026-11-22

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn uuids() {
        let cases = [
            ("550e8400-e29b-41d4-a716-446655440000", true),
            ("550E8400-E29B-41D4-A716-446655440000", true),
            ("550e8400-e29b-11d4-a716-446655440000", false), // version 1
            ("550e8400-e29b-41d4-c716-446655440000", false), // wrong variant
            ("550e8400e29b41d4a716446655440000", false),
            ("550e8400-e29b-41d4-a716-44665544000g", false),
            ("550e8400-e29b-41d4-a716-4466554400001", false),
            ("", false),
        ];
        for (s, ok) in cases {
            assert_eq!(parse_uuid_v4(s).is_some(), ok, "{s}");
        }
    }

    #[test]
    fn a_valid_event_is_normalised() {
        let r = raw(
            r#"{"event_name":"Purchase_Completed","payload":{"amount":"9.99"},"event_datetime":"2026-11-21T12:00:00Z","event_id":"550e8400-e29b-41d4-a716-446655440000","installation_id":"dev-1"}"#,
        );
        let e = validate(0, &r, NOW).unwrap();
        assert_eq!(e.name, "purchase_completed");
        assert_eq!(e.payload, r#"{"amount":"9.99"}"#);
        assert_eq!(e.installation_id, "dev-1");
        assert_eq!(e.ts_ms, NOW - 12 * 3_600_000);
    }

    #[test]
    fn every_bad_field_is_named() {
        let good = r#""event_name":"x","payload":{},"event_datetime":"2026-11-21T12:00:00Z","event_id":"550e8400-e29b-41d4-a716-446655440000","installation_id":"d""#;
        let long = "n".repeat(65);
        let cases: Vec<(String, Vec<&str>)> = vec![
            (format!("{{{good}}}"), vec![]),
            (
                r#"{}"#.into(),
                vec![
                    "event_name",
                    "installation_id",
                    "event_id",
                    "event_datetime",
                    "payload",
                ],
            ),
            (
                good.replace(r#""x""#, &format!("\"{long}\"")),
                vec!["event_name"],
            ),
            (good.replace(r#""x""#, "7"), vec!["event_name"]),
            (
                good.replace("550e8400-e29b-41d4", "550e8400-e29b-11d4"),
                vec!["event_id"],
            ),
            (
                good.replace("2026-11-21T12:00:00Z", "yesterday"),
                vec!["event_datetime"],
            ),
            (
                good.replace("2026-11-21T12:00:00Z", "2026-11-21T12:00:00"),
                vec!["event_datetime"],
            ),
            (
                good.replace("2026-11-21T12:00:00Z", "1999-12-31T23:59:59Z"),
                vec!["event_datetime"],
            ),
            (
                good.replace("2026-11-21T12:00:00Z", "2026-11-24T00:00:00Z"),
                vec!["event_datetime"],
            ),
            (
                good.replace(r#""payload":{}"#, r#""payload":[1]"#),
                vec!["payload"],
            ),
            (
                good.replace(r#""payload":{}"#, r#""payload":null"#),
                vec!["payload"],
            ),
            (good.replace(r#""d""#, r#""""#), vec!["installation_id"]),
            (format!("{{{good},\"extra\":1}}"), vec!["extra"]),
        ];
        for (body, want) in cases {
            let body = if body.starts_with('{') {
                body
            } else {
                format!("{{{body}}}")
            };
            let r = raw(&body);
            let got: Vec<String> = match validate(3, &r, NOW) {
                Ok(_) => vec![],
                Err(errors) => {
                    assert!(errors.iter().all(|e| e.index == 3));
                    errors
                        .into_iter()
                        .map(|e| e.field.unwrap_or_default())
                        .collect()
                }
            };
            let mut got = got;
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{body}");
        }
        let not_object = raw("[1]");
        let errors = validate(5, &not_object, NOW).unwrap_err();
        assert_eq!(errors[0].field, None);
        assert_eq!(errors[0].index, 5);
    }

    #[test]
    fn batch_limits() {
        let body = |n: usize| format!("{{\"events\":[{}]}}", vec!["{}"; n].join(","));
        assert_eq!(parse_batch(body(0).as_bytes()).unwrap().len(), 0);
        assert_eq!(parse_batch(body(1000).as_bytes()).unwrap().len(), 1000);
        assert_eq!(
            parse_batch(body(1001).as_bytes()).unwrap_err(),
            BodyError::TooMany
        );
        // The count is decided before the rest is parsed: garbage after item 1001 is not seen.
        let early = format!("{{\"events\":[{},{{}} garbage", vec!["{}"; 1000].join(","));
        assert_eq!(
            parse_batch(early.as_bytes()).unwrap_err(),
            BodyError::TooMany
        );
        for bad in [
            "",
            "{",
            "[]",
            r#"{"events":{}}"#,
            r#"{"events":[],"x":1}"#,
            r#"{"evnts":[]}"#,
        ] {
            assert!(
                matches!(parse_batch(bad.as_bytes()), Err(BodyError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
