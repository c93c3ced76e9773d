//! The in-process link table the redirect reads: a sharded concurrent map from code to
//! compiled link. Changes apply in place, one link at a time (a shard is locked for the
//! microseconds one insert takes, never the whole table); a full load builds a new map
//! beside the serving one and swaps it in. The redirect never calls Redis.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::sync::{watch, Notify};
use tracing::warn;

use super::{Interner, Link, LiveLink};

/// The links by code. The key is the link itself (hashed and compared by its code, and
/// borrowed as it): one pointer per entry, the code stored once.
pub type Map = DashMap<ByCode, (), ahash::RandomState>;

#[derive(Clone)]
pub struct ByCode(Arc<LiveLink>);

impl Borrow<str> for ByCode {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// As `str` hashes and compares, which `Borrow<str>` requires.
impl Hash for ByCode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}

impl PartialEq for ByCode {
    fn eq(&self, other: &ByCode) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ByCode {}

/// Enough shards that growing one (a rehash under its lock) stays short at 10M links.
const SHARDS: usize = 1024;

pub struct LinkTable {
    map: ArcSwap<Map>,
    labels: Arc<Interner>,
    /// The catalog version this table has applied, for writers waiting to see their change.
    applied: watch::Sender<u64>,
    /// Wakes the catalog sync early (a change was just written on this node).
    pub(crate) nudge: Notify,
}

impl Default for LinkTable {
    fn default() -> Self {
        LinkTable {
            map: ArcSwap::from_pointee(new_map(0)),
            labels: Arc::default(),
            applied: watch::Sender::new(0),
            nudge: Notify::new(),
        }
    }
}

pub fn new_map(capacity: usize) -> Map {
    Map::with_capacity_and_hasher_and_shard_amount(capacity, Default::default(), SHARDS)
}

impl LinkTable {
    pub fn get(&self, code: &str) -> Option<Arc<LiveLink>> {
        self.map.load().get(code).map(|entry| entry.key().0.clone())
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels this table's links share, for building a map on another thread.
    pub fn labels(&self) -> Arc<Interner> {
        self.labels.clone()
    }

    /// Applies changed links to the serving map; `None` means the code left the catalog.
    pub fn apply<'a>(&self, changes: impl IntoIterator<Item = (&'a str, Option<&'a Link>)>) {
        let map = self.map.load();
        for (code, link) in changes {
            match link {
                Some(link) => put(&map, &self.labels, link),
                None => {
                    map.remove(code);
                }
            }
        }
    }

    /// Serves `map` from now on (the previous one is dropped once no request holds it), and
    /// forgets labels only the previous one used.
    pub fn install(&self, map: Map) {
        self.map.store(Arc::new(map));
        self.labels.prune();
    }

    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn set_applied(&self, version: u64) {
        self.applied.send_replace(version);
    }

    /// Waits (at most `limit`) until the table has applied catalog version `version`.
    pub async fn wait_applied(&self, version: u64, limit: Duration) -> bool {
        self.nudge.notify_one();
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|&v| v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Puts `link` into `map` (the serving one, or one being built). A link that does not
/// compile (validated on write, so only a hand-edited Redis gets here) is left out with a
/// warning rather than failing the rest.
pub fn put(map: &Map, labels: &Interner, link: &Link) {
    match LiveLink::compile(link, labels) {
        // Replaced in place under the shard's lock: never absent in between.
        Ok(live) => match map.entry(ByCode(Arc::new(live))) {
            Entry::Occupied(entry) => {
                entry.replace_entry(());
            }
            Entry::Vacant(entry) => {
                entry.insert(());
            }
        },
        Err(error) => {
            warn!(
                code = link.id,
                field = error.field,
                error = error.message,
                "skipping link that does not compile"
            );
            map.remove(link.id.as_str());
        }
    }
}
