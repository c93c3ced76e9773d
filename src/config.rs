//! One configuration tree: serde defaults, an optional TOML file, then `SLUICE_*` environment
//! overrides, then `validate()`. The env names are an interface; they are constants here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub const ENV_LISTEN: &str = "SLUICE_LISTEN";
pub const ENV_CLICKHOUSE_URL: &str = "SLUICE_CLICKHOUSE_URL";
pub const ENV_CLICKHOUSE_DATABASE: &str = "SLUICE_CLICKHOUSE_DATABASE";
pub const ENV_CLICKHOUSE_USER: &str = "SLUICE_CLICKHOUSE_USER";
pub const ENV_CLICKHOUSE_PASSWORD: &str = "SLUICE_CLICKHOUSE_PASSWORD";
pub const ENV_CLICKHOUSE_CLUSTER: &str = "SLUICE_CLICKHOUSE_CLUSTER";
pub const ENV_CLICKHOUSE_COMPRESSION: &str = "SLUICE_CLICKHOUSE_COMPRESSION";
pub const ENV_REDIS_URL: &str = "SLUICE_REDIS_URL";
pub const ENV_REDIS_PREFIX: &str = "SLUICE_REDIS_PREFIX";
pub const ENV_GEOIP_PATH: &str = "SLUICE_GEOIP_PATH";
pub const ENV_ANONYMOUS_IP_PATH: &str = "SLUICE_ANONYMOUS_IP_PATH";
pub const ENV_APPLE_KEYS_PATH: &str = "SLUICE_APPLE_KEYS_PATH";
pub const ENV_TRUSTED_PROXIES: &str = "SLUICE_TRUSTED_PROXIES";
pub const ENV_DATA_DIR: &str = "SLUICE_DATA_DIR";
pub const ENV_IP_HASH_KEY: &str = "SLUICE_IP_HASH_KEY";
pub const ENV_RING_CAPACITY: &str = "SLUICE_RING_CAPACITY";
pub const ENV_FLUSH_MAX_ROWS: &str = "SLUICE_FLUSH_MAX_ROWS";
pub const ENV_FLUSH_MAX_BYTES: &str = "SLUICE_FLUSH_MAX_BYTES";
pub const ENV_FLUSH_PERIOD_MS: &str = "SLUICE_FLUSH_PERIOD_MS";
pub const ENV_LINK_REFRESH_MS: &str = "SLUICE_LINK_REFRESH_MS";
pub const ENV_LINK_FEED_LENGTH: &str = "SLUICE_LINK_FEED_LENGTH";
pub const ENV_SHUTDOWN_TIMEOUT_MS: &str = "SLUICE_SHUTDOWN_TIMEOUT_MS";
pub const ENV_HTTP_THREADS: &str = "SLUICE_HTTP_THREADS";
pub const ENV_HTTP_BATCH_SCHEDULING: &str = "SLUICE_HTTP_BATCH_SCHEDULING";
pub const ENV_SPILL_MAX_BYTES: &str = "SLUICE_SPILL_MAX_BYTES";
pub const ENV_WRITE_AHEAD: &str = "SLUICE_WRITE_AHEAD";
pub const ENV_ALLOW_PRIVATE_TARGETS: &str = "SLUICE_ALLOW_PRIVATE_TARGETS";
pub const ENV_DELIVERY_TIMEOUT_MS: &str = "SLUICE_DELIVERY_TIMEOUT_MS";
pub const ENV_DELIVERY_PER_HOST: &str = "SLUICE_DELIVERY_PER_HOST";
pub const ENV_DELIVERY_RETRY_BASE_MS: &str = "SLUICE_DELIVERY_RETRY_BASE_MS";
pub const ENV_DELIVERY_MAX_AGE_MS: &str = "SLUICE_DELIVERY_MAX_AGE_MS";
pub const ENV_RETENTION_INTERVAL_MS: &str = "SLUICE_RETENTION_INTERVAL_MS";
pub const ENV_STATS_RETENTION_DAYS: &str = "SLUICE_STATS_RETENTION_DAYS";
pub const ENV_STATS_CACHE_MS: &str = "SLUICE_STATS_CACHE_MS";
pub const ENV_PUBLIC_URL: &str = "SLUICE_PUBLIC_URL";
pub const ENV_RATE_LIMIT_TENANT: &str = "SLUICE_RATE_LIMIT_TENANT";
pub const ENV_RATE_LIMIT_KEY: &str = "SLUICE_RATE_LIMIT_KEY";
pub const ENV_RATE_LIMIT_BURST_SECONDS: &str = "SLUICE_RATE_LIMIT_BURST_SECONDS";
pub const ENV_LIMIT_LINKS: &str = "SLUICE_LIMIT_LINKS";
pub const ENV_LIMIT_SOURCES: &str = "SLUICE_LIMIT_SOURCES";
pub const ENV_LIMIT_PARTNERS: &str = "SLUICE_LIMIT_PARTNERS";
pub const ENV_LIMIT_WEBHOOKS: &str = "SLUICE_LIMIT_WEBHOOKS";
pub const ENV_LIMIT_KEYS: &str = "SLUICE_LIMIT_KEYS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value for {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub geoip_path: Option<PathBuf>,
    /// The anonymous-address database of the `anonymous_ip` fraud rule (`click::anonymous`).
    pub anonymous_ip_path: Option<PathBuf>,
    /// Apple's postback keys rotated since this release (`skan::keys`); none: the published.
    pub apple_keys_path: Option<PathBuf>,
    /// CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Key for the keyed IP hash. When empty, one is generated once and shared through Redis
    /// so every node hashes the same IP to the same value.
    pub ip_hash_key: String,
    pub clickhouse: ClickHouseConfig,
    pub redis: RedisConfig,
    pub pipeline: PipelineConfig,
    /// How often the in-process link table checks Redis for changes.
    pub link_refresh_ms: u64,
    /// Entries the link change feed keeps: a node that falls further behind than this
    /// (offline, or slower than the changes) loads the whole catalog again.
    pub link_feed_length: usize,
    /// Upper bound on draining at shutdown.
    pub shutdown_timeout_ms: u64,
    /// HTTP serving threads (one single-threaded runtime and one SO_REUSEPORT socket each);
    /// 0 = one per core.
    pub http_threads: usize,
    /// Serving threads under `SCHED_BATCH` (see `scheduling::batch_policy`).
    pub http_batch_scheduling: bool,
    pub rate_limit: RateLimitConfig,
    /// The origin clients reach Sluice at (`https://go.example.com`), for the URLs it hands
    /// out (webhook sources); empty = the request's `Host`.
    pub public_url: String,
    /// How long a stats answer is reused per tenant and query (0 = not cached).
    pub stats_cache_ms: u64,
    /// How often raw rows past their tenant's retention are dropped (0 = never).
    pub retention_interval_ms: u64,
    /// Daily stats aggregates older than this are dropped (0 = kept for ever).
    pub stats_retention_days: u32,
    pub delivery: DeliveryConfig,
    pub limits: TenantLimits,
    /// Tests only, set in code (never from a file or the environment): `/v1/test/panic` and
    /// the link code `__panic` panic on purpose, to prove a panic costs one request.
    #[serde(skip)]
    pub panic_route: bool,
}

