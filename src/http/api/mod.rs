//! JSON API handlers (`/v1/…`).

pub mod attribution;
pub mod links;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads a JSON body of at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(body: Incoming, limit: usize) -> Result<T, ApiError> {
    let bytes = read_body(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = e.to_string();
        let field = unknown_field(&message);
        let err = ApiError::bad_request("invalid_json", format!("invalid JSON body: {message}"));
        match field {
            Some(f) => err.with_details(serde_json::json!({ "field": f })),
            None => err,
        }
    })
}

pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {limit} bytes"),
        )),
        Err(_) => Err(ApiError::bad_request(
            "body_unreadable",
            "request body could not be read",
        )),
    }
}

/// serde names an unknown field as "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}
