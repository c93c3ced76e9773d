//! API rate limits: token buckets per tenant and per key (or webhook source), held by each
//! node in memory — no Redis round trip per request, and limits keep working while Redis is
//! down. With N nodes behind a balancer a tenant gets up to N times the configured rate
//! (documented in README).

use std::time::{Duration, Instant};

use ahash::AHashMap;
use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::RateLimitConfig;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    per_second: f64,
    burst: f64,
    /// By xxh3 of the tenant id or key: no allocation per request, no key kept in memory.
    map: AHashMap<u64, Bucket>,
}

impl Buckets {
    fn new(per_second: f64, burst_seconds: f64) -> Buckets {
        Buckets {
            per_second,
            burst: (per_second * burst_seconds).max(1.0),
            map: AHashMap::new(),
        }
    }

    /// The bucket's tokens now (refilled), and how long until one token is there.
    fn level(&mut self, id: u64, now: Instant) -> (f64, Duration) {
        if self.map.len() >= 100_000 && !self.map.contains_key(&id) {
            // Full buckets are the default state: forgetting them changes nothing.
            let (rate, burst) = (self.per_second, self.burst);
            self.map
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = self.map.entry(id).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        let wait = if b.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - b.tokens) / self.per_second)
        };
        (b.tokens, wait)
    }

    fn take(&mut self, id: u64) {
        if let Some(b) = self.map.get_mut(&id) {
            b.tokens -= 1.0;
        }
    }
}

pub struct RateLimiter {
    inner: Mutex<(Buckets, Buckets)>,
}

impl RateLimiter {
    pub fn new(cfg: &RateLimitConfig) -> RateLimiter {
        RateLimiter {
            inner: Mutex::new((
                Buckets::new(cfg.tenant_per_second, cfg.burst_seconds),
                Buckets::new(cfg.key_per_second, cfg.burst_seconds),
            )),
        }
    }

    /// Takes a token from the tenant's and the key's bucket, or from neither and says how
    /// long to wait.
    pub fn check(&self, tenant: &str, key: &str) -> Result<(), Duration> {
        self.check_at(tenant, key, Instant::now())
    }

    fn check_at(&self, tenant: &str, key: &str, now: Instant) -> Result<(), Duration> {
        let (tenant, key) = (xxh3_64(tenant.as_bytes()), xxh3_64(key.as_bytes()));
        let mut guard = self.inner.lock();
        let (tenants, keys) = &mut *guard;
        let (t, t_wait) = tenants.level(tenant, now);
        let (k, k_wait) = keys.level(key, now);
        if t >= 1.0 && k >= 1.0 {
            tenants.take(tenant);
            keys.take(key);
            Ok(())
        } else {
            Err(t_wait.max(k_wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(tenant: f64, key: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            tenant_per_second: tenant,
            key_per_second: key,
            burst_seconds: burst,
        })
    }

    #[test]
    fn a_burst_past_the_bucket_waits_for_refill() {
        let l = limiter(10.0, 100.0, 1.0);
        let t0 = Instant::now();
        let admitted = (0..25).filter(|_| l.check_at("t", "k", t0).is_ok()).count();
        assert_eq!(admitted, 10);
        let wait = l.check_at("t", "k", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // 0.5 s later, 5 tokens are back.
        let later = t0 + Duration::from_millis(500);
        let admitted = (0..25)
            .filter(|_| l.check_at("t", "k", later).is_ok())
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn keys_and_tenants_are_separate() {
        let l = limiter(100.0, 2.0, 1.0);
        let t0 = Instant::now();
        assert!(l.check_at("t", "k1", t0).is_ok());
        assert!(l.check_at("t", "k1", t0).is_ok());
        assert!(l.check_at("t", "k1", t0).is_err(), "key limit");
        assert!(
            l.check_at("t", "k2", t0).is_ok(),
            "another key of the tenant"
        );
        assert!(l.check_at("u", "k3", t0).is_ok(), "another tenant");
        // A refused request takes no token from the tenant either.
        let l = limiter(3.0, 1.0, 1.0);
        assert!(l.check_at("t", "a", t0).is_ok());
        assert!(l.check_at("t", "a", t0).is_err());
        assert!(l.check_at("t", "b", t0).is_ok());
        assert!(l.check_at("t", "c", t0).is_ok());
        assert!(
            l.check_at("t", "d", t0).is_err(),
            "tenant's 3 tokens used by a, b, c"
        );
    }
}
