//! Webhook sources: each tenant's receivers of conversions, and the owner of each webhook URL
//! (looked up by the SHA-256 of its token).

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Redis, RedisError};
use crate::conversions::source::{self, Source};

/// Who a webhook token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookOwner {
    pub tenant_id: String,
    pub source_id: String,
}

impl Redis {
    /// Creates the tenant's `default` source unless it was created before (even if since
    /// deleted: a deleted default stays deleted).
    pub async fn ensure_default_source(&self, tenant: &str) -> Result<(), RedisError> {
        if self.provisioned.lock().contains(tenant) {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let flag = self.default_source_key(tenant);
        let done: bool = c.exists(&flag).await?;
        if !done {
            // Its URL is not shown to anyone: a tenant rotates it to get one.
            let (default, _) = Source::new(source::DEFAULT_NAME, "custom");
            self.create_source(tenant, &default).await?;
            let won: bool = c.set_nx(&flag, &default.id).await?;
            if !won {
                // Another request provisioned it at the same moment: keep theirs.
                self.delete_source(tenant, &default.id).await?;
            }
        }
        self.provisioned.lock().insert(tenant.to_string());
        Ok(())
    }

    pub async fn create_source(&self, tenant: &str, source: &Source) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        self.store_source(pipe.atomic(), tenant, source);
        self.query_pipeline(&pipe).await
    }

    /// Queues the commands that store `source` and make its webhook URL find it.
    fn store_source(&self, pipe: &mut redis::Pipeline, tenant: &str, source: &Source) {
        let owner = WebhookOwner {
            tenant_id: tenant.to_string(),
            source_id: source.id.clone(),
        };
        pipe.hset(
            self.sources_key(tenant),
            &source.id,
            serde_json::to_string(source).expect("serializable"),
        )
        .set(
            self.webhook_key(&source.token_hash),
            serde_json::to_string(&owner).expect("serializable"),
        );
    }

    /// Gives source `id` a new webhook URL; the old one is refused from then on. `None` when
    /// there is no such source.
    pub async fn rotate_source(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Source, String)>, RedisError> {
        let Some(mut source) = self.source(tenant, id).await? else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.atomic().del(self.webhook_key(&source.lookup_hash()));
        if let Some(legacy) = &source.legacy_token {
            pipe.del(self.legacy_webhook_key(legacy));
        }
        let token = source.new_token();
        self.store_source(&mut pipe, tenant, &source);
        self.query_pipeline(&pipe).await?;
        Ok(Some((source, token)))
    }

    pub async fn sources(&self, tenant: &str) -> Result<Vec<Source>, RedisError> {
        let mut sources: Vec<Source> = self.hash_values(&self.sources_key(tenant)).await?;
        sources.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(sources)
    }

    pub async fn source(&self, tenant: &str, id: &str) -> Result<Option<Source>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.sources_key(tenant);
        let raw: Option<String> = c.hget(&key, id).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|source| RedisError::Corrupt { key, source }))
            .transpose()
    }

    /// Deletes a source and its webhook URL; false when there was no such source.
    pub async fn delete_source(&self, tenant: &str, id: &str) -> Result<bool, RedisError> {
        let Some(source) = self.source(tenant, id).await? else {
            return Ok(false);
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.sources_key(tenant), id)
            .del(self.webhook_key(&source.lookup_hash()));
        if let Some(legacy) = &source.legacy_token {
            pipe.del(self.legacy_webhook_key(legacy));
        }
        self.query_pipeline(&pipe).await?;
        Ok(true)
    }

    /// Who the webhook URL with `token` belongs to, looked up by the token's hash. An owner
    /// kept by the token itself (before tokens were hashed) is moved under its hash.
    pub async fn webhook_owner(&self, token: &str) -> Result<Option<WebhookOwner>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.webhook_key(&source::token_hash(token));
        if let Some(raw) = c.get::<_, Option<String>>(&key).await? {
            return serde_json::from_str(&raw)
                .map(Some)
                .map_err(|source| RedisError::Corrupt { key, source });
        }
        let legacy = self.legacy_webhook_key(token);
        let Some(raw) = c.get::<_, Option<String>>(&legacy).await? else {
            return Ok(None);
        };
        let owner: WebhookOwner =
            serde_json::from_str(&raw).map_err(|source| RedisError::Corrupt {
                key: legacy.clone(),
                source,
            })?;
        let mut pipe = redis::pipe();
        pipe.atomic().set(&key, &raw).del(&legacy);
        if let Some(mut source) = self.source(&owner.tenant_id, &owner.source_id).await? {
            source.token_hash = source.lookup_hash();
            source.token_hint = token.chars().take(8).collect();
            source.legacy_token = None;
            pipe.hset(
                self.sources_key(&owner.tenant_id),
                &source.id,
                serde_json::to_string(&source).expect("serializable"),
            );
        }
        self.query_pipeline(&pipe).await?;
        Ok(Some(owner))
    }
}
