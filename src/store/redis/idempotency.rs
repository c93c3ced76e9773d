//! Idempotency: the event ids and conversion keys a request takes (`redis/idempotency.lua`),
//! held while its rows are on their way and released or finished with them.

use redis::AsyncCommands;

use super::{random_hex, Redis, RedisError};
use crate::conversions::IDEMPOTENCY_TTL_MS;

/// One request's claim on ids of an idempotency namespace (`event`, `conversion`), as of
/// when it was made (which fixes the generation its ids go into).
#[derive(Clone)]
pub struct IdClaim {
    pub tenant: String,
    pub namespace: &'static str,
    pub request: String,
    pub now_ms: u64,
}

impl IdClaim {
    /// A claim for a fresh request.
    pub fn new(tenant: &str, namespace: &'static str, now_ms: u64) -> IdClaim {
        IdClaim {
            tenant: tenant.to_string(),
            namespace,
            request: random_hex(16),
            now_ms,
        }
    }

    /// Ids are remembered per generation of one id lifetime (`redis/idempotency.lua`).
    fn generation(&self) -> u64 {
        self.now_ms / IDEMPOTENCY_TTL_MS
    }
}

impl Redis {
    /// Takes the ids of request `request` in `namespace` (`redis/idempotency.lua`): true
    /// where this request now holds the id, false for duplicates.
    pub async fn take_ids(
        &self,
        claim: &IdClaim,
        ids: &[Vec<u8>],
        pending_ms: u64,
    ) -> Result<Vec<bool>, RedisError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let generation = claim.generation();
        let mut invocation = self.idempotency.prepare_invoke();
        invocation
            .key(self.inflight_key(&claim.tenant))
            .key(self.idempotency_set_key(&claim.tenant, claim.namespace, generation))
            .key(self.idempotency_set_key(
                &claim.tenant,
                claim.namespace,
                generation.wrapping_sub(1),
            ))
            .key(self.request_record_key(&claim.tenant, &claim.request))
            .arg(&claim.request)
            .arg(claim.now_ms)
            .arg(pending_ms)
            .arg(IDEMPOTENCY_TTL_MS)
            .arg((generation + 2) * IDEMPOTENCY_TTL_MS);
        for id in ids {
            invocation.arg(id.as_slice());
        }
        let mut c = self.conn.clone();
        let taken: Vec<u8> = invocation.invoke_async(&mut c).await?;
        Ok(taken.into_iter().map(|t| t == 1).collect())
    }

    /// How many of the tenant's ingest requests hold keys whose rows are not yet durable.
    pub async fn requests_in_flight(&self, tenant: &str) -> Result<u64, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.zcard(self.inflight_key(tenant)).await?)
    }

    /// The request's rows are durable: its ids stand for their whole lifetime.
    pub async fn finish_request(&self, claim: &IdClaim) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.inflight_key(&claim.tenant), &claim.request)
            .ignore()
            .del(self.request_record_key(&claim.tenant, &claim.request))
            .ignore();
        self.query_pipeline(&pipe).await
    }

    /// The request's rows were refused: lets go of the ids it took so a retry is stored.
    pub async fn release_request(
        &self,
        claim: &IdClaim,
        taken: &[&[u8]],
    ) -> Result<(), RedisError> {
        let generation = claim.generation();
        let mut pipe = redis::pipe();
        if !taken.is_empty() {
            // A taken-over id may still sit in the previous generation's set.
            for g in [generation, generation.wrapping_sub(1)] {
                pipe.srem(
                    self.idempotency_set_key(&claim.tenant, claim.namespace, g),
                    taken,
                )
                .ignore();
            }
        }
        pipe.zrem(self.inflight_key(&claim.tenant), &claim.request)
            .ignore()
            .del(self.request_record_key(&claim.tenant, &claim.request))
            .ignore();
        self.query_pipeline(&pipe).await
    }
}
