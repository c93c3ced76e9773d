//! Redis: the connections, every key name (here and nowhere else), and the typed operations,
//! one file per concern: `tenants` (tenants, API keys, settings), `links`, `match_state`
//! (the flip, remembered attributions, user bindings), `idempotency`, `sources` (webhook
//! sources), `skan` (apps and SKAdNetwork campaign maps) and `delivery` (partners, webhooks, logs, reports, the job queue). Tenant-owned
//! keys are hash-tagged `{t:<id>}` so that every script that touches one tenant stays in one
//! Redis Cluster slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Value};

use crate::attribution::AttributionConfig;
use crate::delivery::job::{Owner, Webhook};
use crate::delivery::partner::Partner;

mod delivery;
mod idempotency;
mod links;
mod match_state;
mod skan;
mod sources;
mod tenants;

pub use delivery::{JobRef, DELIVERY_LOG, DELIVERY_SHARDS};
pub use idempotency::IdClaim;
pub use links::{valid_cursor, FeedEntry, FeedHead, FeedRead, Put};
pub use match_state::{Binding, Claim, Flip, FlipRequest, INSTALL_MEMORY_MS};
pub use sources::WebhookOwner;
pub use tenants::{KeyRecord, NewTenant, Revocation};

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt record at {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

impl From<RedisError> for crate::error::Error {
    fn from(e: RedisError) -> crate::error::Error {
        crate::error::Unavailable::Redis(e.to_string()).into()
    }
}

/// One Redis server, or a Redis Cluster (several seed URLs): the cluster connection follows
/// `MOVED`/`ASK` redirections and failovers itself. Every command and script here keeps its
/// keys in one slot (the hash tags above); pipelines that span slots go through
/// `query_pipeline`.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// A connection to `url`, or to the Redis Cluster whose seed nodes `url` lists
    /// comma-separated.
    pub async fn open(url: &str) -> Result<Conn, RedisError> {
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        if nodes.len() > 1 {
            // A failover takes the cluster a few seconds (node timeout + election): retries
            // span about that, and each command gives up after 2 s.
            let client = ClusterClient::builder(nodes)
                .retries(6)
                .min_retry_wait(50)
                .max_retry_wait(1_000)
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(2))
                .build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let client = redis::Client::open(url)?;
        // Fail fast while Redis is down (callers answer 503 and retry later) instead of
        // holding requests through a long reconnect schedule.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        Ok(Conn::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    prefix: String,
    flip: redis::Script,
    idempotency: redis::Script,
    /// API key lookups, for `KEY_CACHE_TTL`: a key revoked on another node keeps working
    /// that long there.
    keys: Arc<TtlCache<Option<KeyRecord>>>,
    /// When this node last wrote each key's `last_used_at` (by key hash).
    key_uses: Arc<TtlCache<()>>,
    key_revoke: redis::Script,
    bind_user: redis::Script,
    /// Attribution settings, for `CONFIG_CACHE_TTL`: a change made on another node takes
    /// that long to apply here.
    configs: Arc<TtlCache<AttributionConfig>>,
    delivery_promote: redis::Script,
    link_put: redis::Script,
    /// Partners and webhooks as deliveries fan out (a change applies within the TTL).
    partners: Arc<TtlCache<Option<Partner>>>,
    webhooks: Arc<TtlCache<Vec<Webhook>>>,
    /// Tenants whose default webhook source is known to exist.
    provisioned: Arc<parking_lot::Mutex<ahash::AHashSet<String>>>,
}

/// Under a second, so a revocation is in force on every node within one (SPEC, Keys).
const KEY_CACHE_TTL: Duration = Duration::from_millis(750);

/// A key's `last_used_at` is written at most this often per node.
const KEY_USE_INTERVAL: Duration = Duration::from_secs(60);

const CONFIG_CACHE_TTL: Duration = Duration::from_secs(2);

/// A small read-through cache for per-request lookups on the client endpoints' hot path.
struct TtlCache<V> {
    map: parking_lot::Mutex<ahash::AHashMap<String, (V, Instant)>>,
    ttl: Duration,
}

impl<V: Clone> TtlCache<V> {
    fn new(ttl: Duration) -> TtlCache<V> {
        TtlCache {
            map: parking_lot::Mutex::new(ahash::AHashMap::new()),
            ttl,
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let map = self.map.lock();
        map.get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn remove(&self, key: &str) {
        self.map.lock().remove(key);
    }

    fn put(&self, key: String, value: V) {
        let mut map = self.map.lock();
        if map.len() >= 100_000 {
            map.clear();
        }
        map.insert(key, (value, Instant::now()));
    }
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// `pipe`'s commands grouped by their key's slot (a command's first argument is its key in
/// every pipeline here), in order, each group atomic if `pipe` is.
fn by_slot(pipe: &Pipeline) -> Vec<Pipeline> {
    let mut parts: Vec<Pipeline> = Vec::new();
    let mut at: ahash::AHashMap<Slot, usize> = ahash::AHashMap::new();
    for cmd in pipe.cmd_iter() {
        let key = match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(key)) => key,
            _ => &[][..],
        };
        let part = *at.entry(Slot::for_key(key)).or_insert_with(|| {
            let mut part = redis::pipe();
            if pipe.is_transaction() {
                part.atomic();
            }
            parts.push(part);
            parts.len() - 1
        });
        parts[part].add_command(cmd.clone()).ignore();
    }
    parts
}

impl Redis {
    /// Connects to `url`, or to the Redis Cluster whose seed nodes `url` lists comma-separated
    /// (see `Conn::open`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis, RedisError> {
        let conn = Conn::open(url).await?;
        let flip = redis::Script::new(include_str!("../../../redis/flip.lua"));
        Ok(Redis {
            conn,
            prefix: prefix.to_string(),
            flip,
            idempotency: redis::Script::new(include_str!("../../../redis/idempotency.lua")),
            keys: Arc::new(TtlCache::new(KEY_CACHE_TTL)),
            key_uses: Arc::new(TtlCache::new(KEY_USE_INTERVAL)),
            key_revoke: redis::Script::new(include_str!("../../../redis/key_revoke.lua")),
            bind_user: redis::Script::new(include_str!("../../../redis/bind_user.lua")),
            configs: Arc::new(TtlCache::new(CONFIG_CACHE_TTL)),
            provisioned: Arc::default(),
            delivery_promote: redis::Script::new(include_str!(
                "../../../redis/delivery_promote.lua"
            )),
            link_put: redis::Script::new(include_str!("../../../redis/link_put.lua")),
            partners: Arc::new(TtlCache::new(CONFIG_CACHE_TTL)),
            webhooks: Arc::new(TtlCache::new(CONFIG_CACHE_TTL)),
        })
    }

    fn catalog_key(&self) -> String {
        format!("{}:{{links}}:all", self.prefix)
    }

    fn catalog_version_key(&self) -> String {
        format!("{}:{{links}}:version", self.prefix)
    }

    fn link_feed_key(&self) -> String {
        format!("{}:{{links}}:feed", self.prefix)
    }

    /// Capped links' human clicks: a hash of link id → count, all time, and one per UTC day.
    /// One slot for all: a node sends its counts in one round trip a tick.
    fn capped_clicks_key(&self) -> String {
        format!("{}:{{caps}}:total", self.prefix)
    }

    fn capped_clicks_day_key(&self, day: u32) -> String {
        format!("{}:{{caps}}:day:{day}", self.prefix)
    }

    fn tenant_links_key(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:links:index", self.prefix)
    }

    fn tenant_key(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:tenant", self.prefix)
    }

    fn config_key(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:config", self.prefix)
    }

    fn tenant_tag(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}", self.prefix)
    }

    pub fn fingerprint_key(&self, tenant: &str, platform: &str, ip_hash: u64) -> String {
        format!("{}:fp:{platform}:{ip_hash}", self.tenant_tag(tenant))
    }

    /// The set of `namespace`'s (`event`, `conversion`) ids taken in `generation`.
    fn idempotency_set_key(&self, tenant: &str, namespace: &str, generation: u64) -> String {
        format!("{}:idem:{namespace}:g{generation}", self.tenant_tag(tenant))
    }

    /// The ids a request took, kept until its rows are durable.
    fn request_record_key(&self, tenant: &str, request: &str) -> String {
        format!("{}:idem:request:{request}", self.tenant_tag(tenant))
    }

    /// An install's remembered attribution (`InstallAttribution` JSON).
    pub fn attribution_key(&self, tenant: &str, install_id: &str) -> String {
        format!("{}:attr:{install_id}", self.tenant_tag(tenant))
    }

    /// The install a user is bound to.
    pub fn user_key(&self, tenant: &str, user_id: &str) -> String {
        format!("{}:user:{user_id}", self.tenant_tag(tenant))
    }

    fn rebinds_key(&self, tenant: &str) -> String {
        format!("{}:rebinds", self.tenant_tag(tenant))
    }

    fn inflight_key(&self, tenant: &str) -> String {
        format!("{}:idem:inflight", self.tenant_tag(tenant))
    }

    fn sources_key(&self, tenant: &str) -> String {
        format!("{}:sources", self.tenant_tag(tenant))
    }

    fn default_source_key(&self, tenant: &str) -> String {
        format!("{}:sources:default", self.tenant_tag(tenant))
    }

    /// A webhook URL's owner, by the SHA-256 of its token (`h:`: never confusable with a
    /// token, which has the same length).
    fn webhook_key(&self, token_hash: &str) -> String {
        format!("{}:webhook:h:{token_hash}", self.prefix)
    }

    /// Where an owner was kept before tokens were hashed: by the token itself.
    fn legacy_webhook_key(&self, token: &str) -> String {
        format!("{}:webhook:{token}", self.prefix)
    }

    fn partners_key(&self, tenant: &str) -> String {
        format!("{}:partners", self.tenant_tag(tenant))
    }

    fn webhooks_key(&self, tenant: &str) -> String {
        format!("{}:webhooks", self.tenant_tag(tenant))
    }

    fn delivery_log_key(&self, tenant: &str, owner: &Owner) -> String {
        let tag = self.tenant_tag(tenant);
        match owner {
            Owner::Postback { partner_id } => format!("{tag}:partner:{partner_id}:deliveries"),
            Owner::Webhook { webhook_id } => format!("{tag}:webhook:{webhook_id}:deliveries"),
            Owner::Report { report_id } => format!("{tag}:report:{report_id}:deliveries"),
        }
    }

    /// A delivery queue shard's keys share one hash tag, so the moves between them stay in
    /// one Redis Cluster slot; shard 0 keeps the tag of the single queue there was before.
    fn delivery_tag(&self, shard: u16) -> String {
        match shard {
            0 => format!("{}:{{delivery}}", self.prefix),
            n => format!("{}:{{delivery:{n}}}", self.prefix),
        }
    }

    fn queue_key(&self, shard: u16) -> String {
        format!("{}:queue", self.delivery_tag(shard))
    }

    fn retry_key(&self, shard: u16) -> String {
        format!("{}:retry", self.delivery_tag(shard))
    }

    fn dead_key(&self, shard: u16) -> String {
        format!("{}:dead", self.delivery_tag(shard))
    }

    fn api_key_key(&self, hash: &str) -> String {
        format!("{}:key:{hash}", self.prefix)
    }

    fn tenant_keys_key(&self, tenant: &str) -> String {
        format!("{}:keys", self.tenant_tag(tenant))
    }

    fn key_uses_key(&self, tenant: &str) -> String {
        format!("{}:keys:used", self.tenant_tag(tenant))
    }

    fn apps_key(&self, tenant: &str) -> String {
        format!("{}:apps", self.tenant_tag(tenant))
    }

    /// Who registered an App Store id: across tenants, as a postback names only its app.
    fn app_owner_key(&self, app_store_id: u64) -> String {
        format!("{}:app_store:{app_store_id}", self.prefix)
    }

    fn skan_campaigns_key(&self, tenant: &str) -> String {
        format!("{}:skan:campaigns", self.tenant_tag(tenant))
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        Ok(())
    }

    /// The deployment-wide IP hash key: the first node to start generates it.
    pub async fn ip_hash_key(&self) -> Result<String, RedisError> {
        let mut c = self.conn.clone();
        let key = format!("{}:ip_hash_key", self.prefix);
        let _: bool = c.set_nx(&key, random_hex(32)).await?;
        Ok(c.get(&key).await?)
    }

    /// Runs `pipe`, whose keys may be in several slots. On a cluster it runs as one pipeline
    /// per slot, concurrently, each in the order given and atomic if `pipe` is: writes that
    /// span slots are ordered by the callers so that any part of them is harmless alone.
    pub async fn query_pipeline(&self, pipe: &Pipeline) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        if let Conn::Single(_) = c {
            pipe.query_async::<()>(&mut c).await?;
            return Ok(());
        }
        let parts = by_slot(pipe).into_iter().map(|part| {
            let mut c = self.conn.clone();
            async move { part.query_async::<()>(&mut c).await }
        });
        for result in futures_util::future::join_all(parts).await {
            result?;
        }
        Ok(())
    }

    /// A deployment-wide lock on `name` for `hold` (no release: it lapses), so periodic jobs
    /// run on one node per interval.
    pub async fn take_lock(&self, name: &str, hold: Duration) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(format!("{}:lock:{name}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis().max(1) as u64)
            .query_async(&mut c)
            .await?;
        Ok(taken.is_some())
    }

    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<String>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        Ok(redis::cmd("MGET").arg(keys).query_async(&mut c).await?)
    }

    /// Every value of a hash of JSON records (sources, partners, webhooks), decoded.
    async fn hash_values<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Vec<T>, RedisError> {
        let mut c = self.conn.clone();
        let raws: Vec<(String, String)> = c.hgetall(key).await?;
        raws.iter().map(|(_, r)| Self::decode(key, r)).collect()
    }

    fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &str) -> Result<T, RedisError> {
        serde_json::from_str(raw).map_err(|source| RedisError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    fn report_key(&self, tenant: &str, id: &str) -> String {
        format!("{}:report:{id}", self.tenant_tag(tenant))
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn a_pipeline_splits_by_slot_keeping_order_and_atomicity() {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set("p:{t:a}:x", 1)
            .set("p:webhook:h:1", 2)
            .del("p:{t:a}:y")
            .set("p:{t:b}:x", 3);
        let parts = by_slot(&pipe);
        let keys: Vec<Vec<String>> = parts
            .iter()
            .map(|part| {
                part.cmd_iter()
                    .map(|cmd| match cmd.args_iter().nth(1) {
                        Some(redis::Arg::Simple(k)) => String::from_utf8_lossy(k).into_owned(),
                        _ => String::new(),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                vec!["p:{t:a}:x".to_string(), "p:{t:a}:y".to_string()],
                vec!["p:webhook:h:1".to_string()],
                vec!["p:{t:b}:x".to_string()],
            ]
        );
        assert!(parts.iter().all(|part| part.is_transaction()));
        let mut plain = redis::pipe();
        plain.set("a", 1).set("b", 2);
        assert!(by_slot(&plain).iter().all(|part| !part.is_transaction()));
    }
}
