//! Apps (each tenant's, and the owner of each App Store id) and each tenant's SKAdNetwork
//! campaign map.

use redis::AsyncCommands;

use super::{Redis, RedisError};
use crate::skan::app::{App, AppOwner};

impl Redis {
    pub async fn apps(&self, tenant: &str) -> Result<Vec<App>, RedisError> {
        let mut apps: Vec<App> = self.hash_values(&self.apps_key(tenant)).await?;
        apps.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(apps)
    }

    pub async fn app(&self, tenant: &str, id: &str) -> Result<Option<App>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.apps_key(tenant);
        let raw: Option<String> = c.hget(&key, id).await?;
        raw.map(|r| Self::decode(&key, &r)).transpose()
    }

    /// Registers `app` unless another app holds its App Store id: then answers that one's
    /// owner. The app is stored before its id is claimed, so a claim always names a stored
    /// app; a claim whose app is gone (a deletion or registration cut short) is taken over.
    pub async fn create_app(
        &self,
        tenant: &str,
        app: &App,
    ) -> Result<Option<AppOwner>, RedisError> {
        let mut c = self.conn.clone();
        let apps = self.apps_key(tenant);
        let _: () = c
            .hset(
                &apps,
                &app.id,
                serde_json::to_string(app).expect("serializable"),
            )
            .await?;
        let owner_key = self.app_owner_key(app.app_store_id);
        let record = serde_json::to_string(&AppOwner {
            tenant_id: tenant.to_string(),
            app_id: app.id.clone(),
        })
        .expect("serializable");
        if c.set_nx(&owner_key, &record).await? {
            return Ok(None);
        }
        if let Some(holder) = self.app_owner(app.app_store_id).await? {
            if self.app(&holder.tenant_id, &holder.app_id).await?.is_some() {
                let _: () = c.hdel(&apps, &app.id).await?;
                return Ok(Some(holder));
            }
        }
        let _: () = c.set(&owner_key, &record).await?;
        Ok(None)
    }

    /// Deletes app `id`; false when there is no such app. Its App Store id is free again:
    /// released first (only if this app still holds it), then the app removed.
    pub async fn delete_app(&self, tenant: &str, id: &str) -> Result<bool, RedisError> {
        let Some(app) = self.app(tenant, id).await? else {
            return Ok(false);
        };
        let mut c = self.conn.clone();
        let record = serde_json::to_string(&AppOwner {
            tenant_id: tenant.to_string(),
            app_id: id.to_string(),
        })
        .expect("serializable");
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
        )
        .key(self.app_owner_key(app.app_store_id))
        .arg(record)
        .invoke_async::<()>(&mut c)
        .await?;
        let _: () = c.hdel(self.apps_key(tenant), id).await?;
        Ok(true)
    }

    pub async fn app_owner(&self, app_store_id: u64) -> Result<Option<AppOwner>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.app_owner_key(app_store_id);
        let raw: Option<String> = c.get(&key).await?;
        raw.map(|r| Self::decode(&key, &r)).transpose()
    }

    /// The tenant's campaign map as stored (a JSON array), if it has one.
    pub async fn skan_campaigns(&self, tenant: &str) -> Result<Option<String>, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.get(self.skan_campaigns_key(tenant)).await?)
    }

    pub async fn set_skan_campaigns(&self, tenant: &str, json: &str) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        Ok(c.set(self.skan_campaigns_key(tenant), json).await?)
    }
}
