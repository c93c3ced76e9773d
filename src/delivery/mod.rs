//! Outbound delivery: partner postbacks, signed webhooks and attribution report batches. Every
//! delivery is a `Job` in a durable Redis Stream (`store/redis/delivery.rs`); `worker.rs`
//! sends them with per-destination concurrency caps, retries failures with exponential
//! backoff and jitter for up to a day, then dead-letters them. Outcomes are logged per
//! partner, webhook and report, and counted in metrics.

pub mod fanout;
pub mod job;
pub mod partner;
pub mod receivers;
pub mod report;
pub mod sign;
pub mod target;
pub mod worker;

pub use job::{backoff_ms, Job, Owner, Signing, Webhook};

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::store::redis::Redis;

/// What delivery works with: the queue's store, the facts' store (for reports), its settings
/// and the metrics. Cheap to clone: the stores are shared connections.
#[derive(Clone)]
pub struct Context {
    pub redis: Redis,
    pub ch: ::clickhouse::Client,
    pub config: DeliveryConfig,
    pub metrics: &'static Metrics,
}
