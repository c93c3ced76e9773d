//! The state every request shares (`App`): settings, the link table, the pipeline's queues,
//! the stores, caches and metrics. `server.rs` builds it and starts what runs beside it.

use std::sync::Arc;

use ipnet::IpNet;
use tracing::warn;

use crate::click::enrich::IpHasher;
use crate::click::geo::Geo;
use crate::config::Config;
use crate::http::rate_limit::RateLimiter;
use crate::link::LinkTable;
use crate::metrics::Metrics;
use crate::pipeline::ring::RowQueue;
use crate::pipeline::wal::Wal;
use crate::pipeline::{Ring, SpillStatus};
use crate::stats::cache::Cache;
use crate::stats::query::Ask;
use crate::store::redis::Redis;

/// State shared by every request.
pub struct App {
    pub config: Config,
    pub links: LinkTable,
    pub ring: Arc<Ring>,
    /// Fact rows other than clicks (installs, events, conversions), on their way to the
    /// same flusher.
    pub rows: Arc<RowQueue>,
    pub limits: RateLimiter,
    /// Stats answers, per tenant and query, for `stats_cache_ms`.
    pub stats: Cache<Ask, Arc<serde_json::Value>>,
    pub redis: Redis,
    pub ch: ::clickhouse::Client,
    /// Delivery's own view of the stores and settings.
    pub delivery: crate::delivery::Context,
    pub geo: Option<Arc<Geo>>,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: &'static Metrics,
    pub spill: Arc<SpillStatus>,
    /// The write-ahead log, when `write_ahead` is on.
    pub wal: Option<Arc<Wal>>,
    /// The keyed IP hash, for write-ahead records (which never hold a raw IP).
    pub ip_hasher: IpHasher,
    /// Held while the link table reloads, so an older snapshot never replaces a newer one.
    pub(crate) refresh: tokio::sync::Mutex<()>,
}

impl App {
    /// Reloads the link table from Redis when its version moved. Serialized, so an older
    /// snapshot never replaces a newer one.
    pub async fn refresh_links(&self) {
        let _guard = self.refresh.lock().await;
        if let Err(error) = self.reload_links().await {
            self.metrics.link_refresh_errors.increment(1);
            warn!(%error, "link table refresh failed; serving the previous table");
        }
    }

    pub(crate) async fn reload_links(&self) -> Result<(), crate::store::redis::RedisError> {
        let (version, links) = self.redis.all_links().await?;
        self.links.replace(version, links);
        self.metrics.link_table_size.set(self.links.len() as f64);
        Ok(())
    }

    pub(crate) async fn refresh_if_changed(&self) -> Result<(), crate::store::redis::RedisError> {
        let version = self.redis.links_version().await?;
        if Some(version) != self.links.version() {
            self.refresh_links().await;
        }
        Ok(())
    }

    /// Retention's view of the stores and settings.
    pub fn retention(&self) -> crate::retention::Context {
        crate::retention::Context {
            ch: self.ch.clone(),
            redis: self.redis.clone(),
            interval_ms: self.config.retention_interval_ms,
            stats_retention_days: self.config.stats_retention_days,
        }
    }

    /// The install use case's view of the stores.
    pub fn attribution(&self) -> crate::attribution::attribute::Context<'_> {
        crate::attribution::attribute::Context {
            redis: &self.redis,
            ch: &self.ch,
            links: &self.links,
            rows: &self.rows,
            delivery: &self.delivery,
            metrics: self.metrics,
        }
    }

    /// The ingest use case's view of the stores.
    pub fn ingest(&self) -> crate::conversions::ingest::Context<'_> {
        crate::conversions::ingest::Context {
            redis: &self.redis,
            rows: &self.rows,
            delivery: &self.delivery,
            metrics: self.metrics,
        }
    }
}
