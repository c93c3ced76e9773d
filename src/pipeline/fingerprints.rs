//! The fingerprint writer: a side output of the flusher. For each human click from a mobile
//! platform the encoder offers a fingerprint (tenant, platform, IP hash → the click and its
//! facts); a background task writes them to Redis in pipelined batches, each set living as
//! long as its tenant's fingerprint window. The redirect never waits on any of it; while Redis
//! is down the writer retries its batch and the bounded queue buffers the rest; past the bound
//! fingerprints are dropped and counted (`sluice_fingerprints_dropped_total`).

use std::time::{Duration, Instant};

use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::attribution::install::ClickFacts;
use crate::attribution::AttributionConfig;
use crate::click::row::Captured;
use crate::metrics::Metrics;
use crate::store::redis::Redis;

/// Hand-overs (one per encoder drain, ≤ 4,096 fingerprints each) buffered while Redis is slow.
pub const CAPACITY: usize = 32;
const BATCH: usize = 4_096;
/// How long a batch gathers before it is written (a deferred match comes seconds later).
const GATHER: Duration = Duration::from_millis(10);
const CONFIG_TTL: Duration = Duration::from_secs(10);
/// The newest clicks kept per fingerprint: one carrier-NAT address can send a flood, and a
/// deferred match only ever wants the newest unclaimed click.
pub const PER_FINGERPRINT: usize = 64;

#[derive(Debug)]
pub struct Fingerprint {
    pub tenant: String,
    pub platform: &'static str,
    pub ip_hash: u64,
    pub ts_ms: u64,
    /// `<click id hex>|<facts JSON>`: what the flip claims and hands back.
    pub member: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Facts<'a> {
    l: &'a str,
    c: &'a str,
    s: &'a str,
    m: &'a str,
    p: &'a str,
    u: [&'a str; 5],
    g: &'a str,
    t: u64,
}

impl Facts<'_> {
    /// The same JSON as `serde_json::to_writer` (a test holds them equal), written directly:
    /// serde's per-character escaping was ~30% of the encoder's work per mobile click.
    fn write(&self, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            } else {
                serde_json::to_writer(&mut *out, s).expect("a string serializes");
            }
        }
        let fields = [
            ("{\"l\":", self.l),
            (",\"c\":", self.c),
            (",\"s\":", self.s),
            (",\"m\":", self.m),
            (",\"p\":", self.p),
        ];
        for (name, value) in fields {
            out.extend_from_slice(name.as_bytes());
            string(out, value);
        }
        out.extend_from_slice(b",\"u\":[");
        for (i, sub) in self.u.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, sub);
        }
        out.extend_from_slice(b"],\"g\":");
        string(out, self.g);
        out.extend_from_slice(b",\"t\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.t).as_bytes());
        out.push(b'}');
    }
}

impl Fingerprint {
    /// The fingerprint of a click, if it is one to match installs against.
    pub fn of(c: &Captured<'_>, human: bool) -> Option<Fingerprint> {
        let platform = match c.platform {
            "ios" => "ios",
            "android" => "android",
            _ => return None,
        };
        if !human {
            return None;
        }
        let facts = Facts {
            l: c.link_id,
            c: c.campaign,
            s: c.source,
            m: c.medium,
            p: c.partner_click_id,
            u: c.subs,
            g: c.place.country,
            t: c.ts_ms,
        };
        let mut member = Vec::with_capacity(160);
        let mut id = [0u8; 32];
        hex::encode_to_slice(c.id, &mut id).expect("32 hex digits");
        member.extend_from_slice(&id);
        member.push(b'|');
        facts.write(&mut member);
        Some(Fingerprint {
            tenant: c.tenant_id.to_string(),
            platform,
            ip_hash: c.ip_hash,
            ts_ms: c.ts_ms,
            member,
        })
    }
}