/// How many of each entity one tenant may have (live ones; deleted and revoked ones do not
/// count). Generous: they stop a runaway script, not a real catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    pub links: usize,
    pub sources: usize,
    pub partners: usize,
    pub webhooks: usize,
    /// Active API keys, secret and publishable together.
    pub keys: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            links: 10_000_000,
            sources: 1_000,
            partners: 1_000,
            webhooks: 100,
            keys: 100,
        }
    }
}

/// Outbound deliveries (postbacks, webhooks, reports).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Allow targets on private, loopback and link-local addresses (tests, private networks).
    pub allow_private_targets: bool,
    /// Per attempt.
    pub timeout_ms: u64,
    /// Attempts in flight per destination host and node: one slow receiver cannot take
    /// every slot.
    pub per_host: usize,
    /// First retry delay; doubles per attempt (with jitter), at most an hour.
    pub retry_base_ms: u64,
    /// Retried for this long after the delivery was created, then dead-lettered.
    pub max_age_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            allow_private_targets: false,
            timeout_ms: 10_000,
            per_host: 8,
            retry_base_ms: 1_000,
            max_age_ms: 86_400_000,
        }
    }
}

/// API rate limits (token buckets, enforced by each node on its own: N nodes admit up to N
/// times these). The redirect is never limited.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second per tenant, all its keys and webhook sources together.
    pub tenant_per_second: f64,
    /// Requests per second per API key or webhook source.
    pub key_per_second: f64,
    /// Bucket size, in seconds of the rate: how long a burst may run at any speed.
    pub burst_seconds: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // Generous: far above what one node's API can serve, so only a runaway client meets
        // them; operators lower them per deployment.
        RateLimitConfig {
            tenant_per_second: 50_000.0,
            key_per_second: 50_000.0,
            burst_seconds: 2.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// When set, migrations run `ON CLUSTER <name>`.
    pub cluster: String,
    /// How inserts travel: LZ4 pays across a network, on loopback it is pure CPU on both ends.
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4 unless the URL's host is a loopback address or `localhost`.
    Auto,
    Lz4,
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Compression::Auto),
            "lz4" => Ok(Compression::Lz4),
            "none" => Ok(Compression::None),
            _ => Err("expected auto, lz4 or none".into()),
        }
    }
}

