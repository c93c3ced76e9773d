//! Delivery state: partners and webhook subscriptions (with their read-through caches), the
//! delivery logs, report progress, and the durable job queue (a stream with a consumer group,
//! a retry set, dead letters; every move one `MULTI` or `delivery_promote.lua`).

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

/// A delivery stream entry: its id, and its job (`None` when unreadable).
fn stream_job(entry: redis::streams::StreamId) -> (String, Option<Job>) {
    let job = entry
        .get::<String>("job")
        .and_then(|j| serde_json::from_str(&j).ok());
    (entry.id, job)
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

    /// Creates the delivery stream and its consumer group unless they exist.
    pub async fn ensure_delivery_group(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let created: Result<(), redis::RedisError> = c
            .xgroup_create_mkstream(self.queue_key(), DELIVERY_GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Appends jobs to the delivery stream (durable once Redis has them: AOF).
    pub async fn enqueue(&self, jobs: &[Job]) -> Result<(), RedisError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let key = self.queue_key();
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.xadd(
                &key,
                "*",
                &[("job", serde_json::to_string(job).expect("serializable"))],
            )
            .ignore();
        }
        self.query_pipeline(&pipe).await
    }

    /// Up to `count` jobs for `consumer`: new ones (blocking up to `block_ms`), or with
    /// `own_pending` the ones it was given before and never acknowledged (after a restart).
    pub async fn read_jobs(
        &self,
        consumer: &str,
        own_pending: bool,
        count: usize,
        block_ms: usize,
    ) -> Result<Vec<(String, Option<Job>)>, RedisError> {
        use redis::streams::{StreamReadOptions, StreamReadReply};
        let mut opts = StreamReadOptions::default()
            .group(DELIVERY_GROUP, consumer)
            .count(count);
        if !own_pending {
            opts = opts.block(block_ms);
        }
        let mut c = self.blocking.clone();
        let reply: Option<StreamReadReply> = c
            .xread_options(
                &[self.queue_key()],
                &[if own_pending { "0" } else { ">" }],
                &opts,
            )
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(stream_job)
            .collect())
    }

    /// Jobs other consumers were given and left unacknowledged for `min_idle_ms` (their
    /// node died), now given to `consumer`.
    pub async fn claim_stale_jobs(
        &self,
        consumer: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<(String, Option<Job>)>, RedisError> {
        use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply};
        let mut c = self.conn.clone();
        let reply: StreamAutoClaimReply = c
            .xautoclaim_options(
                self.queue_key(),
                DELIVERY_GROUP,
                consumer,
                min_idle_ms,
                "0",
                StreamAutoClaimOptions::default().count(100),
            )
            .await?;
        Ok(reply.claimed.into_iter().map(stream_job).collect())
    }

    /// A `MULTI` that takes job `stream_id` off the stream; callers add where it goes next.
    fn off_stream(&self, stream_id: &str) -> redis::Pipeline {
        let key = self.queue_key();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .xack(&key, DELIVERY_GROUP, &[stream_id])
            .ignore()
            .xdel(&key, &[stream_id])
            .ignore();
        pipe
    }

    /// The job is done (delivered, or dropped): off the stream.
    pub async fn finish_job(&self, stream_id: &str) -> Result<(), RedisError> {
        self.query_pipeline(&self.off_stream(stream_id)).await
    }

    /// Takes the job off the stream and schedules `next` at `due_ms`, in one step.
    pub async fn retry_job(
        &self,
        stream_id: &str,
        next: &Job,
        due_ms: u64,
    ) -> Result<(), RedisError> {
        let mut pipe = self.off_stream(stream_id);
        pipe.zadd(
            self.retry_key(),
            serde_json::to_string(next).expect("serializable"),
            due_ms,
        )
        .ignore();
        self.query_pipeline(&pipe).await
    }

    /// Takes the job off the stream into the dead letters, in one step.
    pub async fn bury_job(&self, stream_id: &str, job: &Job) -> Result<(), RedisError> {
        let mut pipe = self.off_stream(stream_id);
        pipe.cmd("XADD")
            .arg(self.dead_key())
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTERS)
            .arg("*")
            .arg("job")
            .arg(serde_json::to_string(job).expect("serializable"))
            .ignore();
        self.query_pipeline(&pipe).await
    }

    /// Moves due retries back into the stream (`redis/delivery_promote.lua`).
    pub async fn promote_due_jobs(&self, now_ms: u64) -> Result<u64, RedisError> {
        let mut c = self.conn.clone();
        Ok(self
            .delivery_promote
            .key(self.retry_key())
            .key(self.queue_key())
            .arg(now_ms)
            .arg(500)
            .invoke_async(&mut c)
            .await?)
    }

    /// (jobs in the stream, jobs waiting to retry, dead letters).
    pub async fn delivery_depths(&self) -> Result<(u64, u64, u64), RedisError> {
        let mut c = self.conn.clone();
        let (queued, retrying, dead): (u64, u64, u64) = redis::pipe()
            .xlen(self.queue_key())
            .zcard(self.retry_key())
            .xlen(self.dead_key())
            .query_async(&mut c)
            .await?;
        Ok((queued, retrying, dead))
    }
}
