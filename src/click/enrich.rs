//! Enrichment of a captured click: keyed IP hash, geo and user agent. Owned by the flusher's
//! encoder thread, so the user-agent cache needs no lock.

use std::net::IpAddr;
use std::sync::Arc;

use ahash::AHashMap;
use sha2::{Digest, Sha256};

use super::agent::{self, Agent};
use super::anonymous::AnonymousIps;
use super::geo::{Geo, Place, PlaceCache};

/// Bounded so that a flood of unique user agents cannot grow memory without limit.
const AGENT_CACHE_MAX: usize = 16_384;

/// The keyed 64-bit IP hash. xxh3 with a secret derived from the deployment's key: the same
/// IP hashes the same on every node sharing the key, and the hash cannot be reversed by
/// enumerating the IPv4 space without the key.
#[derive(Clone)]
pub struct IpHasher {
    secret: Arc<[u8; 192]>,
}

impl IpHasher {
    pub fn new(key: &[u8]) -> IpHasher {
        let mut secret = [0u8; 192];
        for (i, chunk) in secret.chunks_mut(32).enumerate() {
            let digest = Sha256::new()
                .chain_update(key)
                .chain_update([i as u8])
                .finalize();
            chunk.copy_from_slice(&digest);
        }
        IpHasher {
            secret: Arc::new(secret),
        }
    }

    pub fn hash(&self, ip: IpAddr) -> u64 {
        // IPv4-mapped IPv6 addresses hash like the IPv4 address they carry.
        match ip.to_canonical() {
            IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64_with_secret(&v4.octets(), &*self.secret),
            IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64_with_secret(&v6.octets(), &*self.secret),
        }
    }
}

pub struct Enricher {
    hasher: IpHasher,
    geo: Option<Arc<Geo>>,
    anonymous: Option<Arc<AnonymousIps>>,
    places: PlaceCache,
    agents: AHashMap<Box<str>, Arc<Agent>>,
}

impl Enricher {
    pub fn new(
        hasher: IpHasher,
        geo: Option<Arc<Geo>>,
        anonymous: Option<Arc<AnonymousIps>>,
    ) -> Enricher {
        Enricher {
            hasher,
            geo,
            anonymous,
            places: PlaceCache::default(),
            agents: AHashMap::with_capacity(1024),
        }
    }

    pub fn ip_hash(&self, ip: IpAddr) -> u64 {
        self.hasher.hash(ip)
    }

    /// Whether the address is in the anonymous-address database (never, without one).
    pub fn anonymous(&self, ip: IpAddr) -> bool {
        self.anonymous.as_ref().is_some_and(|a| a.contains(ip))
    }

    pub fn place(&mut self, ip: IpAddr) -> Place<'_> {
        match &self.geo {
            Some(geo) => geo.lookup_cached(ip, &mut self.places),
            None => Place::default(),
        }
    }

    pub fn agent(&mut self, ua: &str) -> Arc<Agent> {
        if let Some(a) = self.agents.get(ua) {
            return a.clone();
        }
        if self.agents.len() >= AGENT_CACHE_MAX {
            self.agents.clear();
        }
        let a = Arc::new(agent::classify(ua));
        self.agents.insert(ua.into(), a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hash_is_keyed_and_stable() {
        let a = IpHasher::new(b"key-a");
        let b = IpHasher::new(b"key-b");
        let ip: IpAddr = "81.2.69.160".parse().unwrap();
        let mapped: IpAddr = "::ffff:81.2.69.160".parse().unwrap();
        assert_eq!(a.hash(ip), a.hash(ip));
        assert_eq!(a.hash(ip), a.hash(mapped));
        assert_ne!(a.hash(ip), b.hash(ip));
        assert_ne!(a.hash(ip), a.hash("81.2.69.161".parse().unwrap()));
    }

    #[test]
    fn agent_cache_returns_same_answer() {
        let mut e = Enricher::new(IpHasher::new(b"k"), None, None);
        let first = e.agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)");
        let second = e.agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(e.place("1.1.1.1".parse().unwrap()), Place::default());
    }
}
