//! Redis: tenants, hashed API keys, links, and the shared IP-hash key. Key names live here
//! and nowhere else. Tenant-owned keys are hash-tagged `{t:<id>}` so that every script that
//! touches one tenant stays in one Redis Cluster slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::attribution::install::InstallAttribution;
use crate::attribution::AttributionConfig;
use crate::click::ClickId;
use crate::conversions::source::{self, Source};
use crate::conversions::IDEMPOTENCY_TTL_MS;
use crate::delivery::partner::Partner;
use crate::delivery::{Job, Owner};
use crate::link::Link;

mod keys;
pub use keys::{KeyRecord, NewTenant, Revocation};

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

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    /// A second connection for the delivery worker's blocking stream reads, which would
    /// otherwise hold up every command queued behind them on the shared one.
    blocking: ConnectionManager,
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

/// How binding a user to an install went (`redis/bind_user.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Bound; `replaced` is the install it was bound to before (a secret key's rebinding).
    Bound {
        replaced: Option<String>,
    },
    /// Refused: bound to another install, and a publishable key may not rebind.
    Taken,
    UnknownInstall,
}

/// How a flip resolved (see `redis/flip.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flip {
    /// A retry: the answer the install got the first time (`None` when it matched nothing).
    Remembered(Option<Claim>),
    /// This install won the click.
    Claimed(Claim),
    /// No claimable click.
    Nothing,
}

/// A claimed click: how it was found (click_id, referrer or fingerprint), its id, and for
/// fingerprint matches the facts stored with the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub how: String,
    pub click: ClickId,
    pub member: Option<String>,
}

impl Claim {
    fn parse(how: &str, payload: &str) -> Option<Claim> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(payload.get(..32)?, &mut id).ok()?;
        let member = payload.contains('|').then(|| payload.to_string());
        Some(Claim {
            how: how.to_string(),
            click: ClickId(id),
            member,
        })
    }
}

/// What a flip is asked.
pub struct FlipRequest<'a> {
    pub tenant: &'a str,
    pub install_id: &'a str,
    /// Explicit candidates in preference order: (click_id | referrer, click id).
    pub explicit: &'a [(&'static str, ClickId)],
    /// (platform, ip hash) of the installing device.
    pub fingerprint: (&'a str, u64),
    /// The install's time (as reported; clicks after it never match).
    pub install_ms: u64,
    /// The current time, for pruning expired fingerprints.
    pub now_ms: u64,
    /// 0 when fingerprinting is off.
    pub window_ms: u64,
    pub lookback_ms: u64,
}

/// How long a retried install gets the same answer.
const ANSWER_TTL_MS: u64 = 30 * 86_400_000;
/// How long an install's attribution is remembered for its events and conversions (and for
/// binding users to it): about 200 bytes per install.
pub const INSTALL_MEMORY_MS: u64 = 400 * 86_400_000;

/// A webhook subscription: where to POST which kinds of facts, signed with `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: String,
}

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

/// Who a webhook token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookOwner {
    pub tenant_id: String,
    pub source_id: String,
}

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

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

impl Redis {
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis, RedisError> {
        let client = redis::Client::open(url)?;
        // Fail fast while Redis is down (callers answer 503 and retry later) instead of
        // holding requests through a long reconnect schedule.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let blocking = ConnectionManager::new_with_config(client, config).await?;
        let flip = redis::Script::new(include_str!("../../../redis/flip.lua"));
        Ok(Redis {
            conn,
            blocking,
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
            partners: Arc::new(TtlCache::new(CONFIG_CACHE_TTL)),
            webhooks: Arc::new(TtlCache::new(CONFIG_CACHE_TTL)),
        })
    }

