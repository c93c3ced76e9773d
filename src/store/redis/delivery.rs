//! Delivery state: partners and webhook subscriptions (with their read-through caches), the
//! delivery logs, report progress, and the durable job queue: `DELIVERY_SHARDS` shards, a
//! tenant's jobs in one of them, each a stream with a consumer group, a retry set and dead
//! letters (every move within a shard one `MULTI` or `delivery_promote.lua`).

use redis::AsyncCommands;

use super::{Redis, RedisError};
use crate::delivery::job::{Job, Owner, Webhook};
use crate::delivery::partner::Partner;

/// The consumer group every node's delivery worker reads in.
const DELIVERY_GROUP: &str = "workers";

/// Dead-lettered deliveries kept (the newest).
const DEAD_LETTERS: usize = 10_000;

/// Delivery attempts logged per partner, webhook or report (the newest).
pub const DELIVERY_LOG: isize = 100;

/// Shards of the delivery queue: on Redis Cluster they spread delivery traffic over the
/// masters (a shard is one slot), where a single queue put all of it on one.
pub const DELIVERY_SHARDS: u16 = 8;

/// The shard of `tenant`'s jobs (the same on every node).
fn delivery_shard(tenant: &str) -> u16 {
    (crc32fast::hash(tenant.as_bytes()) % u32::from(DELIVERY_SHARDS)) as u16
}

/// Where a job sits in the queue: its shard and its stream entry id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub shard: u16,
    pub id: String,
}

/// A delivery stream entry: where it is, and its job (`None` when unreadable).
fn stream_job(shard: u16, entry: redis::streams::StreamId) -> (JobRef, Option<Job>) {
    let job = entry
        .get::<String>("job")
        .and_then(|j| serde_json::from_str(&j).ok());
    (
        JobRef {
            shard,
            id: entry.id,
        },
        job,
    )
}

