//! A short-lived answer cache with single flight: while an entry is fresh every caller gets
//! it, and when it is missing or stale exactly one caller computes it while the others wait
//! for that result. A thousand dashboards polling the same stats cost one ClickHouse
//! computation per interval per node. Errors are not cached: the next caller tries again.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

pub struct Cache<K, V> {
    ttl: Duration,
    entries: Mutex<AHashMap<K, Entry<V>>>,
}

/// When the entry was started, and its value once computed.
type Entry<V> = (Instant, Arc<OnceCell<V>>);

/// Entries kept at most; past it, stale ones are dropped (fresh ones are few: one per
/// tenant and query asked within the last interval).
const MAX_ENTRIES: usize = 10_000;

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    pub fn new(ttl: Duration) -> Cache<K, V> {
        Cache {
            ttl,
            entries: Mutex::new(AHashMap::new()),
        }
    }

    /// The fresh answer for `key`, computing it with `compute` (once, however many wait).
    pub async fn get<E, F, Fut>(&self, key: &K, compute: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await;
        }
        let cell = {
            let mut entries = self.entries.lock();
            match entries.get(key) {
                Some((at, cell)) if at.elapsed() < self.ttl => cell.clone(),
                _ => {
                    if entries.len() >= MAX_ENTRIES {
                        let ttl = self.ttl;
                        entries.retain(|_, (at, _)| at.elapsed() < ttl);
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(key.clone(), (Instant::now(), cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_try_init(compute).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_computation_per_interval_however_many_ask() {
        let cache: Arc<Cache<&str, u64>> = Arc::new(Cache::new(Duration::from_millis(200)));
        let runs = Arc::new(AtomicUsize::new(0));
        let ask = |cache: Arc<Cache<&'static str, u64>>, runs: Arc<AtomicUsize>| async move {
            cache
                .get(&"q", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>(7)
                })
                .await
        };
        let waiters: Vec<_> = (0..100)
            .map(|_| tokio::spawn(ask(cache.clone(), runs.clone())))
            .collect();
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(ask(cache.clone(), runs.clone()).await, Ok(7));
        assert_eq!(runs.load(Ordering::SeqCst), 2, "stale after the interval");
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache: Cache<&str, u64> = Cache::new(Duration::from_secs(60));
        assert_eq!(
            cache.get(&"q", || async { Err::<u64, _>("down") }).await,
            Err("down")
        );
        assert_eq!(cache.get(&"q", || async { Ok::<_, &str>(3) }).await, Ok(3));
        assert_eq!(cache.get(&"q", || async { Ok::<_, &str>(4) }).await, Ok(3));
    }
}
