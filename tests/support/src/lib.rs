//! What the integration tests share: each test gets its own ClickHouse database and Redis
//! key prefix on the real local stack (`deploy/stack.sh up`), and a real server on port 0.

pub mod proxy;
pub mod receiver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice::config::Config;
use sluice::server::Server;
use sluice::store::redis::{NewTenant, Redis};

/// The Sluice checkout (this crate is `tests/support` in it).
pub fn project_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `sluice` binary Cargo built beside the running test (`target/<profile>/sluice`;
/// tests run from `target/<profile>/deps`).
pub fn sluice_bin() -> PathBuf {
    let mut dir = std::env::current_exe().expect("the test's own path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("sluice")
}

pub fn clickhouse_url() -> String {
    std::env::var("SLUICE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into())
}

/// The Redis the tests use: one server, or a Redis Cluster's seed nodes comma-separated.
pub fn redis_url() -> String {
    std::env::var("SLUICE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

/// A connection to the tests' Redis (a cluster's too), for looking at keys directly.
pub async fn redis_conn() -> sluice::store::redis::Conn {
    redis_conn_to(&redis_url()).await
}

pub async fn redis_conn_to(url: &str) -> sluice::store::redis::Conn {
    sluice::store::redis::Conn::open(url).await.expect("redis")
}

/// The keys matching `pattern`, on every master when Redis is a cluster.
pub async fn redis_keys(pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for url in redis_url().split(',') {
        let mut c = redis::Client::open(url.trim())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
        if role.first() != Some(&redis::Value::BulkString(b"master".to_vec())) {
            continue;
        }
        let some: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(some);
    }
    keys
}

/// The test City database written by `tests/support/make_geo_db.py` (the test script makes it).
pub fn geo_db() -> PathBuf {
    let path = std::env::var("SLUICE_TEST_GEOIP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_dir().join("var/test/geo.mmdb"));
    assert!(
        path.exists(),
        "{} missing: run deploy/test.sh (it writes the test GeoIP database)",
        path.display()
    );
    path
}

pub fn unique(name: &str) -> String {
    format!("{name}_{:016x}", rand::random::<u64>())
}

/// Polls `check` every 50 ms until it holds; fails the test, naming `what`, once `within`
/// has passed. Tests wait on conditions like this, never on a fixed sleep.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test's own slice of the stack.
pub struct TestEnv {
    pub database: String,
    pub prefix: String,
    pub data_dir: PathBuf,
    /// `redis_url()` unless a test sets another (the cluster suite).
    pub redis_url: String,
    /// `clickhouse_url()` and `SLUICE_TEST_CLICKHOUSE_CLUSTER` (none unless set) unless a
    /// test sets others (the cluster suite).
    pub clickhouse_url: String,
    pub clickhouse_cluster: String,
}

impl Default for TestEnv {
    fn default() -> TestEnv {
        let id = unique("t");
        TestEnv {
            database: format!("sluice_test_{id}"),
            prefix: format!("sluice_test:{id}"),
            data_dir: std::env::temp_dir().join(format!("sluice-{id}")),
            redis_url: redis_url(),
            clickhouse_url: clickhouse_url(),
            clickhouse_cluster: std::env::var("SLUICE_TEST_CLICKHOUSE_CLUSTER").unwrap_or_default(),
        }
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::default()
    }

    pub fn config(&self) -> Config {
        let mut c = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        c.clickhouse.url = self.clickhouse_url.clone();
        c.clickhouse.cluster = self.clickhouse_cluster.clone();
        c.clickhouse.database = self.database.clone();
        c.redis.url = self.redis_url.clone();
        c.redis.prefix = self.prefix.clone();
        c.data_dir = self.data_dir.clone();
        c.geoip_path = Some(geo_db());
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.pipeline.flush_period_ms = 200;
        c.link_refresh_ms = 100;
        c
    }

    /// The same settings as environment variables, for tests that run the binary.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SLUICE_LISTEN", "127.0.0.1:0".into()),
            ("SLUICE_CLICKHOUSE_URL", self.clickhouse_url.clone()),
            ("SLUICE_CLICKHOUSE_CLUSTER", self.clickhouse_cluster.clone()),
            ("SLUICE_CLICKHOUSE_DATABASE", self.database.clone()),
            ("SLUICE_REDIS_URL", self.redis_url.clone()),
            ("SLUICE_REDIS_PREFIX", self.prefix.clone()),
            ("SLUICE_DATA_DIR", self.data_dir.display().to_string()),
            ("SLUICE_GEOIP_PATH", geo_db().display().to_string()),
            ("SLUICE_TRUSTED_PROXIES", "127.0.0.1".into()),
        ]
    }

    pub async fn start(&self) -> Server {
        Server::start(self.config()).await.expect("server starts")
    }

    pub async fn redis(&self) -> Redis {
        Redis::connect(&self.redis_url, &self.prefix)
            .await
            .expect("redis")
    }

    pub async fn tenant(&self) -> NewTenant {
        self.redis()
            .await
            .create_tenant("test")
            .await
            .expect("tenant")
    }

    /// Waits until an install can find human click `click` by id: its batch's insert has
    /// finished, materialized view included (`clicks` shows the rows a moment before
    /// `click_facts` does, while the insert is still running).
    pub async fn wait_for_click(&self, click: [u8; 16]) {
        let sql = format!(
            "SELECT count() FROM click_facts WHERE lower(hex(click_id)) = '{}'",
            hex::encode(click)
        );
        assert_eq!(self.wait_for(&sql, 1, Duration::from_secs(20)).await, 1);
    }

    /// Waits until the fingerprint writer has stored each of `clicks` (it runs beside the
    /// insert): from then on the flip can claim them.
    pub async fn wait_for_fingerprints(&self, clicks: &[[u8; 16]]) {
        let mut c = redis_conn().await;
        let pattern = format!("{}*:fp:*", self.prefix);
        let started = Instant::now();
        loop {
            let keys = redis_keys(&pattern).await;
            let mut members = Vec::new();
            for key in keys {
                let some: Vec<String> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                members.extend(some);
            }
            let missing = clicks
                .iter()
                .filter(|click| {
                    let id = hex::encode(click);
                    !members.iter().any(|m| m.starts_with(&id))
                })
                .count();
            if missing == 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{missing} of {} fingerprints never written",
                clicks.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs SQL against this test's database; returns the body (TSV unless the SQL says). On
    /// a cluster, with Sluice's settings: an insert returns once its shard has it, and reads
    /// and inserts go to each shard's first healthy replica.
    pub async fn ch(&self, sql: &str) -> String {
        let sync = if self.clickhouse_cluster.is_empty() {
            ""
        } else {
            "&insert_distributed_sync=1&load_balancing=in_order"
        };
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/?database={}{sync}",
                self.clickhouse_url, self.database
            ))
            .body(sql.to_string())
            .send()
            .await
            .expect("clickhouse reachable");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "clickhouse: {sql}: {text}");
        text
    }

    pub async fn ch_u64(&self, sql: &str) -> u64 {
        self.ch(sql)
            .await
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number from {sql}"))
    }

    /// Waits until `sql` (a single number) reaches `want`; returns the last value seen.
    pub async fn wait_for(&self, sql: &str, want: u64, timeout: Duration) -> u64 {
        let started = Instant::now();
        loop {
            let got = self.ch_u64(sql).await;
            if got >= want || started.elapsed() > timeout {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `config` for another node of the same deployment: its own data directory (each node locks
/// its own), inside the test's so it goes with it.
pub fn another_node(mut config: Config, name: &str) -> Config {
    config.data_dir = config.data_dir.join(name);
    config
}

/// A test's slice is removed when the test ends, passed or failed: its database dropped and
/// its data directory deleted. Synchronous (a drop cannot await): one HTTP request to
/// ClickHouse over a plain socket.
impl Drop for TestEnv {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let mut sql = format!("DROP DATABASE IF EXISTS {}", self.database);
        if !self.clickhouse_cluster.is_empty() {
            sql += &format!(" ON CLUSTER {}", self.clickhouse_cluster);
        }
        if let Ok(mut socket) = std::net::TcpStream::connect_timeout(
            &socket_addr(&self.clickhouse_url),
            Duration::from_secs(2),
        ) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(30)));
            let request = format!(
                "POST / HTTP/1.1\r\nHost: clickhouse\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
                sql.len()
            );
            if socket.write_all(request.as_bytes()).is_ok() {
                let _ = socket.read_to_end(&mut Vec::new());
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The project stack's `var/` (where `deploy/stack.sh` keeps pid files and data).
pub fn stack_var() -> PathBuf {
    std::env::var("SLUICE_VAR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_dir().join("var"))
}

/// SIGKILLs the server whose pid file is `var/<pidfile>` (a stack or cluster process).
pub fn kill_stack_process(pidfile: &str) {
    let pid = std::fs::read_to_string(stack_var().join(pidfile)).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap()
        .success());
}

/// Runs `deploy/stack.sh <arg>`.
pub fn stack(arg: &str) {
    let status = std::process::Command::new(project_dir().join("deploy/stack.sh"))
        .arg(arg)
        .status()
        .expect("run deploy/stack.sh");
    assert!(status.success(), "deploy/stack.sh {arg} failed");
}

/// The ClickHouse HTTP address the tests use, as a socket address (for the proxy).
pub fn clickhouse_addr() -> std::net::SocketAddr {
    socket_addr(&clickhouse_url())
}

fn socket_addr(url: &str) -> std::net::SocketAddr {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .unwrap()
        .next()
        .unwrap()
}

/// Sends `total` GETs to `url` with `concurrency` workers, each with a unique partner click id
/// `p<i>`; returns the ids of the requests answered with a 302 (errors are not answers).
pub async fn fire(
    url: &str,
    total: usize,
    concurrency: usize,
    per_second: Option<u64>,
) -> Vec<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let next = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let c = http();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (c, url, next) = (c.clone(), url.to_string(), next.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return answered;
                    }
                    if let Some(rate) = per_second {
                        let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    if let Ok(resp) = c.get(format!("{url}?click_id=p{i}")).send().await {
                        if resp.status() == 302 {
                            answered.push(i);
                        }
                    }
                }
            })
        })
        .collect();
    let mut answered = Vec::new();
    for w in workers {
        answered.extend(w.await.unwrap());
    }
    answered.sort_unstable();
    answered
}

/// A `sluice serve` process with this test's settings (plus `extra`), listening on `port`.
pub struct Process {
    pub child: tokio::process::Child,
    pub base: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    pub async fn start(env: &TestEnv, port: u16, extra: &[(&str, String)]) -> Process {
        let child = tokio::process::Command::new(sluice_bin())
            .arg("serve")
            .envs(env.env())
            .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // A first start on a fresh database runs every migration first: on the ClickHouse
        // cluster each is a distributed DDL statement, tens of seconds in all.
        for _ in 0..1200 {
            if http().get(format!("{base}/healthz")).send().await.is_ok() {
                return Process { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sluice did not start within 60 s");
    }

    /// Sends a signal (`TERM`, `KILL`) and waits for the exit.
    pub async fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exits in bounded time")
            .unwrap()
    }

    /// Creates a link to `https://x.example/` and returns its code.
    pub async fn link(&self, key: &str) -> String {
        let code = unique("l");
        let resp = http()
            .post(format!("{}/v1/links", self.base))
            .bearer_auth(key)
            .json(&serde_json::json!({"id": code, "destination": "https://x.example/"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        code
    }
}

/// Every answered request (by its partner click id `p<i>`) among the clicks matching
/// `filter` is stored exactly once, and nothing else matching it is stored twice. Waits (up to
/// a minute) for at least as many rows as answers first: replay and recovery take a moment.
pub async fn assert_exactly_once(env: &TestEnv, answered: &[usize], filter: &str) {
    let count = format!("SELECT count() FROM clicks WHERE {filter}");
    let stored = env
        .wait_for(&count, answered.len() as u64, Duration::from_secs(60))
        .await;
    assert!(
        stored >= answered.len() as u64,
        "{stored} rows for {} answered clicks",
        answered.len()
    );
    let stored = env
        .ch(&format!(
            "SELECT partner_click_id FROM clicks WHERE {filter} FORMAT TSV"
        ))
        .await;
    let mut ids: Vec<&str> = stored.lines().collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "a click was stored twice");
    assert_eq!(
        env.ch_u64(&format!(
            "SELECT uniqExact(click_id) FROM clicks WHERE {filter}"
        ))
        .await,
        total as u64
    );
    let set: std::collections::HashSet<&str> = ids.into_iter().collect();
    let missing: Vec<_> = answered
        .iter()
        .filter(|i| !set.contains(format!("p{i}").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered clicks missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Sends `req` and answers its status and JSON body (`null` when the body is empty or not
/// JSON).
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// An API call with a bearer key and an optional JSON body.
pub async fn api(
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = http().request(method, url).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req).await
}

/// `GET /readyz` of the server at `base`: its status and body.
pub async fn ready(base: &str) -> (u16, serde_json::Value) {
    answer(http().get(format!("{base}/readyz"))).await
}

/// An HTTP client that does not follow redirects (we assert on them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

pub fn base(server: &Server) -> String {
    format!("http://{}", server.addr)
}

pub async fn create_link(server: &Server, key: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = http()
        .post(format!("{}/v1/links", base(server)))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let value: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "create link: {value}");
    value
}

/// A fresh webhook URL of the tenant's `default` source (rotated: a URL is shown only when
/// made, and nobody saw the default source's first one).
pub async fn default_webhook_url(base: &str, secret_key: &str) -> String {
    let (_, sources) = api(
        reqwest::Method::GET,
        &format!("{base}/v1/sources"),
        secret_key,
        None,
    )
    .await;
    let id = sources["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == "default")
        .expect("default source")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, rotated) = api(
        reqwest::Method::POST,
        &format!("{base}/v1/sources/{id}/rotate"),
        secret_key,
        None,
    )
    .await;
    rotated["webhook_url"]
        .as_str()
        .expect("a new webhook URL")
        .to_string()
}

/// Clicks `code` (whose destination ends in `{click_id}`), waits for the click in ClickHouse,
/// and reports `install_id` with that click id: an install attributed by click id.
pub async fn attributed_install(
    env: &TestEnv,
    server: &Server,
    key: &str,
    code: &str,
    install_id: &str,
) -> sluice::click::ClickId {
    let resp = http()
        .get(format!("{}/{code}", base(server)))
        .header("user-agent", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let click = sluice::click::ClickId::parse(&loc[loc.len() - 36..]).expect("click id");
    env.wait_for_click(click.0).await;
    let resp = http()
        .post(format!("{}/v1/attribution/install", base(server)))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "install_id": install_id, "platform": "android", "click_id": click.to_string()
        }))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["match_type"], "click_id", "{v}");
    click
}

/// The sum of a metric's series (all label sets) on a server's `/metrics`.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
