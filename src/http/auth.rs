//! API-key authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, looked up by
//! its SHA-256 in Redis. Secret keys (`sk_`) may do everything; publishable keys (`pk_`) only
//! the client endpoints that say so.

use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;

use super::error::ApiError;
use crate::app::App;
use crate::keys::{self, KeyKind};

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
    if !keys::plausible(key) {
        return Err(invalid_key());
    }
    let record = app.redis.key_record(key).await?.ok_or_else(invalid_key)?;
    rate_limit(app, &record.tenant_id, key)?;
    app.redis.key_used(&record.tenant_id, key);
    Ok(Caller {
        tenant_id: record.tenant_id,
        kind: record.kind,
    })
}

/// Server-to-server calls (`POST /v1/events`): HTTP Basic with the tenant id as username and
/// a secret key as password. A secret key as `Bearer` works too.
pub async fn authenticate_basic(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some((tenant, key)) = basic_credentials(headers) else {
        return require_secret(app, headers).await.map_err(|e| {
            if e.code == "missing_api_key" {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_credentials",
                    "send Basic credentials: username = tenant id, password = secret key",
                )
            } else {
                e
            }
        });
    };
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the tenant id and secret key do not match a tenant",
        )
    };
    if !key.starts_with("sk_") || key.len() > 128 {
        return Err(bad());
    }
    let record = app.redis.key_record(&key).await?.ok_or_else(bad)?;
    if record.kind != KeyKind::Secret || record.tenant_id != tenant {
        return Err(bad());
    }
    rate_limit(app, &record.tenant_id, &key)?;
    app.redis.key_used(&record.tenant_id, &key);
    Ok(Caller {
        tenant_id: record.tenant_id,
        kind: record.kind,
    })
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Takes a token from the tenant's and the key's (or webhook source's) bucket, or answers 429
/// with `Retry-After`.
pub fn rate_limit(app: &App, tenant: &str, key: &str) -> Result<(), ApiError> {
    app.limits.check(tenant, key).map_err(|wait| {
        app.metrics.rate_limited.increment(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this tenant or key; retry after the Retry-After seconds",
        );
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        e
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

    #[test]
    fn basic_extraction() {
        // base64("t_1:sk_abc") and friends.
        let cases = [
            ("Basic dF8xOnNrX2FiYw==", Some(("t_1", "sk_abc"))),
            ("basic  dF8xOnNrX2FiYw== ", Some(("t_1", "sk_abc"))),
            ("Basic dF8xc2tfYWJj", None), // no colon
            ("Basic !!!", None),
            ("Bearer sk_abc", None),
        ];
        for (header, want) in cases {
            let mut map = HeaderMap::new();
            map.insert(AUTHORIZATION, HeaderValue::from_str(header).unwrap());
            let got = basic_credentials(&map);
            assert_eq!(
                got.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                want,
                "{header}"
            );
        }
    }
}
