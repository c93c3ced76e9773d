//! JSON API handlers (`/v1/…`).

pub mod attribution;
pub mod events;
pub mod keys;
pub mod links;
pub mod partners;
pub mod reports;
pub mod results;
pub mod skan;
pub mod sources;
pub mod stats;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use crate::app::App;
use crate::conversions::{BodyError, MAX_ITEMS};
use crate::error::FieldError;

/// Reads a JSON body of at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(body: Incoming, limit: usize) -> Result<T, ApiError> {
    parse_json(&read_body(body, limit).await?)
}

/// Parses a JSON body into `T`. Text that is not JSON is `invalid_json`; JSON of the wrong
/// shape (a missing, unknown or mistyped field) is `invalid_field` with `details.field`
/// naming it (`postbacks.install`, `links[3].destination`).
/// The first value of query parameter `name` among `params` (`query_params`).
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn parse_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    decode(bytes).map_err(|e| match e {
        Decode::Json(e) => invalid_json(&e),
        Decode::Field(f) => {
            ApiError::bad_request("invalid_field", format!("{}: {}", f.field, f.message))
                .with_details(serde_json::json!({ "field": f.field }))
        }
    })
}

/// Why JSON did not decode: not JSON at all, or one field of the wrong shape (an empty field
/// name: the value as a whole).
pub enum Decode {
    Json(serde_json::Error),
    Field(FieldError),
}

pub fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Decode> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        if e.classify() != serde_json::error::Category::Data {
            return Decode::Json(e);
        }
        let message = e.to_string();
        // A missing field is named only in serde's message; the path is its object's.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(name), ".") => name.to_string(),
            (Some(name), parent) => format!("{parent}.{name}"),
            (None, ".") => String::new(),
            (None, path) => path.to_string(),
        };
        Decode::Field(FieldError {
            field,
            message: strip_position(&message).to_string(),
        })
    })?;
    de.end().map_err(Decode::Json)?;
    Ok(value)
}

fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}"))
}

/// serde_json's message without its " at line 1 column 42" (the field names the place).
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// The JSON object a body must be.
pub fn as_object(
    value: &serde_json::Value,
) -> Result<&serde_json::Map<String, serde_json::Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "body must be a JSON object"))
}

/// The JSON object a client endpoint was sent, refusing fields it does not know: a typo such
/// as `clickid` must fail loudly rather than quietly turn an install organic.
pub fn object_of<'a>(
    value: &'a serde_json::Value,
    known: &[&str],
) -> Result<&'a serde_json::Map<String, serde_json::Value>, ApiError> {
    let object = as_object(value)?;
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::invalid_field(
            unknown,
            format!(
                "is not a known field (expected one of {})",
                known.join(", ")
            ),
        )),
        None => Ok(object),
    }
}

pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(_) => Err(ApiError::bad_request(
            "body_unreadable",
            "request body could not be read",
        )),
    }
}

/// Reads a batch body of at most `limit` bytes. One whose `Content-Length` already says it is
/// too large is refused without being parsed; up to `DRAIN_MAX` of it is read and discarded
/// first, so that the client, still sending, receives the 413 instead of a broken pipe.
pub async fn read_batch(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => {
            if n <= DRAIN_MAX as u64 {
                let mut body = body;
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            }
            Err(too_large(limit))
        }
        _ => read_body(body, limit).await,
    }
}

/// Oversized bodies are drained up to this size before the 413; bigger ones get it at once
/// and the connection is closed.
const DRAIN_MAX: usize = 8 << 20;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body is larger than {limit} bytes"),
    )
}

/// A batch body refused as a whole.
pub fn body_error(e: BodyError, what: &str) -> ApiError {
    match e {
        BodyError::TooMany => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!("at most {MAX_ITEMS} {what} per request"),
        ),
        BodyError::Malformed(message) => {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {message}"))
        }
    }
}

/// A page's `limit` parameter: 1 to `max`.
pub fn page_limit(value: &str, max: usize) -> Result<usize, FieldError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| FieldError::new("limit", format!("must be 1 to {max}")))
}

/// Query parameters, form-decoded (`+` is a space); later duplicates are kept after earlier.
/// The public origin of Sluice's URLs (webhook URLs, a link's QR code): `public_url` when
/// configured, else the request's own host.
pub fn public_base(app: &App, headers: &HeaderMap) -> String {
    if !app.config.public_url.is_empty() {
        return app.config.public_url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The query's parameters, each one of `allowed` (else the first other is named).
pub fn params_of(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, FieldError> {
    let params = query_params(query);
    match params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((name, _)) => Err(FieldError::new(name, "is not a parameter of this endpoint")),
        None => Ok(params),
    }
}

pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_table() {
        // (query, pairs)
        let cases: &[(Option<&str>, &[(&str, &str)])] = &[
            (None, &[]),
            (Some(""), &[]),
            (
                Some("a=1&b=x+y&c=%C3%A9&d"),
                &[("a", "1"), ("b", "x y"), ("c", "é"), ("d", "")],
            ),
            (
                Some("a=%FF&&=v&a=2"),
                &[("a", "\u{fffd}"), ("", "v"), ("a", "2")],
            ),
        ];
        for (query, want) in cases {
            let got = query_params(*query);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, *want, "{query:?}");
        }
    }

    proptest::proptest! {
        /// Any query string: pairs, never a panic.
        #[test]
        fn any_query_parses(query in "\\PC{0,200}") {
            let _ = query_params(Some(&query));
        }

        /// Any encoded name and value come back as they were.
        #[test]
        fn encoded_pairs_round_trip(name in "\\PC{1,20}", value in "\\PC{0,40}") {
            use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
            let query = format!(
                "{}={}",
                utf8_percent_encode(&name, NON_ALPHANUMERIC),
                utf8_percent_encode(&value, NON_ALPHANUMERIC)
            );
            proptest::prop_assert_eq!(query_params(Some(&query)), vec![(name, value)]);
        }

        /// Any JSON text into a typed body: an answer (a value or a 400), never a panic.
        #[test]
        fn any_text_into_a_typed_body(text in "\\PC{0,120}") {
            #[derive(serde::Deserialize, Debug)]
            #[serde(deny_unknown_fields)]
            #[allow(dead_code)]
            struct Body {
                a: String,
                b: Option<Vec<u32>>,
            }
            if let Err(e) = parse_json::<Body>(text.as_bytes()) {
                proptest::prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
            }
        }
    }
}