impl Redis {
    pub async fn put_partner(&self, tenant: &str, partner: &Partner) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(partner).expect("serializable");
        let _: () = c.hset(self.partners_key(tenant), &partner.id, json).await?;
        self.partners
            .put(format!("{tenant}/{}", partner.id), Some(partner.clone()));
        Ok(())
    }

    pub async fn partner(&self, tenant: &str, id: &str) -> Result<Option<Partner>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.partners_key(tenant);
        let raw: Option<String> = c.hget(&key, id).await?;
        raw.map(|r| Self::decode(&key, &r)).transpose()
    }

    /// `partner`, through a short cache (deliveries fan out on the ingest path).
    pub async fn partner_cached(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Partner>, RedisError> {
        let cache_key = format!("{tenant}/{id}");
        if let Some(p) = self.partners.get(&cache_key) {
            return Ok(p);
        }
        let p = self.partner(tenant, id).await?;
        self.partners.put(cache_key, p.clone());
        Ok(p)
    }

    pub async fn partners_of(&self, tenant: &str) -> Result<Vec<Partner>, RedisError> {
        let mut out: Vec<Partner> = self.hash_values(&self.partners_key(tenant)).await?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub async fn delete_partner(&self, tenant: &str, id: &str) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let removed: u32 = c.hdel(self.partners_key(tenant), id).await?;
        self.partners.put(format!("{tenant}/{id}"), None);
        Ok(removed > 0)
    }

    pub async fn put_webhook(&self, tenant: &str, webhook: &Webhook) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(webhook).expect("serializable");
        let _: () = c.hset(self.webhooks_key(tenant), &webhook.id, json).await?;
        self.webhooks.map.lock().remove(tenant);
        Ok(())
    }

    pub async fn webhooks_of(&self, tenant: &str) -> Result<Vec<Webhook>, RedisError> {
        let mut out: Vec<Webhook> = self.hash_values(&self.webhooks_key(tenant)).await?;
        out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(out)
    }

    /// `webhooks_of`, through a short cache (deliveries fan out on the ingest path).
    pub async fn webhooks_cached(&self, tenant: &str) -> Result<Vec<Webhook>, RedisError> {
        if let Some(w) = self.webhooks.get(tenant) {
            return Ok(w);
        }
        let w = self.webhooks_of(tenant).await?;
        self.webhooks.put(tenant.to_string(), w.clone());
        Ok(w)
    }

    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let removed: u32 = c.hdel(self.webhooks_key(tenant), id).await?;
        self.webhooks.map.lock().remove(tenant);
        Ok(removed > 0)
    }

    /// Records a delivery attempt for its owner (the newest `DELIVERY_LOG` are kept).
    pub async fn log_delivery(
        &self,
        tenant: &str,
        owner: &Owner,
        entry: &serde_json::Value,
    ) -> Result<(), RedisError> {
        let key = self.delivery_log_key(tenant, owner);
        let mut pipe = redis::pipe();
        pipe.lpush(&key, entry.to_string())
            .ignore()
            .ltrim(&key, 0, DELIVERY_LOG - 1)
            .ignore();
        self.query_pipeline(&pipe).await
    }

    pub async fn delivery_log(
        &self,
        tenant: &str,
        owner: &Owner,
    ) -> Result<Vec<serde_json::Value>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.delivery_log_key(tenant, owner);
        let raws: Vec<String> = c.lrange(&key, 0, DELIVERY_LOG - 1).await?;
        raws.iter().map(|r| Self::decode(&key, r)).collect()
    }

    /// Sets fields of a report (a hash: counters are incremented in place).
    pub async fn report_set(
        &self,
        tenant: &str,
        id: &str,
        fields: &[(&str, String)],
    ) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let _: () = c.hset_multiple(self.report_key(tenant, id), fields).await?;
        Ok(())
    }

    pub async fn report_incr(&self, tenant: &str, id: &str, field: &str) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let _: () = c.hincr(self.report_key(tenant, id), field, 1).await?;
        Ok(())
    }

    pub async fn report(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.hgetall(self.report_key(tenant, id)).await?)
    }

    /// Creates each shard's stream and consumer group unless they exist.
    pub async fn ensure_delivery_group(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        for shard in 0..DELIVERY_SHARDS {
            let created: Result<(), redis::RedisError> = c
                .xgroup_create_mkstream(self.queue_key(shard), DELIVERY_GROUP, "0")
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Appends jobs to their tenants' shards (durable once Redis has them: AOF).
    pub async fn enqueue(&self, jobs: &[Job]) -> Result<(), RedisError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.xadd(
                self.queue_key(delivery_shard(&job.tenant)),
                "*",
                &[("job", serde_json::to_string(job).expect("serializable"))],
            )
            .ignore();
        }
        self.query_pipeline(&pipe).await
    }

    /// Up to `count` jobs from each shard for `consumer`: new ones, or with `own_pending` the
    /// ones it was given before and never acknowledged (after a restart). Never blocks: the
    /// worker waits a moment when every shard is empty.
    pub async fn read_jobs(
        &self,
        consumer: &str,
        own_pending: bool,
        count: usize,
    ) -> Result<Vec<(JobRef, Option<Job>)>, RedisError> {
        use redis::streams::{StreamReadOptions, StreamReadReply};
        let opts = StreamReadOptions::default()
            .group(DELIVERY_GROUP, consumer)
            .count(count);
        let mut c = self.conn.clone();
        let mut jobs = Vec::new();
        for shard in 0..DELIVERY_SHARDS {
            let reply: Option<StreamReadReply> = c
                .xread_options(
                    &[self.queue_key(shard)],
                    &[if own_pending { "0" } else { ">" }],
                    &opts,
                )
                .await?;
            jobs.extend(
                reply
                    .into_iter()
                    .flat_map(|r| r.keys)
                    .flat_map(|k| k.ids)
                    .map(|entry| stream_job(shard, entry)),
            );
        }
        Ok(jobs)
    }

    /// Jobs other consumers were given and left unacknowledged for `min_idle_ms` (their
    /// node died), now given to `consumer`.
    pub async fn claim_stale_jobs(
        &self,
        consumer: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<(JobRef, Option<Job>)>, RedisError> {
        use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply};
        let mut c = self.conn.clone();
        let mut jobs = Vec::new();
        for shard in 0..DELIVERY_SHARDS {
            let reply: StreamAutoClaimReply = c
                .xautoclaim_options(
                    self.queue_key(shard),
                    DELIVERY_GROUP,
                    consumer,
                    min_idle_ms,
                    "0",
                    StreamAutoClaimOptions::default().count(100),
                )
                .await?;
            jobs.extend(reply.claimed.into_iter().map(|e| stream_job(shard, e)));
        }
        Ok(jobs)
    }

    /// A `MULTI` that takes `job` off its shard's stream; callers add where it goes next
    /// (in the same shard).
    fn off_stream(&self, job: &JobRef) -> redis::Pipeline {
        let key = self.queue_key(job.shard);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .xack(&key, DELIVERY_GROUP, &[&job.id])
            .ignore()
            .xdel(&key, &[&job.id])
            .ignore();
        pipe
    }

    /// The job is done (delivered, or dropped): off the stream.
    pub async fn finish_job(&self, job: &JobRef) -> Result<(), RedisError> {
        self.query_pipeline(&self.off_stream(job)).await
    }

    /// Takes the job off the stream and schedules `next` at `due_ms`, in one step.
    pub async fn retry_job(&self, job: &JobRef, next: &Job, due_ms: u64) -> Result<(), RedisError> {
        let mut pipe = self.off_stream(job);
        pipe.zadd(
            self.retry_key(job.shard),
            serde_json::to_string(next).expect("serializable"),
            due_ms,
        )
        .ignore();
        self.query_pipeline(&pipe).await
    }

    /// Takes the job off the stream into the dead letters, in one step.
    pub async fn bury_job(&self, at: &JobRef, job: &Job) -> Result<(), RedisError> {
        let mut pipe = self.off_stream(at);
        pipe.cmd("XADD")
            .arg(self.dead_key(at.shard))
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTERS)
            .arg("*")
            .arg("job")
            .arg(serde_json::to_string(job).expect("serializable"))
            .ignore();
        self.query_pipeline(&pipe).await
    }

    /// Moves due retries back into their shards' streams (`redis/delivery_promote.lua`).
    pub async fn promote_due_jobs(&self, now_ms: u64) -> Result<u64, RedisError> {
        let mut c = self.conn.clone();
        let mut promoted = 0;
        for shard in 0..DELIVERY_SHARDS {
            let n: u64 = self
                .delivery_promote
                .key(self.retry_key(shard))
                .key(self.queue_key(shard))
                .arg(now_ms)
                .arg(500)
                .invoke_async(&mut c)
                .await?;
            promoted += n;
        }
        Ok(promoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_spread_over_the_shards_the_same_on_every_node() {
        // crc32 (IEEE) of the id, mod 8: what any node, in any language, computes.
        for (tenant, shard) in [("t_1", 7), ("t_f41fa39f43468ba9", 2), ("tenant", 2)] {
            assert_eq!(delivery_shard(tenant), shard, "{tenant}");
        }
        let mut counts = [0u32; DELIVERY_SHARDS as usize];
        for i in 0..8_000 {
            counts[delivery_shard(&format!("t_{i:016x}")) as usize] += 1;
        }
        // 1,000 a shard on average: none empty, none far off.
        assert!(
            counts.iter().all(|&n| (800..1_200).contains(&n)),
            "{counts:?}"
        );
    }
}