/// The click facts in a fingerprint member (as the flip returns it).
pub fn parse_member(member: &str) -> Option<ClickFacts> {
    let (hex_id, json) = member.split_once('|')?;
    let mut click_id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut click_id).ok()?;
    let f: Facts<'_> = serde_json::from_str(json).ok()?;
    Some(ClickFacts {
        click_id,
        ts_ms: f.t,
        link_id: f.l.into(),
        campaign: f.c.into(),
        source: f.s.into(),
        medium: f.m.into(),
        partner_click_id: f.p.into(),
        subs: f.u.map(String::from),
        country: f.g.into(),
    })
}

pub async fn run(
    redis: Redis,
    mut rx: mpsc::Receiver<Vec<Fingerprint>>,
    metrics: &'static Metrics,
) {
    // aHash, not SipHash: these maps are hashed twice per fingerprint, and SipHash was half of
    // the writer's work (keys are tenants and IP hashes, never attacker-chosen strings alone).
    let mut configs: AHashMap<String, (AttributionConfig, Instant)> = AHashMap::new();
    let mut failing = false;
    while let Some(mut batch) = rx.recv().await {
        // Gathering for a few ms makes fewer, larger pipelines: Redis's cost per fingerprint
        // is mostly per command and per round trip, and a flood from one address collapses.
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => batch.extend(more),
                _ => break,
            }
        }
        // One ZADD per fingerprint per batch, however many clicks it got (a shared IP's
        // clicks arrive together), then the TTL and the cap on its size.
        type Group = (u64, Vec<(u64, Vec<u8>)>);
        let mut groups: AHashMap<(String, &'static str, u64), Group> = AHashMap::new();
        for fp in batch.drain(..) {
            let fresh = configs
                .get(&fp.tenant)
                .is_some_and(|(_, at)| at.elapsed() < CONFIG_TTL);
            if !fresh {
                // On a Redis error the defaults stand in until the next look.
                let config = redis
                    .attribution_config(&fp.tenant)
                    .await
                    .unwrap_or_default();
                configs.insert(fp.tenant.clone(), (config, Instant::now()));
            }
            let config = &configs[&fp.tenant].0;
            if !config.fingerprint_enabled {
                continue;
            }
            let window_ms = config.window_ms();
            groups
                .entry((fp.tenant, fp.platform, fp.ip_hash))
                .or_insert_with(|| (window_ms, Vec::new()))
                .1
                .push((fp.ts_ms, fp.member));
        }
        let mut pipe = redis::pipe();
        for ((tenant, platform, ip_hash), (window_ms, members)) in &groups {
            // Clicks arrive in time order and the set keeps only the newest anyway.
            let newest = &members[members.len().saturating_sub(PER_FINGERPRINT)..];
            let key = redis.fingerprint_key(tenant, platform, *ip_hash);
            pipe.zadd_multiple(&key, newest)
                .ignore()
                .pexpire(&key, *window_ms as i64)
                .ignore()
                .zremrangebyrank(&key, 0, -(PER_FINGERPRINT as isize) - 1)
                .ignore();
        }
        let mut backoff = Duration::from_millis(100);
        while let Err(error) = redis.query_pipeline(&pipe).await {
            metrics.redis_errors.increment(1);
            if !failing {
                failing = true;
                warn!(%error, "fingerprint writes failing; buffering until Redis answers");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if failing {
            failing = false;
            info!("fingerprint writes recovered");
        }
        if configs.len() > 100_000 {
            configs.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_written_as_serde_writes_them() {
        let cases: &[[&str; 11]] = &[
            ["", "", "", "", "", "", "", "", "", "", ""],
            [
                "summer", "fb", "cpc", "paid", "abc-123", "x", "", "", "", "y", "DE",
            ],
            [
                "q\"uote",
                "back\\slash",
                "tab\t",
                "nl\n",
                "\u{1}",
                "ü",
                "日本",
                "é\"",
                "\u{7f}",
                "/",
                "US",
            ],
        ];
        for c in cases {
            let facts = Facts {
                l: c[0],
                c: c[1],
                s: c[2],
                m: c[3],
                p: c[4],
                u: [c[5], c[6], c[7], c[8], c[9]],
                g: c[10],
                t: 1_795_305_600_123,
            };
            let mut ours = Vec::new();
            facts.write(&mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&facts).unwrap(),
                "{c:?}"
            );
        }
    }
}
