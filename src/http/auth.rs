//! API-key authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, looked up by
//! its SHA-256 in Redis. Secret keys (`sk_`) may do everything; publishable keys (`pk_`) only
//! the client endpoints that say so.

use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;

use super::error::ApiError;
use crate::app::App;
use crate::store::redis::KeyKind;

#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub kind: KeyKind,
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "send an API key as Authorization: Bearer <key> or x-api-key",
            )
        })?;
    if !(key.starts_with("sk_") || key.starts_with("pk_")) || key.len() > 128 {
        return Err(invalid_key());
    }
    let record = app.redis.key_record(key).await?.ok_or_else(invalid_key)?;
    Ok(Caller {
        tenant_id: record.tenant_id,
        kind: record.kind,
    })
}

/// Management endpoints: a publishable key is a valid key without the right to this.
pub async fn require_secret(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = authenticate(app, headers).await?;
    if caller.kind != KeyKind::Secret {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "secret_key_required",
            "this endpoint needs a secret key (sk_…); publishable keys may only call client endpoints",
        ));
    }
    Ok(caller)
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "the API key is not valid",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn key_extraction() {
        let cases: &[(&[(&str, &str)], Option<&str>)] = &[
            (&[("authorization", "Bearer sk_abc")], Some("sk_abc")),
            (&[("authorization", "bearer  sk_abc ")], Some("sk_abc")),
            (&[("authorization", "Basic xyz")], None),
            (&[("x-api-key", "pk_1")], Some("pk_1")),
            (&[], None),
        ];
        for (headers, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in *headers {
                map.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(presented_key(&map), *want, "{headers:?}");
        }
    }
}
