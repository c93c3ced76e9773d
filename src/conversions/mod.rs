//! Post-install events (server-to-server batches, `POST /v1/events`) and webhook-source
//! conversions (`POST /w/{token}`): parsing within limits, per-field validation, and the
//! ClickHouse rows, which carry the install's attribution. The items are pure; `ingest` is
//! the one path that takes their ids, looks their installs up in Redis and stores them.

pub mod conversion;
pub mod currency;
pub mod event;
pub mod ingest;
pub mod source;
pub mod sources;

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::ItemError;

/// Items per request (events per batch, conversions per webhook call).
pub const MAX_ITEMS: usize = 1_000;
/// Bytes per request body (1 MB, decimal: a body "under 1 MB" by either reading fits).
pub const MAX_BODY: usize = 1_000_000;
/// How long an event id or idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: u64 = 30 * 86_400_000;

/// Why a body was refused as a whole.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More than `MAX_ITEMS` items (found while parsing, before the rest is read).
    TooMany,
    /// Not JSON, or not the expected shape.
    Malformed(String),
}

const TOO_MANY: &str = "too many items";

impl From<serde_json::Error> for BodyError {
    fn from(e: serde_json::Error) -> BodyError {
        if e.to_string().starts_with(TOO_MANY) {
            BodyError::TooMany
        } else {
            BodyError::Malformed(e.to_string())
        }
    }
}

/// Deserializes a JSON array of raw items, failing as soon as it holds more than
/// `MAX_ITEMS`: an oversized batch is refused without parsing the rest.
fn bounded_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'de RawValue>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(MAX_ITEMS));
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                if items.len() == MAX_ITEMS {
                    return Err(serde::de::Error::custom(format!(
                        "{TOO_MANY}: more than {MAX_ITEMS}"
                    )));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Bounded)
}

/// A required or optional JSON string field, checked for length (in characters) and control
/// characters. Borrowed from the body unless it has escapes (a batch's thousands of fields
/// would otherwise each be a fresh allocation).
fn string_field<'a>(
    index: usize,
    field: &str,
    raw: Option<&'a RawValue>,
    max_chars: usize,
    required: bool,
) -> Result<Option<Cow<'a, str>>, ItemError> {
    let Some(raw) = raw else {
        return if required {
            Err(ItemError::new(index, field, "is required"))
        } else {
            Ok(None)
        };
    };
    let s: Cow<'a, str> = match serde_json::from_str::<&'a str>(raw.get()) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(
            serde_json::from_str(raw.get())
                .map_err(|_| ItemError::new(index, field, "must be a string"))?,
        ),
    };
    if s.is_empty() {
        return Err(ItemError::new(index, field, "must not be empty"));
    }
    if s.chars().count() > max_chars {
        return Err(ItemError::new(
            index,
            field,
            format!("is longer than {max_chars} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ItemError::new(
            index,
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(s))
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// serde names an unknown field as "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// Parses item `index` into its raw fields: it must be an object (serde would also take an
/// array as a struct) without unknown or duplicate fields.
fn item_fields<'a, T: serde::Deserialize<'a>>(
    index: usize,
    raw: &'a RawValue,
) -> Result<T, ItemError> {
    if !is_object(raw) {
        return Err(ItemError::whole(index, "must be a JSON object"));
    }
    serde_json::from_str(raw.get()).map_err(|e| item_error(index, e))
}

fn item_error(index: usize, e: serde_json::Error) -> ItemError {
    let message = e.to_string();
    match unknown_field(&message) {
        Some(f) => ItemError::new(index, f, "is not a known field"),
        None => ItemError::whole(index, format!("is not valid: {message}")),
    }
}
