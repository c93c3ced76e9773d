//! Links: the global code → link hash (the redirect table's source), each tenant's set of
//! codes, and the version every write bumps.

use redis::AsyncCommands;

use super::{Redis, RedisError};
use crate::link::Link;

impl Redis {
    /// How many live links the tenant has.
    pub async fn link_count(&self, tenant: &str) -> Result<usize, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.scard(self.tenant_links_key(tenant)).await?)
    }

    /// Claims `link.id` globally. Returns false when the code is taken (by anyone, ever:
    /// deleted codes stay claimed).
    pub async fn insert_link(&self, link: &Link) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(link).expect("serializable");
        let claimed: bool = c.hset_nx(self.links_key(), &link.id, json).await?;
        if claimed {
            redis::pipe()
                .sadd(self.tenant_links_key(&link.tenant_id), &link.id)
                .incr(self.links_version_key(), 1)
                .query_async::<()>(&mut c)
                .await?;
        }
        Ok(claimed)
    }

    /// Overwrites a link (update or soft delete) and announces the change.
    pub async fn put_link(&self, link: &Link) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(link).expect("serializable");
        let mut pipe = redis::pipe();
        pipe.hset(self.links_key(), &link.id, json);
        if link.deleted_at.is_some() {
            pipe.srem(self.tenant_links_key(&link.tenant_id), &link.id);
        }
        pipe.incr(self.links_version_key(), 1)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    pub async fn get_link(&self, code: &str) -> Result<Option<Link>, RedisError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.hget(self.links_key(), code).await?;
        raw.map(|r| self.decode_link(code, &r)).transpose()
    }

    pub async fn tenant_links(&self, tenant: &str) -> Result<Vec<Link>, RedisError> {
        let mut c = self.conn.clone();
        let codes: Vec<String> = c.smembers(self.tenant_links_key(tenant)).await?;
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let raws: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.links_key())
            .arg(&codes)
            .query_async(&mut c)
            .await?;
        let mut links = Vec::with_capacity(codes.len());
        for (code, raw) in codes.iter().zip(raws) {
            if let Some(raw) = raw {
                links.push(self.decode_link(code, &raw)?);
            }
        }
        Ok(links)
    }

    pub async fn links_version(&self) -> Result<i64, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.get::<_, Option<i64>>(self.links_version_key())
            .await?
            .unwrap_or(0))
    }

    /// Every link of every tenant, with the version read before them (so a change racing
    /// the read shows up as a newer version on the next poll).
    pub async fn all_links(&self) -> Result<(i64, Vec<Link>), RedisError> {
        let version = self.links_version().await?;
        let mut c = self.conn.clone();
        let raws: Vec<(String, String)> = c.hgetall(self.links_key()).await?;
        let links = raws
            .iter()
            .map(|(code, raw)| self.decode_link(code, raw))
            .collect::<Result<_, _>>()?;
        Ok((version, links))
    }

    fn decode_link(&self, code: &str, raw: &str) -> Result<Link, RedisError> {
        serde_json::from_str(raw).map_err(|source| RedisError::Corrupt {
            key: format!("{}[{code}]", self.links_key()),
            source,
        })
    }
}
