//! The settings use case: a tenant's attribution config read, and patched field by field
//! (validated, the report webhook checked like every delivery target, a signing secret
//! generated or rotated on request).

use serde_json::{Map, Value};

use super::config::{AttributionConfig, ConfigPatch};
use crate::delivery::target::check_url;
use crate::error::{Error, FieldError};
use crate::store::redis::Redis;

pub async fn get(redis: &Redis, tenant: &str) -> Result<AttributionConfig, Error> {
    Ok(redis.attribution_config(tenant).await?)
}

/// Applies `fields` to the tenant's config; answers the new config and whether its report
/// signing secret is new (the only answer that shows it).
pub async fn patch(
    redis: &Redis,
    tenant: &str,
    fields: &Map<String, Value>,
    allow_private_targets: bool,
) -> Result<(AttributionConfig, bool), Error> {
    let current = redis.attribution_config(tenant).await?;
    let next = ConfigPatch::from_json(fields).and_then(|patch| current.patched(&patch))?;
    if !next.report_webhook_url.is_empty() {
        check_url(&next.report_webhook_url, allow_private_targets)
            .map_err(|e| FieldError::new("report_webhook_url", e))?;
    }
    redis.put_attribution_config(tenant, &next).await?;
    let new_secret = next.report_signing_secret != current.report_signing_secret;
    Ok((next, new_secret))
}