impl ClickHouseConfig {
    /// Whether inserts are LZ4-compressed (`auto` resolved against the URL's host).
    pub fn lz4(&self) -> bool {
        match self.compression {
            Compression::Lz4 => true,
            Compression::None => false,
            Compression::Auto => {
                let url = url::Url::parse(&self.url).ok();
                let loopback = match url.as_ref().and_then(|u| u.host()) {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                !loopback
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// Every key Sluice writes starts with this prefix (lets several deployments or test
    /// runs share one Redis).
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub ring_capacity: usize,
    pub flush_max_rows: usize,
    pub flush_max_bytes: usize,
    pub flush_period_ms: u64,
    /// Bound on the disk spill (`<data_dir>/spill`); readiness warns past 80%.
    pub spill_max_bytes: u64,
    /// Append every click to the local write-ahead log (`<data_dir>/wal`, group commit)
    /// before answering its 302, so that even SIGKILL loses nothing.
    pub write_ahead: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            data_dir: PathBuf::from("var/sluice"),
            geoip_path: None,
            anonymous_ip_path: None,
            apple_keys_path: None,
            trusted_proxies: Vec::new(),
            ip_hash_key: String::new(),
            clickhouse: ClickHouseConfig::default(),
            redis: RedisConfig::default(),
            pipeline: PipelineConfig::default(),
            link_refresh_ms: 250,
            link_feed_length: 1_000_000,
            shutdown_timeout_ms: 30_000,
            http_threads: 0,
            http_batch_scheduling: true,
            rate_limit: RateLimitConfig::default(),
            public_url: String::new(),
            stats_cache_ms: 1_000,
            retention_interval_ms: 3_600_000,
            stats_retention_days: 0,
            delivery: DeliveryConfig::default(),
            limits: TenantLimits::default(),
            panic_route: false,
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:18123".into(),
            database: "sluice".into(),
            user: "default".into(),
            password: String::new(),
            cluster: String::new(),
            compression: Compression::Auto,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:16379".into(),
            prefix: "sluice".into(),
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        // ~1 insert per second under load keeps ClickHouse far from its part limits.
        PipelineConfig {
            ring_capacity: 262_144,
            flush_max_rows: 100_000,
            flush_max_bytes: 64 << 20,
            flush_period_ms: 1_000,
            spill_max_bytes: 8 << 30,
            write_ahead: false,
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then the environment, then validation.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.into(),
                    source,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        }
        if let Some(v) = get(ENV_LISTEN) {
            self.listen = parse(ENV_LISTEN, &v)?;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_URL) {
            self.clickhouse.url = v;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_DATABASE) {
            self.clickhouse.database = v;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_USER) {
            self.clickhouse.user = v;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_PASSWORD) {
            self.clickhouse.password = v;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_CLUSTER) {
            self.clickhouse.cluster = v;
        }
        if let Some(v) = get(ENV_CLICKHOUSE_COMPRESSION) {
            self.clickhouse.compression = parse(ENV_CLICKHOUSE_COMPRESSION, &v)?;
        }
        if let Some(v) = get(ENV_REDIS_URL) {
            self.redis.url = v;
        }
        if let Some(v) = get(ENV_REDIS_PREFIX) {
            self.redis.prefix = v;
        }
        if let Some(v) = get(ENV_GEOIP_PATH) {
            self.geoip_path = if v.is_empty() { None } else { Some(v.into()) };
        }
        if let Some(v) = get(ENV_ANONYMOUS_IP_PATH) {
            self.anonymous_ip_path = if v.is_empty() { None } else { Some(v.into()) };
        }
        if let Some(v) = get(ENV_APPLE_KEYS_PATH) {
            self.apple_keys_path = if v.is_empty() { None } else { Some(v.into()) };
        }
        if let Some(v) = get(ENV_TRUSTED_PROXIES) {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    parse_cidr(s).map_err(|message| ConfigError::Env {
                        name: ENV_TRUSTED_PROXIES,
                        message,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get(ENV_DATA_DIR) {
            self.data_dir = v.into();
        }
        if let Some(v) = get(ENV_IP_HASH_KEY) {
            self.ip_hash_key = v;
        }
        if let Some(v) = get(ENV_RING_CAPACITY) {
            self.pipeline.ring_capacity = parse(ENV_RING_CAPACITY, &v)?;
        }
        if let Some(v) = get(ENV_FLUSH_MAX_ROWS) {
            self.pipeline.flush_max_rows = parse(ENV_FLUSH_MAX_ROWS, &v)?;
        }
        if let Some(v) = get(ENV_FLUSH_MAX_BYTES) {
            self.pipeline.flush_max_bytes = parse(ENV_FLUSH_MAX_BYTES, &v)?;
        }
        if let Some(v) = get(ENV_FLUSH_PERIOD_MS) {
            self.pipeline.flush_period_ms = parse(ENV_FLUSH_PERIOD_MS, &v)?;
        }
        if let Some(v) = get(ENV_SPILL_MAX_BYTES) {
            self.pipeline.spill_max_bytes = parse(ENV_SPILL_MAX_BYTES, &v)?;
        }
        if let Some(v) = get(ENV_WRITE_AHEAD) {
            self.pipeline.write_ahead = parse_bool(ENV_WRITE_AHEAD, &v)?;
        }
        if let Some(v) = get(ENV_LINK_REFRESH_MS) {
            self.link_refresh_ms = parse(ENV_LINK_REFRESH_MS, &v)?;
        }
        if let Some(v) = get(ENV_LINK_FEED_LENGTH) {
            self.link_feed_length = parse(ENV_LINK_FEED_LENGTH, &v)?;
        }
        if let Some(v) = get(ENV_HTTP_THREADS) {
            self.http_threads = parse(ENV_HTTP_THREADS, &v)?;
        }
        if let Some(v) = get(ENV_HTTP_BATCH_SCHEDULING) {
            self.http_batch_scheduling = parse_bool(ENV_HTTP_BATCH_SCHEDULING, &v)?;
        }
        if let Some(v) = get(ENV_ALLOW_PRIVATE_TARGETS) {
            self.delivery.allow_private_targets = parse_bool(ENV_ALLOW_PRIVATE_TARGETS, &v)?;
        }
        if let Some(v) = get(ENV_DELIVERY_TIMEOUT_MS) {
            self.delivery.timeout_ms = parse(ENV_DELIVERY_TIMEOUT_MS, &v)?;
        }
        if let Some(v) = get(ENV_DELIVERY_PER_HOST) {
            self.delivery.per_host = parse(ENV_DELIVERY_PER_HOST, &v)?;
        }
        if let Some(v) = get(ENV_DELIVERY_RETRY_BASE_MS) {
            self.delivery.retry_base_ms = parse(ENV_DELIVERY_RETRY_BASE_MS, &v)?;
        }
        if let Some(v) = get(ENV_DELIVERY_MAX_AGE_MS) {
            self.delivery.max_age_ms = parse(ENV_DELIVERY_MAX_AGE_MS, &v)?;
        }
        if let Some(v) = get(ENV_RETENTION_INTERVAL_MS) {
            self.retention_interval_ms = parse(ENV_RETENTION_INTERVAL_MS, &v)?;
        }
        if let Some(v) = get(ENV_STATS_RETENTION_DAYS) {
            self.stats_retention_days = parse(ENV_STATS_RETENTION_DAYS, &v)?;
        }
        if let Some(v) = get(ENV_STATS_CACHE_MS) {
            self.stats_cache_ms = parse(ENV_STATS_CACHE_MS, &v)?;
        }
        if let Some(v) = get(ENV_PUBLIC_URL) {
            self.public_url = v;
        }
        if let Some(v) = get(ENV_RATE_LIMIT_TENANT) {
            self.rate_limit.tenant_per_second = parse(ENV_RATE_LIMIT_TENANT, &v)?;
        }
        if let Some(v) = get(ENV_RATE_LIMIT_KEY) {
            self.rate_limit.key_per_second = parse(ENV_RATE_LIMIT_KEY, &v)?;
        }
        if let Some(v) = get(ENV_RATE_LIMIT_BURST_SECONDS) {
            self.rate_limit.burst_seconds = parse(ENV_RATE_LIMIT_BURST_SECONDS, &v)?;
        }
        for (name, limit) in [
            (ENV_LIMIT_LINKS, &mut self.limits.links),
            (ENV_LIMIT_SOURCES, &mut self.limits.sources),
            (ENV_LIMIT_PARTNERS, &mut self.limits.partners),
            (ENV_LIMIT_WEBHOOKS, &mut self.limits.webhooks),
            (ENV_LIMIT_KEYS, &mut self.limits.keys),
        ] {
            if let Some(v) = get(name) {
                *limit = parse(name, &v)?;
            }
        }
        if let Some(v) = get(ENV_SHUTDOWN_TIMEOUT_MS) {
            self.shutdown_timeout_ms = parse(ENV_SHUTDOWN_TIMEOUT_MS, &v)?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(self.clickhouse.url.starts_with("http://")
            || self.clickhouse.url.starts_with("https://"))
        {
            return bad("clickhouse.url must be an http(s) URL");
        }
        if self.clickhouse.database.is_empty()
            || !self
                .clickhouse
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad("clickhouse.database must be non-empty [A-Za-z0-9_]");
        }
        // Several comma-separated URLs name a Redis Cluster's seed nodes.
        if !self
            .redis
            .url
            .split(',')
            .map(str::trim)
            .all(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            return bad("redis.url must be a redis:// URL, or several comma-separated");
        }
        if self.redis.prefix.is_empty() || self.redis.prefix.contains(['{', '}']) {
            return bad("redis.prefix must be non-empty and contain no braces");
        }
        let p = &self.pipeline;
        if p.ring_capacity < 1024 {
            return bad("pipeline.ring_capacity must be at least 1024");
        }
        if p.flush_max_rows == 0 || p.flush_max_bytes < 4096 || p.flush_period_ms == 0 {
            return bad("pipeline flush limits must be positive (max_bytes at least 4096)");
        }
        if !(self.public_url.is_empty()
            || self.public_url.starts_with("http://")
            || self.public_url.starts_with("https://"))
        {
            return bad("public_url must be an http(s) URL");
        }
        let d = &self.delivery;
        if d.timeout_ms == 0 || d.per_host == 0 || d.retry_base_ms == 0 || d.max_age_ms == 0 {
            return bad("delivery limits must be positive");
        }
        let r = &self.rate_limit;
        if !(r.tenant_per_second > 0.0 && r.key_per_second > 0.0 && r.burst_seconds > 0.0)
            || r.tenant_per_second * r.burst_seconds < 1.0
            || r.key_per_second * r.burst_seconds < 1.0
        {
            return bad("rate limits must be positive and allow at least one request per burst");
        }
        if self.link_feed_length == 0 {
            return bad("link_feed_length must be positive");
        }
        if self.link_refresh_ms == 0 {
            return bad("link_refresh_ms must be positive");
        }
        Ok(())
    }

    pub fn flush_period(&self) -> Duration {
        Duration::from_millis(self.pipeline.flush_period_ms)
    }
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(ConfigError::Env {
            name,
            message: format!("{other:?} is not a boolean"),
        }),
    }
}

/// Accepts `10.0.0.0/8` and a bare address (`10.0.0.1` = a /32 or /128).
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Config::default();
        c.apply_env(|k| map.get(k).cloned())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_valid() {
        let c = with_env(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.clickhouse.database, "sluice");
    }

    #[test]
    fn env_overrides_and_errors() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[(ENV_LISTEN, "0.0.0.0:9000")], true),
            (&[(ENV_LISTEN, "nope")], false),
            (&[(ENV_TRUSTED_PROXIES, "10.0.0.0/8, 127.0.0.1")], true),
            (&[(ENV_TRUSTED_PROXIES, "10.0.0.0/99")], false),
            (&[(ENV_CLICKHOUSE_DATABASE, "bad-name")], false),
            (&[(ENV_CLICKHOUSE_URL, "tcp://x")], false),
            (&[(ENV_FLUSH_MAX_ROWS, "0")], false),
            (&[(ENV_REDIS_PREFIX, "a{b")], false),
            (
                &[(
                    ENV_REDIS_URL,
                    "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
                )],
                true,
            ),
            (
                &[(ENV_REDIS_URL, "redis://10.0.0.1:7000,10.0.0.2:7000")],
                false,
            ),
            (&[(ENV_REDIS_URL, "http://x")], false),
            (&[(ENV_WRITE_AHEAD, "true")], true),
            (&[(ENV_WRITE_AHEAD, "maybe")], false),
            (&[(ENV_HTTP_BATCH_SCHEDULING, "off")], true),
            (&[(ENV_HTTP_BATCH_SCHEDULING, "batch")], false),
            (&[(ENV_CLICKHOUSE_COMPRESSION, "none")], true),
            (&[(ENV_CLICKHOUSE_COMPRESSION, "zstd")], false),
        ];
        for (env, ok) in cases {
            assert_eq!(with_env(env).is_ok(), *ok, "{env:?}");
        }
        let c = with_env(&[(ENV_TRUSTED_PROXIES, "10.0.0.0/8,127.0.0.1")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn inserts_are_compressed_unless_clickhouse_is_local() {
        let cases = [
            ("auto", "http://127.0.0.1:18123", false),
            ("auto", "http://localhost:8123/", false),
            ("auto", "http://LOCALHOST", false),
            ("auto", "http://[::1]:8123", false),
            ("auto", "http://user:pw@127.0.0.2:8123", false),
            ("auto", "http://10.0.0.5:8123", true),
            ("auto", "https://ch.example.com", true),
            ("auto", "http://[2001:db8::1]:8123", true),
            ("lz4", "http://127.0.0.1:18123", true),
            ("none", "https://ch.example.com", false),
        ];
        for (mode, url, lz4) in cases {
            let c = with_env(&[
                (ENV_CLICKHOUSE_COMPRESSION, mode),
                (ENV_CLICKHOUSE_URL, url),
            ])
            .unwrap();
            assert_eq!(c.clickhouse.lz4(), lz4, "{mode} {url}");
        }
    }

    #[test]
    fn file_rejects_unknown_fields() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
        let c: Config = toml::from_str("[pipeline]\nflush_max_rows = 5").unwrap();
        assert_eq!(c.pipeline.flush_max_rows, 5);
        assert_eq!(c.pipeline.flush_period_ms, 1000);
    }
}
