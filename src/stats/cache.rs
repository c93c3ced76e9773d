//! A short-lived answer cache with single flight. While an answer is fresh every caller gets
//! it. Once it is stale, the first caller recomputes it while everyone else keeps getting the
//! stale answer (so a dashboard never waits on another's recomputation); with no answer yet,
//! callers wait for the one computation in flight. A thousand dashboards polling the same
//! stats cost one ClickHouse computation per interval per node, and an answer is at most two
//! intervals old. Errors are not cached: the next caller tries again.

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

struct Entry<V> {
    /// The newest answer and when it was computed.
    last: Option<(Instant, V)>,
    /// The computation in flight, which every caller without an answer waits on.
    next: Option<Arc<OnceCell<V>>>,
}

/// Entries kept at most; past it, stale ones are dropped.
const MAX_ENTRIES: usize = 10_000;

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    pub fn new(ttl: Duration) -> Cache<K, V> {
        Cache {
            ttl,
            entries: Mutex::new(AHashMap::new()),
        }
    }

    /// The answer for `key`, computing it with `compute` when it is missing or stale (once,
    /// however many ask).
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
            if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
                let ttl = self.ttl;
                entries.retain(|_, e| e.last.as_ref().is_some_and(|(at, _)| at.elapsed() < ttl));
            }
            let entry = entries.entry(key.clone()).or_insert(Entry {
                last: None,
                next: None,
            });
            match (&entry.last, &entry.next) {
                (Some((at, v)), _) if at.elapsed() < self.ttl => return Ok(v.clone()),
                // Stale, and someone is already recomputing: the stale answer will do.
                (Some((_, v)), Some(_)) => return Ok(v.clone()),
                (_, Some(cell)) => cell.clone(),
                (_, None) => {
                    let cell = Arc::new(OnceCell::new());
                    entry.next = Some(cell.clone());
                    cell
                }
            }
        };
        let result = cell.get_or_try_init(compute).await.cloned();
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.get_mut(key) {
            if entry.next.as_ref().is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                entry.next = None;
                if let Ok(v) = &result {
                    entry.last = Some((Instant::now(), v.clone()));
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Shared = Arc<Cache<&'static str, u64>>;

    async fn ask(cache: Shared, runs: Arc<AtomicUsize>, value: u64) -> Result<u64, ()> {
        cache
            .get(&"q", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, ()>(value)
            })
            .await
    }

    #[tokio::test]
    async fn one_computation_per_interval_however_many_ask() {
        let cache: Shared = Arc::new(Cache::new(Duration::from_millis(200)));
        let runs = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..100)
            .map(|_| tokio::spawn(ask(cache.clone(), runs.clone(), 7)))
            .collect();
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Stale: one caller recomputes, the others get the stale answer meanwhile.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let refresher = tokio::spawn(ask(cache.clone(), runs.clone(), 8));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        assert_eq!(ask(cache.clone(), runs.clone(), 9).await, Ok(7));
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "did not wait on the refresh"
        );
        assert_eq!(refresher.await.unwrap(), Ok(8));
        assert_eq!(ask(cache.clone(), runs.clone(), 9).await, Ok(8));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
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
