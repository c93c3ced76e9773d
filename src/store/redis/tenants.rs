//! Tenants: their API keys and their attribution settings. A key is found by its hash
//! (`<p>:key:<sha256>`, global: a request does not say its tenant) and listed from the
//! tenant's own hash of entries (`<p>:{t:<tenant>}:keys`), where revocation is decided
//! atomically (`redis/key_revoke.lua`).

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{random_hex, Redis, RedisError};
use crate::attribution::AttributionConfig;
use crate::keys::{self, ApiKey, KeyKind};
use crate::time;

/// What a key's lookup record says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub tenant_id: String,
    pub kind: KeyKind,
    /// In the tenant's list. Keys issued before keys were listed are added on first use.
    #[serde(default)]
    pub listed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewTenant {
    pub tenant_id: String,
    pub secret_key: String,
    pub publishable_key: String,
}

/// How a revocation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    Missing,
    /// Refused: the tenant's last active secret key.
    LastSecret,
}

impl Redis {
    pub async fn create_tenant(&self, name: &str) -> Result<NewTenant, RedisError> {
        let tenant_id = format!("t_{}", random_hex(8));
        let secret_key = keys::generate(KeyKind::Secret);
        let publishable_key = keys::generate(KeyKind::Publishable);
        let now = time::now_rfc3339();
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            self.tenant_key(&tenant_id),
            &[("name", name.to_string()), ("created_at", now.clone())],
        );
        for (kind, key) in [
            (KeyKind::Secret, &secret_key),
            (KeyKind::Publishable, &publishable_key),
        ] {
            self.add_key(&mut pipe, &tenant_id, &ApiKey::new(kind, key, now.clone()));
        }
        self.query_pipeline(&pipe).await?;
        Ok(NewTenant {
            tenant_id,
            secret_key,
            publishable_key,
        })
    }

    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.exists(self.tenant_key(tenant)).await?)
    }

    /// Queues the commands that list `entry` under `tenant` and make its key valid.
    fn add_key(&self, pipe: &mut redis::Pipeline, tenant: &str, entry: &ApiKey) {
        let record = KeyRecord {
            tenant_id: tenant.to_string(),
            kind: entry.kind,
            listed: true,
        };
        pipe.hset(
            self.tenant_keys_key(tenant),
            &entry.id,
            serde_json::to_string(entry).expect("serializable"),
        )
        .set(
            self.api_key_key(&entry.hash),
            serde_json::to_string(&record).expect("serializable"),
        );
    }

    /// Creates a key of `kind` unless the tenant already has `limit` active keys; the key is
    /// returned with its entry (and shown to the caller once).
    pub async fn create_key(
        &self,
        tenant: &str,
        kind: KeyKind,
        limit: usize,
    ) -> Result<Option<(ApiKey, String)>, RedisError> {
        let active = self
            .keys_of(tenant)
            .await?
            .iter()
            .filter(|(k, _)| k.active())
            .count();
        if active >= limit {
            return Ok(None);
        }
        let key = keys::generate(kind);
        let entry = ApiKey::new(kind, &key, time::now_rfc3339());
        let mut pipe = redis::pipe();
        self.add_key(&mut pipe, tenant, &entry);
        self.query_pipeline(&pipe).await?;
        Ok(Some((entry, key)))
    }

    /// The tenant's keys, oldest first, each with when it was last used (to the minute).
    pub async fn keys_of(&self, tenant: &str) -> Result<Vec<(ApiKey, Option<String>)>, RedisError> {
        let mut c = self.conn.clone();
        type Fields = Vec<(String, String)>;
        let (entries, uses): (Fields, Fields) = redis::pipe()
            .hgetall(self.tenant_keys_key(tenant))
            .hgetall(self.key_uses_key(tenant))
            .query_async(&mut c)
            .await?;
        let uses: ahash::AHashMap<String, String> = uses.into_iter().collect();
        let mut list = entries
            .into_iter()
            .map(|(_, raw)| {
                serde_json::from_str::<ApiKey>(&raw).map_err(|source| RedisError::Corrupt {
                    key: self.tenant_keys_key(tenant),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(list
            .into_iter()
            .map(|k| {
                let used = uses.get(&k.id).cloned();
                (k, used)
            })
            .collect())
    }

    /// Revokes key `id` of `tenant`: refused from then on, on this node at once and on every
    /// other within `KEY_CACHE_TTL`.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<Revocation, RedisError> {
        let mut c = self.conn.clone();
        let (status, hash): (String, String) = self
            .key_revoke
            .key(self.tenant_keys_key(tenant))
            .arg(id)
            .arg(time::now_rfc3339())
            .invoke_async(&mut c)
            .await?;
        match status.as_str() {
            "revoked" | "already" => {
                // Deleted after the entry is marked, and again on a repeated revocation, so
                // a lookup record never outlives a failed first attempt.
                let _: () = c.del(self.api_key_key(&hash)).await?;
                self.keys.remove(&hash);
                Ok(Revocation::Revoked)
            }
            "last_secret" => Ok(Revocation::LastSecret),
            _ => Ok(Revocation::Missing),
        }
    }

    /// Looks an API key up by its hash; keys themselves are never stored.
    pub async fn key_record(&self, key: &str) -> Result<Option<KeyRecord>, RedisError> {
        let hash = keys::hash(key);
        if let Some(cached) = self.keys.get(&hash) {
            return Ok(cached);
        }
        let mut c = self.conn.clone();
        let rkey = self.api_key_key(&hash);
        let raw: Option<String> = c.get(&rkey).await?;
        let mut record: Option<KeyRecord> = raw
            .map(|r| {
                serde_json::from_str(&r).map_err(|source| RedisError::Corrupt { key: rkey, source })
            })
            .transpose()?;
        if let Some(r) = record.as_mut().filter(|r| !r.listed) {
            // Issued before keys were listed: list it now, under the id its hash gives.
            let entry = ApiKey::new(r.kind, key, time::now_rfc3339());
            let mut pipe = redis::pipe();
            pipe.hset_nx(
                self.tenant_keys_key(&r.tenant_id),
                &entry.id,
                serde_json::to_string(&entry).expect("serializable"),
            );
            r.listed = true;
            pipe.set(
                self.api_key_key(&hash),
                serde_json::to_string(&*r).expect("serializable"),
            );
            self.query_pipeline(&pipe).await?;
        }
        self.keys.put(hash, record.clone());
        Ok(record)
    }

    /// Notes that `key` of `tenant` was used now: written at most once a minute per key and
    /// node, in the background (a lost write only makes `last_used_at` older).
    pub fn key_used(&self, tenant: &str, key: &str) {
        let hash = keys::hash(key);
        if self.key_uses.get(&hash).is_some() {
            return;
        }
        self.key_uses.put(hash.clone(), ());
        let (redis, uses, id) = (self.clone(), self.key_uses_key(tenant), keys::id_of(&hash));
        tokio::spawn(async move {
            let mut c = redis.conn.clone();
            let _: Result<(), _> = c.hset(uses, id, time::now_rfc3339()).await;
        });
    }

    /// The tenant's attribution settings (defaults until first changed).
    pub async fn attribution_config(&self, tenant: &str) -> Result<AttributionConfig, RedisError> {
        if let Some(cached) = self.configs.get(tenant) {
            return Ok(cached);
        }
        let mut c = self.conn.clone();
        let key = self.config_key(tenant);
        let raw: Option<String> = c.get(&key).await?;
        let config: AttributionConfig = raw
            .map(|r| serde_json::from_str(&r).map_err(|source| RedisError::Corrupt { key, source }))
            .transpose()?
            .unwrap_or_default();
        self.configs.put(tenant.to_string(), config.clone());
        Ok(config)
    }

    pub async fn put_attribution_config(
        &self,
        tenant: &str,
        config: &AttributionConfig,
    ) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(config).expect("serializable");
        let _: () = c.set(self.config_key(tenant), json).await?;
        self.configs.put(tenant.to_string(), config.clone());
        Ok(())
    }
}
