//! Click caps (SPEC "Routing": `click_cap {total?, daily?}`, in human clicks, on every node).
//!
//! Each node counts the human clicks it stores on a capped link (the encoder, once it knows a
//! click is neither a bot nor a preview) and, every `TICK`, adds them to the link's shared
//! counts in Redis, learning the totals back. A node takes a link to be over its cap once the
//! count it last learned plus its own clicks since reach the cap. So a cap overshoots by what
//! the other nodes let through before this node learns of it — their clicks of up to two ticks
//! (theirs to send, this node's to learn) — plus the clicks the encoder has not counted yet:
//! well under one second of traffic per node. Counting starts when a
//! link first has a cap; a daily cap counts UTC days.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::time;

/// How often a node sends its counts and learns the others'.
pub const TICK: Duration = Duration::from_millis(250);
/// A link with clicks here in the last minute learns the shared counts every tick, so this
/// node stops it within a tick of the others reaching the cap; a quieter one every 5 s, so a
/// node that starts, or sees its first click late, knows roughly how far the others got.
const ACTIVE_MS: u64 = 60_000;
const REFRESH_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClickCap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u64>,
}

impl ClickCap {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.total.is_none() && self.daily.is_none() {
            return Err(FieldError::new(
                "click_cap",
                "needs total, daily or both (null removes the cap)",
            ));
        }
        for (field, value) in [
            ("click_cap.total", self.total),
            ("click_cap.daily", self.daily),
        ] {
            if value == Some(0) {
                return Err(FieldError::new(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// One capped link's counts on this node.
#[derive(Debug, Default)]
pub struct Counter {
    /// Human clicks counted here and not yet added to the shared counts.
    pending: AtomicU64,
    /// Clicks on their way into the shared counts: still counted here until the answer says
    /// they are in.
    sending: AtomicU64,
    /// The shared counts as last learned: all time, and on UTC day `day`.
    total: AtomicU64,
    today: AtomicU64,
    day: AtomicU32,
    learned_ms: AtomicU64,
    /// When clicks here were last sent.
    sent_ms: AtomicU64,
}

/// A compiled link's cap: its limits and its counter (shared by every compiled version of
/// the link, so a change to the link keeps its count).
#[derive(Debug)]
pub struct Cap {
    pub limits: ClickCap,
    pub counter: Arc<Counter>,
}

impl Cap {
    pub fn reached(&self, now_ms: u64) -> bool {
        let c = &self.counter;
        let pending = c.pending.load(Relaxed) + c.sending.load(Relaxed);
        let over_total = self
            .limits
            .total
            .is_some_and(|cap| c.total.load(Relaxed) + pending >= cap);
        over_total
            || self.limits.daily.is_some_and(|cap| {
                let today = match c.day.load(Relaxed) == day_of(now_ms) {
                    true => c.today.load(Relaxed),
                    false => 0,
                };
                today + pending >= cap
            })
    }

    /// One more human click stored.
    pub fn count(&self) {
        self.counter.pending.fetch_add(1, Relaxed);
    }
}

pub fn day_of(ms: u64) -> u32 {
    (ms / time::MS_PER_DAY) as u32
}

/// The counters of this node's capped links, by link id.
#[derive(Default)]
pub struct Counters(parking_lot::Mutex<AHashMap<Box<str>, Arc<Counter>>>);

/// Clicks taken from counters to be added to the shared counts.
pub struct Due {
    pub link_id: Box<str>,
    pub counter: Arc<Counter>,
    pub clicks: u64,
}

impl Counters {
    pub fn of(&self, link_id: &str) -> Arc<Counter> {
        self.0.lock().entry(link_id.into()).or_default().clone()
    }

    /// Forgets counters no live link uses any more.
    pub fn prune(&self) {
        self.0.lock().retain(|_, c| Arc::strong_count(c) > 1);
    }

    /// The counters with clicks to send or counts to refresh, their pending clicks taken.
    pub fn due(&self, now_ms: u64) -> Vec<Due> {
        self.0
            .lock()
            .iter()
            .filter_map(|(id, c)| {
                let since = |at: &AtomicU64| now_ms.saturating_sub(at.load(Relaxed));
                let clicks = c.pending.swap(0, Relaxed);
                if clicks > 0 {
                    c.sending.fetch_add(clicks, Relaxed);
                    c.sent_ms.store(now_ms, Relaxed);
                }
                let due = clicks > 0
                    || since(&c.sent_ms) < ACTIVE_MS
                    || since(&c.learned_ms) >= REFRESH_MS;
                due.then(|| Due {
                    link_id: id.clone(),
                    counter: c.clone(),
                    clicks,
                })
            })
            .collect()
    }
}

impl Due {
    /// The shared counts after this node's clicks were added.
    pub fn learned(&self, total: u64, today: u64, day: u32, now_ms: u64) {
        let c = &self.counter;
        c.total.store(total, Relaxed);
        c.today.store(today, Relaxed);
        c.day.store(day, Relaxed);
        c.learned_ms.store(now_ms, Relaxed);
        c.sending.fetch_sub(self.clicks, Relaxed);
    }

    /// The counts could not be sent: the clicks wait for the next tick.
    pub fn put_back(&self) {
        self.counter.sending.fetch_sub(self.clicks, Relaxed);
        self.counter.pending.fetch_add(self.clicks, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_reached_at_its_count() {
        let now = 20_000 * time::MS_PER_DAY + 1_000;
        let counters = Counters::default();
        let cap = |total, daily| Cap {
            limits: ClickCap { total, daily },
            counter: counters.of("l"),
        };
        let total = cap(Some(3), None);
        let daily = cap(None, Some(2));
        assert!(!total.reached(now) && !daily.reached(now));
        total.count();
        assert!(!total.reached(now) && !daily.reached(now));
        total.count();
        assert!(!total.reached(now) && daily.reached(now), "2 of daily 2");
        // On their way: still counted here. Sent: the shared counts hold them (and another
        // node's click).
        let due = counters.due(now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].clicks, 2);
        assert!(daily.reached(now), "clicks being sent still count");
        due[0].learned(3, 3, day_of(now), now);
        assert!(total.reached(now), "3 of total 3");
        // The next UTC day starts the daily count again, not the total.
        let tomorrow = now + time::MS_PER_DAY;
        assert!(!daily.reached(tomorrow) && total.reached(tomorrow));
        // Clicked here lately: refreshed every tick; a failed send puts clicks back.
        assert_eq!(counters.due(now + 1)[0].clicks, 0);
        total.count();
        let due = counters.due(now + 1);
        due[0].put_back();
        assert_eq!(counters.due(now + 2)[0].clicks, 1);
        // Quiet for a minute: refreshed only when its counts are 5 s old.
        let quiet = now + 2 + ACTIVE_MS;
        counters.due(quiet)[0].learned(3, 3, day_of(quiet), quiet);
        assert!(counters.due(quiet + 1).is_empty());
        assert_eq!(
            counters.due(quiet + REFRESH_MS).len(),
            1,
            "stale: refreshed"
        );
    }

    #[test]
    fn caps_validate() {
        let cases = [
            (Some(1), None, None),
            (None, Some(5), None),
            (None, None, Some("click_cap")),
            (Some(0), None, Some("click_cap.total")),
            (Some(10), Some(0), Some("click_cap.daily")),
        ];
        for (total, daily, field) in cases {
            let got = ClickCap { total, daily }.validate().err().map(|e| e.field);
            assert_eq!(got.as_deref(), field, "{total:?} {daily:?}");
        }
    }
}
