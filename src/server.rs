//! The running server: start-up order (schema, stores, pipeline, serving threads and the
//! background tasks) and shutdown order (stop accepting, drain, flush).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::app::App;
use crate::click::anonymous::AnonymousIps;
use crate::click::enrich::{Enricher, IpHasher};
use crate::click::geo::Geo;
use crate::config::Config;
use crate::http::rate_limit::RateLimiter;
use crate::link::{sync as link_sync, LinkTable};
use crate::metrics;
use crate::pipeline::fingerprints;
use crate::pipeline::inserter::{FlushReport, Storage};
use crate::pipeline::ring::{self, RowQueue};
use crate::pipeline::wal::{self, Wal};
use crate::pipeline::{FlushConfig, Flusher, Ring, SpillStatus};
use crate::skan::keys::AppleKeys;
use crate::stats::cache::Cache;
use crate::store::click_lookup::ClickLookup;
use crate::store::clickhouse;
use crate::store::redis::Redis;

/// How long start-up retries its Redis steps: a Redis Cluster failing over, or Redis starting
/// beside Sluice, answers errors for seconds, and a process manager restarting Sluice in a
/// loop meanwhile helps nobody.
const STARTUP_RETRY: Duration = Duration::from_secs(30);

/// Runs a start-up step until it succeeds or `STARTUP_RETRY` has passed.
async fn at_startup<T, E, F, Fut>(what: &str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let started = std::time::Instant::now();
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() < STARTUP_RETRY => {
                warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
    }
}

/// Takes the data directory for this process: two nodes sharing one would replay each other's
/// spill and write-ahead log, and share one delivery consumer name.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data dir {} is in use by another Sluice node (each node needs its own SLUICE_DATA_DIR)",
            dir.display()
        )
    })?;
    Ok(file)
}

/// Installs, events and conversions buffered for the flusher: requests at most, and bytes.
const ROW_QUEUE_CAPACITY: usize = 65_536;
const ROW_QUEUE_BYTES: usize = 64 << 20;

/// This node's stable name (its delivery consumer), kept in the data directory so that after
/// a restart it takes up the deliveries it held.
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let id = format!("node-{}", hex::encode(rand::random::<[u8; 8]>()));
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// A started server; `shutdown` drains it.
pub struct Server {
    pub addr: SocketAddr,
    /// Held for the server's life: see `lock_data_dir`.
    _data_dir_lock: std::fs::File,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    serving: Vec<std::thread::JoinHandle<()>>,
    refresher: JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
    delivery: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    fingerprint_writer: JoinHandle<()>,
    flusher: Flusher,
}

