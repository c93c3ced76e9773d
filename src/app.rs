//! The state every request shares (`App`): settings, the link table, the pipeline's queues,
//! the stores, caches and metrics. `server.rs` builds it and starts what runs beside it; each
//! use case borrows only its own context from it.

use std::sync::Arc;

use ipnet::IpNet;

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
    pub stats_cache: Cache<Ask, Arc<serde_json::Value>>,
    pub breakdown_cache: Cache<crate::stats::breakdown::Breakdown, Arc<serde_json::Value>>,
    pub redis: Redis,
    pub ch: ::clickhouse::Client,
    /// Click-id lookups for installs, batched.
    pub clicks: crate::store::click_lookup::ClickLookup,
    /// Delivery's own view of the stores and settings.
    pub delivery: crate::delivery::Context,
    pub geo: Option<Arc<Geo>>,
    /// The anonymous-address database, when configured (`click::anonymous`).
    pub anonymous: Option<Arc<crate::click::anonymous::AnonymousIps>>,
    /// Apple's keys for postback signatures.
    pub apple_keys: crate::skan::keys::AppleKeys,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: &'static Metrics,
    pub spill: Arc<SpillStatus>,
    /// The write-ahead log, when `write_ahead` is on.
    pub wal: Option<Arc<Wal>>,
    /// The keyed IP hash, for write-ahead records (which never hold a raw IP).
    pub ip_hasher: IpHasher,
}

impl App {
    /// The link use cases' view of the stores.
    pub fn catalog(&self) -> crate::link::catalog::Context<'_> {
        crate::link::catalog::Context {
            redis: &self.redis,
            table: Some(&self.links),
            limit: self.config.limits.links,
            feed_length: self.config.link_feed_length,
        }
    }

    /// Retention's view of the stores and settings.
    pub fn retention(&self) -> crate::retention::Context {
        crate::retention::Context {
            ch: self.ch.clone(),
            redis: self.redis.clone(),
            interval_ms: self.config.retention_interval_ms,
            stats_retention_days: self.config.stats_retention_days,
            cluster: self.config.clickhouse.cluster.clone(),
            database: self.config.clickhouse.database.clone(),
        }
    }

    /// The install use case's view of the stores.
    pub fn attribution(&self) -> crate::attribution::attribute::Context<'_> {
        crate::attribution::attribute::Context {
            redis: &self.redis,
            clicks: &self.clicks,
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

    /// The postback use cases' view of the stores.
    pub fn skan(&self) -> crate::skan::receive::Context<'_> {
        crate::skan::receive::Context {
            ingest: self.ingest(),
            keys: &self.apple_keys,
        }
    }

    /// The stats use case's view of the stores.
    pub fn stats(&self) -> crate::stats::answers::Context<'_> {
        crate::stats::answers::Context {
            ch: &self.ch,
            cache: &self.stats_cache,
            breakdowns: &self.breakdown_cache,
            metrics: self.metrics,
        }
    }
}
