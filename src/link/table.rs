//! The in-process link table the redirect reads: an immutable map behind `ArcSwap`, swapped
//! whole when Redis says the link set changed. The redirect never calls Redis.

use std::sync::Arc;

use ahash::AHashMap;
use arc_swap::ArcSwap;
use tracing::warn;

use super::{Link, LiveLink};

type Map = AHashMap<Box<str>, Arc<LiveLink>>;

pub struct LinkTable {
    map: ArcSwap<Map>,
    /// The Redis link-set version the current map was built from.
    version: parking_lot::Mutex<Option<i64>>,
    /// Held while the table reloads (`catalog::reload`).
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl Default for LinkTable {
    fn default() -> Self {
        LinkTable {
            map: ArcSwap::from_pointee(Map::default()),
            version: parking_lot::Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

impl LinkTable {
    pub fn get(&self, code: &str) -> Option<Arc<LiveLink>> {
        self.map.load().get(code).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn version(&self) -> Option<i64> {
        *self.version.lock()
    }

    /// Replace the table. Links that do not compile (they were validated on write, so only
    /// a hand-edited Redis gets here) are skipped with a warning rather than taking the
    /// whole table down.
    pub fn replace(&self, version: i64, links: impl IntoIterator<Item = Link>) {
        let mut map = Map::default();
        for link in links {
            let code = link.id.clone();
            match LiveLink::compile(link) {
                Ok(live) => {
                    map.insert(code.into(), Arc::new(live));
                }
                Err(error) => warn!(code, %error, "skipping link that does not compile"),
            }
        }
        self.map.store(Arc::new(map));
        *self.version.lock() = Some(version);
    }
}