    fn links_key(&self) -> String {
        format!("{}:links", self.prefix)
    }
    fn links_version_key(&self) -> String {
        format!("{}:links:version", self.prefix)
    }
    fn tenant_links_key(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:links", self.prefix)
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
    /// The delivery keys share one hash tag, so the scripts moving jobs between them stay in
    /// one Redis Cluster slot.
    fn queue_key(&self) -> String {
        format!("{}:{{delivery}}:queue", self.prefix)
    }
    fn retry_key(&self) -> String {
        format!("{}:{{delivery}}:retry", self.prefix)
    }
    fn dead_key(&self) -> String {
        format!("{}:{{delivery}}:dead", self.prefix)
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

    /// The tenant's attribution settings (defaults until first changed).
    pub async fn attribution_config(&self, tenant: &str) -> Result<AttributionConfig, RedisError> {
        if let Some(cached) = self.configs.get(tenant) {
            return Ok(cached);
        }
        let mut c = self.conn.clone();
        let key = self.config_key(tenant);
        let raw: Option<String> = c.get(&key).await?;
        let config: AttributionConfig = raw
            .map(|r| serde_json::from_str(&r).map_err(|source| RedisError::Corrupt { key, source }))
            .transpose()?
            .unwrap_or_default();
        self.configs.put(tenant.to_string(), config.clone());
        Ok(config)
    }

    pub async fn put_attribution_config(
        &self,
        tenant: &str,
        config: &AttributionConfig,
    ) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(config).expect("serializable");
        let _: () = c.set(self.config_key(tenant), json).await?;
        self.configs.put(tenant.to_string(), config.clone());
        Ok(())
    }

    pub async fn query_pipeline(&self, pipe: &redis::Pipeline) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// The atomic flip (`redis/flip.lua`).
    pub async fn flip(&self, r: &FlipRequest<'_>) -> Result<Flip, RedisError> {
        let tag = self.tenant_tag(r.tenant);
        let mut invocation = self.flip.prepare_invoke();
        invocation
            .key(format!("{tag}:install:{}", r.install_id))
            .key(self.fingerprint_key(r.tenant, r.fingerprint.0, r.fingerprint.1))
            .arg(r.install_ms)
            .arg(r.window_ms)
            .arg(r.install_id)
            .arg(format!("{tag}:claim:"))
            .arg(r.lookback_ms.max(1))
            .arg(ANSWER_TTL_MS)
            .arg(r.now_ms);
        for (how, click) in r.explicit {
            invocation.arg(format!("{how}:{}", hex::encode(click.0)));
        }
        let mut c = self.conn.clone();
        let reply: Vec<String> = invocation.invoke_async(&mut c).await?;
        Ok(match reply.as_slice() {
            [tag, how, payload] if tag == "remembered" => {
                Flip::Remembered(Claim::parse(how, payload))
            }
            [tag, how, payload] if tag == "claimed" => {
                Claim::parse(how, payload).map_or(Flip::Nothing, Flip::Claimed)
            }
            _ => Flip::Nothing,
        })
    }

    /// Binds `user_id` to an install the tenant reported; false when no such install is
    /// known.
    /// Binds `user_id` to `install_id` (`redis/bind_user.lua`): the first binding stands
    /// unless `may_rebind` (a secret key), and each rebinding is logged.
    pub async fn bind_user(
        &self,
        tenant: &str,
        install_id: &str,
        user_id: &str,
        may_rebind: bool,
    ) -> Result<Binding, RedisError> {
        let mut c = self.conn.clone();
        let (status, other): (String, String) = self
            .bind_user
            .key(self.attribution_key(tenant, install_id))
            .key(self.user_key(tenant, user_id))
            .key(self.rebinds_key(tenant))
            .arg(install_id)
            .arg(u8::from(may_rebind))
            .arg(user_id)
            .arg(crate::time::now_rfc3339())
            .invoke_async(&mut c)
            .await?;
        Ok(match status.as_str() {
            "bound" => Binding::Bound {
                replaced: (!other.is_empty()).then_some(other),
            },
            "taken" => Binding::Taken,
            _ => Binding::UnknownInstall,
        })
    }

    /// The install a user is bound to.
    pub async fn user_install(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Option<String>, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.get(self.user_key(tenant, user_id)).await?)
    }

