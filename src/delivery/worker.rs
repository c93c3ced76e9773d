//! The delivery worker, one per node: reads jobs from the queue's shards in its consumer group
//! (after a restart first the ones it held and never acknowledged; when every shard is empty it
//! looks again after `IDLE_MS`), sends each with reqwest under a
//! per-destination concurrency cap, and acknowledges, reschedules (exponential backoff with
//! jitter) or dead-letters it — each in one atomic Redis step, so a crash at any point leaves
//! the job in the stream or the retry set, never nowhere. Delivery is at least once; the job
//! id is stable across attempts for receivers to dedupe.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use parking_lot::Mutex;
use reqwest::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use super::sign::{sha1_signature, webhook_signature, WEBHOOK_HEADER};
use super::target::{check_url, GuardedResolver};
use super::{backoff_ms, Context, Job, Signing};
use crate::store::redis::JobRef;
use crate::time;

/// Jobs in flight per node, and per destination host.
const IN_FLIGHT: usize = 256;
/// A job other nodes left unacknowledged this long is taken over (its node died).
const STALE_MS: u64 = 300_000;
/// A job whose host is at its cap waits this long before it is looked at again.
const BUSY_HOST_DELAY_MS: u64 = 250;
/// With every shard empty, the queue is read again after this long (reads never block: a
/// blocking read per shard would hold a connection each).
const IDLE_MS: u64 = 100;
/// Due retries are moved back into the streams this often.
const PROMOTE_MS: u64 = 250;

pub fn client(allow_private: bool, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .build()
        .expect("static client configuration")
}

/// What one attempt came to.
#[derive(Debug)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends a job once (also used directly by report test sends).
pub async fn send(http: &reqwest::Client, job: &Job, allow_private: bool) -> Attempt {
    if let Err(e) = check_url(&job.url, allow_private) {
        return Attempt {
            status: None,
            error: Some(format!("url {e}")),
        };
    }
    let mut req = match &job.body {
        Some(body) => http
            .post(&job.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.clone()),
        None => http.get(&job.url),
    };
    req = req
        .header(USER_AGENT, HeaderValue::from_static("Sluice-Delivery/1"))
        .header("X-Sluice-Delivery-Id", &job.id);
    match (&job.signing, &job.body) {
        (Some(Signing::Webhook { secret }), Some(body)) => {
            let unix = time::now_ms() / 1000;
            req = req.header(WEBHOOK_HEADER, webhook_signature(secret, unix, body));
        }
        (Some(Signing::Sha1 { header, secret }), Some(body)) => {
            req = req.header(header.as_str(), sha1_signature(secret, body));
        }
        _ => {}
    }
    match req.send().await {
        Ok(resp) => Attempt {
            status: Some(resp.status().as_u16()),
            error: None,
        },
        Err(e) => Attempt {
            status: None,
            error: Some(if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "could not connect".into()
            } else {
                "request failed".into()
            }),
        },
    }
}

pub async fn run(ctx: Context, consumer: String, mut stop: watch::Receiver<bool>) {
    let http = client(
        ctx.config.allow_private_targets,
        Duration::from_millis(ctx.config.timeout_ms),
    );
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let hosts: Arc<Mutex<AHashMap<String, Arc<Semaphore>>>> = Arc::default();
    let mut own_pending = true;
    let mut last_claim = std::time::Instant::now();
    let mut last_promote: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if last_promote.is_none_or(|at| at.elapsed() >= Duration::from_millis(PROMOTE_MS)) {
            last_promote = Some(std::time::Instant::now());
            if let Err(error) = ctx.redis.promote_due_jobs(time::now_ms()).await {
                warn!(%error, "delivery retries not promoted");
            }
        }
        let read = if last_claim.elapsed() > Duration::from_millis(STALE_MS / 4) {
            last_claim = std::time::Instant::now();
            ctx.redis.claim_stale_jobs(&consumer, STALE_MS).await
        } else {
            // After a restart, first everything this consumer held (each once).
            ctx.redis
                .read_jobs(
                    &consumer,
                    own_pending,
                    if own_pending { 10_000 } else { 64 },
                )
                .await
        };
        let jobs = match read {
            Ok(jobs) => jobs,
            Err(error) => {
                warn!(%error, "delivery queue unreadable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        own_pending = false;
        if jobs.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(IDLE_MS)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for (at, job) in jobs {
            let Some(job) = job else {
                // Unreadable: nothing could ever deliver it.
                let _ = ctx.redis.finish_job(&at).await;
                continue;
            };
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let host = {
                let mut hosts = hosts.lock();
                hosts
                    .entry(job.host())
                    .or_insert_with(|| Arc::new(Semaphore::new(ctx.config.per_host)))
                    .clone()
            };
            let (ctx, http) = (ctx.clone(), http.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match host.try_acquire() {
                    Ok(_permit) => attempt(&ctx, &http, &at, job).await,
                    // The destination is at its cap: step aside for a moment instead of
                    // holding a slot other destinations could use.
                    Err(_) => {
                        let due = time::now_ms() + BUSY_HOST_DELAY_MS;
                        if let Err(error) = ctx.redis.retry_job(&at, &job, due).await {
                            warn!(%error, "delivery not rescheduled; it stays pending");
                        }
                    }
                }
            });
        }
    }
}

async fn attempt(ctx: &Context, http: &reqwest::Client, at: &JobRef, job: Job) {
    let cfg = &ctx.config;
    let result = send(http, &job, cfg.allow_private_targets).await;
    let now = time::now_ms();
    let attempt = job.attempt + 1;
    let status = if result.ok() {
        "delivered"
    } else if now.saturating_sub(job.created_ms) >= cfg.max_age_ms {
        "dead"
    } else {
        "retrying"
    };
    let entry = json!({
        "event_id": job.id,
        "url": job.url,
        "attempt": attempt,
        "status": status,
        "response_code": result.status,
        "error": result.error,
        "at": time::rfc3339_from_ms(now),
    });
    if let Err(error) = ctx
        .redis
        .log_delivery(&job.tenant, &job.owner, &entry)
        .await
    {
        debug!(%error, "delivery attempt not logged");
    }
    if let (super::Owner::Report { report_id }, "delivered" | "dead") = (&job.owner, status) {
        let field = if status == "delivered" {
            "delivered_batches"
        } else {
            "dead_batches"
        };
        if let Err(error) = ctx.redis.report_incr(&job.tenant, report_id, field).await {
            debug!(%error, "report progress not counted");
        }
    }
    let outcome = match status {
        "delivered" => {
            ctx.metrics.deliveries[0].increment(1);
            ctx.redis.finish_job(at).await
        }
        "dead" => {
            ctx.metrics.deliveries[2].increment(1);
            warn!(job = %job.id, url = %job.url, attempt, "delivery dead-lettered after retrying for its whole window");
            ctx.redis.bury_job(at, &job).await
        }
        _ => {
            ctx.metrics.deliveries[1].increment(1);
            let next = Job {
                attempt,
                ..job.clone()
            };
            let due = now + backoff_ms(cfg.retry_base_ms, attempt);
            ctx.redis.retry_job(at, &next, due).await
        }
    };
    if let Err(error) = outcome {
        // The job stays pending in the stream and is taken again after a restart or by
        // another node: delivered at least once.
        warn!(%error, job = %job.id, "delivery outcome not recorded");
    }
}