impl Server {
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let metrics = metrics::init();
        let applied = clickhouse::migrate(&config.clickhouse)
            .await
            .with_context(|| {
                format!(
                    "applying ClickHouse migrations at {}",
                    config.clickhouse.url
                )
            })?;
        if applied > 0 {
            info!(applied, "clickhouse schema migrated");
        }
        let ch = clickhouse::client(&config.clickhouse);
        let redis = at_startup(
            &format!("connecting to Redis at {}", config.redis.url),
            || Redis::connect(&config.redis.url, &config.redis.prefix),
        )
        .await?;
        let geo = match &config.geoip_path {
            Some(path) => {
                Some(Arc::new(Geo::open(path).with_context(|| {
                    format!("opening GeoIP database {}", path.display())
                })?))
            }
            None => None,
        };
        let anonymous = match &config.anonymous_ip_path {
            Some(path) => Some(Arc::new(AnonymousIps::open(path).map_err(|e| {
                anyhow::anyhow!("opening anonymous-IP database {}: {e}", path.display())
            })?)),
            None => None,
        };
        let apple_keys = match &config.apple_keys_path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|json| AppleKeys::rotated(&json))
                .map_err(|e| anyhow::anyhow!("reading Apple keys {}: {e}", path.display()))?,
            None => AppleKeys::published(),
        };
        let ip_key = if config.ip_hash_key.is_empty() {
            at_startup("reading the shared IP hash key", || redis.ip_hash_key()).await?
        } else {
            config.ip_hash_key.clone()
        };
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;

        let ring = Arc::new(Ring::new(config.pipeline.ring_capacity, metrics));
        metrics.ring_capacity.set(ring.capacity() as f64);
        let spill = Arc::new(SpillStatus::default());
        let wal_dir = config.data_dir.join("wal");
        let (wal, wal_leftovers) = if config.pipeline.write_ahead {
            let (wal, leftovers) = Wal::open(&wal_dir, metrics)
                .with_context(|| format!("opening write-ahead log {}", wal_dir.display()))?;
            (Some(Arc::new(wal)), leftovers)
        } else if wal_dir.exists() {
            // Write-ahead mode was on in an earlier run: recover what it left.
            (
                None,
                wal::segments_in(&wal_dir)
                    .with_context(|| format!("reading {}", wal_dir.display()))?,
            )
        } else {
            (None, Vec::new())
        };
        if !wal_leftovers.is_empty() {
            info!(
                segments = wal_leftovers.len(),
                "write-ahead segments from an earlier run will be recovered"
            );
        }
        let ip_hasher = IpHasher::new(ip_key.as_bytes());
        let rows = Arc::new(RowQueue::new(ROW_QUEUE_CAPACITY, ROW_QUEUE_BYTES));
        let (fingerprints, fingerprint_intake) = fingerprints::handover();
        let fingerprint_writer = tokio::spawn(fingerprints::run(
            redis.clone(),
            fingerprint_intake,
            metrics,
        ));
        let flusher = Flusher::start(
            ring.clone(),
            rows.clone(),
            Enricher::new(ip_hasher.clone(), geo.clone(), anonymous.clone()),
            ch.clone(),
            FlushConfig {
                max_rows: config.pipeline.flush_max_rows,
                max_bytes: config.pipeline.flush_max_bytes,
                period: config.flush_period(),
                storage: Storage {
                    spill_dir: config.data_dir.join("spill"),
                    spill_max_bytes: config.pipeline.spill_max_bytes,
                    dead_letter_dir: config.data_dir.join("dead-letter"),
                    wal: wal.clone(),
                    wal_leftovers,
                },
                fingerprints: Some(fingerprints),
            },
            spill.clone(),
            metrics,
        );
        let app = Arc::new(App {
            delivery: crate::delivery::Context {
                redis: redis.clone(),
                ch: ch.clone(),
                config: config.delivery.clone(),
                metrics,
            },
            trusted_proxies: config.trusted_proxies.clone(),
            limits: RateLimiter::new(&config.rate_limit),
            stats_cache: Cache::new(Duration::from_millis(config.stats_cache_ms)),
            breakdown_cache: Cache::new(Duration::from_millis(config.stats_cache_ms)),
            config,
            links: LinkTable::default(),
            ring,
            rows,
            redis,
            clicks: ClickLookup::start(ch.clone()),
            ch,
            geo,
            anonymous,
            apple_keys,
            metrics,
            spill,
            wal,
            ip_hasher,
        });
        let at = at_startup("loading links from Redis", || {
            link_sync::start(&app.redis, &app.links, app.metrics)
        })
        .await?;
        info!(
            links = app.links.len(),
            version = at.version,
            "link table loaded"
        );
        let refresher = {
            let app = app.clone();
            tokio::spawn(async move {
                let interval = Duration::from_millis(app.config.link_refresh_ms);
                let caps = link_sync::share_caps(app.redis.clone(), &app.links, app.metrics);
                let follow =
                    link_sync::follow(app.redis.clone(), &app.links, app.metrics, at, interval);
                tokio::join!(follow, caps);
            })
        };

        let retention = (app.config.retention_interval_ms > 0)
            .then(|| tokio::spawn(crate::retention::run(app.retention())));

        let upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics::upkeep();
            }
        });

        let threads = match app.config.http_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let listeners = crate::http::bind_reuseport(app.config.listen, threads)
            .with_context(|| format!("binding {}", app.config.listen))?;
        let addr = listeners[0].local_addr()?;
        let (stop, stopped) = watch::channel(false);
        at_startup("creating the delivery stream in Redis", || {
            app.redis.ensure_delivery_group()
        })
        .await?;
        let delivery = tokio::spawn(crate::delivery::worker::run(
            app.delivery.clone(),
            node_id(&app.config.data_dir)?,
            stopped.clone(),
        ));
        let mut serving = Vec::with_capacity(listeners.len());
        let batch_scheduling = app.config.http_batch_scheduling;
        for (i, listener) in listeners.into_iter().enumerate() {
            let (app, stopped) = (app.clone(), stopped.clone());
            // The thread gathers its clicks in chunks (`pipeline::ring`): handed over when
            // full, and before the thread idles or ends.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(ring::flush)
                .build()?;
            serving.push(
                std::thread::Builder::new()
                    .name(format!("sluice-http-{i}"))
                    .spawn(move || {
                        if batch_scheduling {
                            crate::scheduling::batch_policy();
                        }
                        ring::attach(app.ring.clone());
                        runtime.block_on(async move {
                            match TcpListener::from_std(listener) {
                                Ok(listener) => {
                                    crate::http::serve(
                                        listener,
                                        app,
                                        stopped,
                                        Duration::from_secs(5),
                                    )
                                    .await
                                }
                                Err(error) => error!(%error, "cannot register listener"),
                            }
                        });
                        ring::detach();
                    })?,
            );
        }
        info!(%addr, threads, "sluice listening");
        Ok(Server {
            addr,
            app,
            stop,
            serving,
            refresher,
            retention,
            delivery,
            upkeep,
            fingerprint_writer,
            flusher,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Stop accepting, finish in-flight requests, then drain the ring into ClickHouse.
    pub async fn shutdown(self) -> FlushReport {
        let _ = self.stop.send(true);
        let serving = self.serving;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in serving {
                let _ = thread.join();
            }
        })
        .await;
        self.refresher.abort();
        self.upkeep.abort();
        // Attempts cut short stay pending in the stream: this node takes them up again at
        // its next start (or another node after a while).
        self.delivery.abort();
        if let Some(retention) = &self.retention {
            retention.abort();
        }
        let pending = self.app.ring.len();
        info!(pending, "draining click pipeline");
        let timeout = Duration::from_millis(self.app.config.shutdown_timeout_ms);
        let report = self.flusher.shutdown(timeout).await;
        if let Some(wal) = &self.app.wal {
            wal.finish();
        }
        // The encoder is gone, so the channel is closed: this ends once the last
        // fingerprints are written.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.fingerprint_writer).await;
        info!(lost_rows = report.lost_rows, "shutdown complete");
        report
    }
}