    /// Remembers what an install was attributed to (the first answer stands: a retried
    /// install report does not change it).
    pub async fn remember_attribution(
        &self,
        tenant: &str,
        install_id: &str,
        attribution: &InstallAttribution,
    ) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.attribution_key(tenant, install_id))
            .arg(serde_json::to_string(attribution).expect("serializable"))
            .arg("NX")
            .arg("PX")
            .arg(INSTALL_MEMORY_MS)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

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

    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<String>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        Ok(redis::cmd("MGET").arg(keys).query_async(&mut c).await?)
    }

    /// Creates the tenant's `default` source unless it was created before (even if since
    /// deleted: a deleted default stays deleted).
    pub async fn ensure_default_source(&self, tenant: &str) -> Result<(), RedisError> {
        if self.provisioned.lock().contains(tenant) {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let flag = self.default_source_key(tenant);
        let done: bool = c.exists(&flag).await?;
        if !done {
            // Its URL is not shown to anyone: a tenant rotates it to get one.
            let (default, _) = Source::new(source::DEFAULT_NAME, "custom");
            self.create_source(tenant, &default).await?;
            let won: bool = c.set_nx(&flag, &default.id).await?;
            if !won {
                // Another request provisioned it at the same moment: keep theirs.
                self.delete_source(tenant, &default.id).await?;
            }
        }
        self.provisioned.lock().insert(tenant.to_string());
        Ok(())
    }

    pub async fn create_source(&self, tenant: &str, source: &Source) -> Result<(), RedisError> {
        let owner = WebhookOwner {
            tenant_id: tenant.to_string(),
            source_id: source.id.clone(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(
                self.sources_key(tenant),
                &source.id,
                serde_json::to_string(source).expect("serializable"),
            )
            .set(
                self.webhook_key(&source.token_hash),
                serde_json::to_string(&owner).expect("serializable"),
            );
        self.query_pipeline(&pipe).await
    }

    /// Gives source `id` a new webhook URL; the old one is refused from then on. `None` when
    /// there is no such source.
    pub async fn rotate_source(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Source, String)>, RedisError> {
        let Some(mut source) = self.source(tenant, id).await? else {
            return Ok(None);
        };
        let old = (source.lookup_hash(), source.legacy_token.clone());
        let token = source.new_token();
        let owner = WebhookOwner {
            tenant_id: tenant.to_string(),
            source_id: source.id.clone(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(
                self.sources_key(tenant),
                &source.id,
                serde_json::to_string(&source).expect("serializable"),
            )
            .del(self.webhook_key(&old.0))
            .set(
                self.webhook_key(&source.token_hash),
                serde_json::to_string(&owner).expect("serializable"),
            );
        if let Some(legacy) = &old.1 {
            pipe.del(self.legacy_webhook_key(legacy));
        }
        self.query_pipeline(&pipe).await?;
        Ok(Some((source, token)))
    }

    pub async fn sources(&self, tenant: &str) -> Result<Vec<Source>, RedisError> {
        let mut sources: Vec<Source> = self.hash_values(&self.sources_key(tenant)).await?;
        sources.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(sources)
    }

    pub async fn source(&self, tenant: &str, id: &str) -> Result<Option<Source>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.sources_key(tenant);
        let raw: Option<String> = c.hget(&key, id).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|source| RedisError::Corrupt { key, source }))
            .transpose()
    }

    /// Deletes a source and its webhook URL; false when there was no such source.
    pub async fn delete_source(&self, tenant: &str, id: &str) -> Result<bool, RedisError> {
        let Some(source) = self.source(tenant, id).await? else {
            return Ok(false);
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.sources_key(tenant), id)
            .del(self.webhook_key(&source.lookup_hash()));
        if let Some(legacy) = &source.legacy_token {
            pipe.del(self.legacy_webhook_key(legacy));
        }
        self.query_pipeline(&pipe).await?;
        Ok(true)
    }

    /// Who the webhook URL with `token` belongs to, looked up by the token's hash. An owner
    /// kept by the token itself (before tokens were hashed) is moved under its hash.
    pub async fn webhook_owner(&self, token: &str) -> Result<Option<WebhookOwner>, RedisError> {
        let mut c = self.conn.clone();
        let key = self.webhook_key(&source::token_hash(token));
        if let Some(raw) = c.get::<_, Option<String>>(&key).await? {
            return serde_json::from_str(&raw)
                .map(Some)
                .map_err(|source| RedisError::Corrupt { key, source });
        }
        let legacy = self.legacy_webhook_key(token);
        let Some(raw) = c.get::<_, Option<String>>(&legacy).await? else {
            return Ok(None);
        };
        let owner: WebhookOwner =
            serde_json::from_str(&raw).map_err(|source| RedisError::Corrupt {
                key: legacy.clone(),
                source,
            })?;
        let mut pipe = redis::pipe();
        pipe.atomic().set(&key, &raw).del(&legacy);
        if let Some(mut source) = self.source(&owner.tenant_id, &owner.source_id).await? {
            source.token_hash = source.lookup_hash();
            source.token_hint = token.chars().take(8).collect();
            source.legacy_token = None;
            pipe.hset(
                self.sources_key(&owner.tenant_id),
                &source.id,
                serde_json::to_string(&source).expect("serializable"),
            );
        }
        self.query_pipeline(&pipe).await?;
        Ok(Some(owner))
    }

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

    fn report_key(&self, tenant: &str, id: &str) -> String {
        format!("{}:report:{id}", self.tenant_tag(tenant))
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

    fn decode_link(&self, code: &str, raw: &str) -> Result<Link, RedisError> {
        serde_json::from_str(raw).map_err(|source| RedisError::Corrupt {
            key: format!("{}[{code}]", self.links_key()),
            source,
        })
    }
}
