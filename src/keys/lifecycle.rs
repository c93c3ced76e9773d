//! The key use cases: a tenant's keys listed (with when each was last used), created (the
//! key itself returned once) and revoked (never the tenant's last active secret key).

use super::{ApiKey, KeyKind};
use crate::error::Error;
use crate::store::redis::{Redis, Revocation};

/// Each key with when it was last used.
pub async fn list(redis: &Redis, tenant: &str) -> Result<Vec<(ApiKey, Option<String>)>, Error> {
    Ok(redis.keys_of(tenant).await?)
}

/// A new key of `kind`, unless the tenant has `limit` active keys: its entry and the key.
pub async fn create(
    redis: &Redis,
    tenant: &str,
    kind: KeyKind,
    limit: usize,
) -> Result<(ApiKey, String), Error> {
    redis
        .create_key(tenant, kind, limit)
        .await?
        .ok_or(Error::LimitReached {
            resource: "active keys",
            limit,
        })
}

pub async fn revoke(redis: &Redis, tenant: &str, id: &str) -> Result<(), Error> {
    match redis.revoke_key(tenant, id).await? {
        Revocation::Revoked => Ok(()),
        Revocation::Missing => Err(Error::NotFound(format!("no key {id:?}"))),
        Revocation::LastSecret => Err(Error::Conflict {
            code: "last_secret_key",
            message:
                "this is the tenant's last active secret key; create another before revoking it"
                    .into(),
            field: None,
        }),
    }
}
