//! The fingerprint writer: a side output of the flusher. For each human click the encoder
//! offers a fingerprint (tenant, device, IP hash → the click and its facts; the device is the
//! app platform, or `web-<browser family>` for any other click); a background task writes them to Redis in pipelined batches, each set living as
//! long as its tenant's fingerprint window. The redirect never waits on any of it; while Redis
//! is down the writer retries its batch and the bounded queue buffers the rest; past the bound
//! fingerprints are dropped and counted (`sluice_fingerprints_dropped_total`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::attribution::install::ClickFacts;
use crate::attribution::AttributionConfig;
use crate::click::{Click, Platform};
use crate::metrics::Metrics;
use crate::store::redis::Redis;

/// Hand-overs (one per encoder drain, ≤ 4,096 fingerprints each) buffered while Redis is slow.
pub const CAPACITY: usize = 32;
/// Emptied hand-overs kept for reuse (a full one holds ~0.9 MB); past these, the encoder
/// starts a fresh vector as large as its last drain.
const SPARE: usize = 8;
const BATCH: usize = 16_384;
/// How long a batch gathers before it is written: a deferred match comes seconds later, and
/// each gathering costs Redis a ZADD, PEXPIRE and trim per fingerprint it touched.
const GATHER: Duration = Duration::from_millis(50);
const CONFIG_TTL: Duration = Duration::from_secs(10);
/// The newest clicks kept per fingerprint: one carrier-NAT address can send a flood, and a
/// deferred match only ever wants the newest unclaimed click.
pub const PER_FINGERPRINT: usize = 64;

/// The encoder's end of the writer: a drain's fingerprints go out in one vector and come back
/// emptied, their room kept. Growing a fresh vector per drain (and the writer appending them
/// into one) was a sixth of the encoder's and the writer's work, mostly `realloc` copies.
#[derive(Clone)]
pub struct Handover {
    tx: mpsc::Sender<Vec<Fingerprint>>,
    spare: Arc<ArrayQueue<Vec<Fingerprint>>>,
}

/// The writer's end: the vectors sent, and where their emptied room goes back.
pub struct Intake {
    rx: mpsc::Receiver<Vec<Fingerprint>>,
    spare: Arc<ArrayQueue<Vec<Fingerprint>>>,
}

pub fn handover() -> (Handover, Intake) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let spare = Arc::new(ArrayQueue::new(SPARE));
    let intake = Intake {
        rx,
        spare: spare.clone(),
    };
    (Handover { tx, spare }, intake)
}

impl Handover {
    /// Hands `fingerprints` to the writer, leaving it empty with room; when the writer is
    /// that far behind, they are dropped and their number returned.
    pub fn send(&self, fingerprints: &mut Vec<Fingerprint>) -> Result<(), usize> {
        let room = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(fingerprints.len()));
        let full = std::mem::replace(fingerprints, room);
        self.tx.try_send(full).map_err(|refused| {
            let dropped = refused.into_inner();
            let n = dropped.len();
            give_back(&self.spare, dropped);
            n
        })
    }
}

/// Empties a vector of fingerprints and keeps its room for the encoder's next drain (unless
/// enough are kept already).
fn give_back(spare: &ArrayQueue<Vec<Fingerprint>>, mut used: Vec<Fingerprint>) {
    used.clear();
    let _ = spare.push(used);
}

/// A human mobile click on its way to the writer. It carries the click itself, not the
/// member it becomes: the writer keeps only the newest clicks per fingerprint, so a flood
/// from one address costs a move per click, and only the clicks kept are written out.
pub struct Fingerprint {
    pub click: Click,
    pub ip_hash: u64,
    /// The device part of its key (`device`).
    device: &'static str,
    /// ISO country code, zeros when unknown (copied: the place borrows the geo database).
    country: [u8; 2],
    /// The address is in the anonymous-address database.
    anonymous: bool,
}

#[derive(Serialize)]
struct Facts<'a> {
    l: &'a str,
    c: &'a str,
    s: &'a str,
    m: &'a str,
    p: &'a str,
    u: [&'a str; 5],
    g: &'a str,
    t: u64,
    /// The split variant; left out when none.
    #[serde(skip_serializing_if = "str::is_empty")]
    v: &'a str,
    /// 1 when the address is anonymous; left out when not.
    #[serde(skip_serializing_if = "is_zero")]
    a: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
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
        if !self.v.is_empty() {
            out.extend_from_slice(b",\"v\":");
            string(out, self.v);
        }
        if self.a != 0 {
            out.extend_from_slice(b",\"a\":1");
        }
        out.push(b'}');
    }
}

impl Fingerprint {
    /// The fingerprint of a click from a browser of family `browser` (woothee's name), if it
    /// is one to match installs against: every human click.
    pub fn of(
        click: Click,
        ip_hash: u64,
        country: [u8; 2],
        anonymous: bool,
        human: bool,
        browser: &str,
    ) -> Option<Fingerprint> {
        if !human {
            return None;
        }
        Some(Fingerprint {
            device: device(click.platform, browser),
            click,
            ip_hash,
            country,
            anonymous,
        })
    }

    /// A country as the fingerprint keeps it (ISO codes are two letters; anything else is
    /// kept as unknown).
    pub fn country_code(country: &str) -> [u8; 2] {
        match *country.as_bytes() {
            [a, b] => [a, b],
            _ => [0; 2],
        }
    }

    fn tenant(&self) -> &str {
        &self.click.link.labels.tenant_id
    }

    fn country(&self) -> &str {
        std::str::from_utf8(&self.country)
            .ok()
            .filter(|c| !c.starts_with('\0'))
            .unwrap_or("")
    }

    /// `<click id hex>|<facts JSON>`: what the flip claims and hands back.
    fn member(&self) -> Vec<u8> {
        let c = &self.click;
        let link = &c.link;
        let facts = Facts {
            l: &link.id,
            c: &link.labels.campaign,
            s: &link.labels.source,
            m: &link.labels.medium,
            p: c.texts.partner_click_id(),
            u: c.texts.subs(),
            g: self.country(),
            t: c.ts_ms,
            v: c.variant.map_or("", |at| link.variant_id(at)),
            a: self.anonymous as u8,
        };
        let mut member = Vec::with_capacity(160);
        let mut id = [0u8; 32];
        hex::encode_to_slice(c.id.0, &mut id).expect("32 hex digits");
        member.extend_from_slice(&id);
        member.push(b'|');
        facts.write(&mut member);
        member
    }
}

/// The click facts in a fingerprint member (as the flip returns it).
pub fn parse_member(member: &str) -> Option<ClickFacts> {
    let (hex_id, json) = member.split_once('|')?;
    let mut click_id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut click_id).ok()?;
    // Owned strings: a value written with escapes (a quote in a campaign) cannot be borrowed.
    #[derive(Deserialize)]
    struct Owned {
        l: String,
        c: String,
        s: String,
        m: String,
        p: String,
        u: [String; 5],
        g: String,
        t: u64,
        #[serde(default)]
        v: String,
        #[serde(default)]
        a: u8,
    }
    let f: Owned = serde_json::from_str(json).ok()?;
    Some(ClickFacts {
        click_id,
        ts_ms: f.t,
        link_id: f.l,
        campaign: f.c,
        source: f.s,
        medium: f.m,
        partner_click_id: f.p,
        subs: f.u,
        country: f.g,
        variant: f.v,
        anonymous: f.a != 0,
        ..ClickFacts::default()
    })
}

/// The device part of a fingerprint's key: the platform of an app click (`ios`,
/// `android`); for any other click `web-` and the browser's family, so that an install
/// reported from a web page (`platform: web`) matches a click from the same kind of browser
/// behind the same address.
pub fn device(platform: Platform, browser: &str) -> &'static str {
    match platform {
        Platform::Ios => "ios",
        Platform::Android => "android",
        Platform::Other => match browser {
            "Chrome" => "web-chrome",
            "Safari" => "web-safari",
            "Firefox" => "web-firefox",
            "Edge" => "web-edge",
            "Opera" => "web-opera",
            "Internet Explorer" => "web-ie",
            "Vivaldi" => "web-vivaldi",
            "Yandex Browser" => "web-yandex",
            _ => "web-other",
        },
    }
}

pub async fn run(redis: Redis, mut intake: Intake, metrics: &'static Metrics) {
    // aHash, not SipHash: these maps are hashed twice per fingerprint, and SipHash was half of
    // the writer's work (keys are tenants and IP hashes, never attacker-chosen strings alone).
    let mut configs: AHashMap<String, (AttributionConfig, Instant)> = AHashMap::new();
    let mut failing = false;
    // The drains gathered, each kept in the vector it came in (appending them into one was a
    // copy per fingerprint and a regrowth per gathering).
    let mut batch: Vec<Vec<Fingerprint>> = Vec::new();
    while let Some(first) = intake.rx.recv().await {
        // Gathering for a few ms makes fewer, larger pipelines: Redis's cost per fingerprint
        // is mostly per command and per round trip, and a flood from one address collapses.
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut gathered = first.len();
        batch.push(first);
        while gathered < BATCH {
            match tokio::time::timeout_at(deadline, intake.rx.recv()).await {
                Ok(Some(more)) => {
                    gathered += more.len();
                    batch.push(more);
                }
                _ => break,
            }
        }
        // One ZADD per fingerprint per batch, however many clicks it got (a shared IP's
        // clicks arrive together), then the TTL and the cap on its size.
        let mut groups: AHashMap<(&str, &str, u64), Vec<&Fingerprint>> = AHashMap::new();
        for fp in batch.iter().flatten() {
            groups
                .entry((fp.tenant(), fp.device, fp.ip_hash))
                .or_default()
                .push(fp);
        }
        let mut pipe = redis::pipe();
        let mut written = 0;
        for ((tenant, device, ip_hash), clicks) in &groups {
            let fresh = configs
                .get(*tenant)
                .is_some_and(|(_, at)| at.elapsed() < CONFIG_TTL);
            if !fresh {
                // On a Redis error the defaults stand in until the next look.
                let config = redis.attribution_config(tenant).await.unwrap_or_default();
                configs.insert(tenant.to_string(), (config, Instant::now()));
            }
            let config = &configs[*tenant].0;
            if !config.fingerprint_enabled {
                continue;
            }
            // Clicks arrive in time order and the set keeps only the newest anyway.
            let newest: Vec<(u64, Vec<u8>)> = clicks
                [clicks.len().saturating_sub(PER_FINGERPRINT)..]
                .iter()
                .map(|fp| (fp.click.ts_ms, fp.member()))
                .collect();
            written += newest.len() as u64;
            let key = redis.fingerprint_key(tenant, device, *ip_hash);
            pipe.zadd_multiple(&key, &newest)
                .ignore()
                .pexpire(&key, config.window_ms() as i64)
                .ignore()
                .zremrangebyrank(&key, 0, -(PER_FINGERPRINT as isize) - 1)
                .ignore();
        }
        drop(groups);
        for drained in batch.drain(..) {
            give_back(&intake.spare, drained);
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
        metrics.fingerprints_written.increment(written);
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
pub(crate) mod tests {
    use super::*;
    use crate::click::{ClickId, Texts};
    use crate::link::{Interner, Link, LiveLink};
    use std::sync::Arc;

    /// A click for tests (also the ring's).
    pub(crate) fn click(platform: Platform) -> Click {
        let link = LiveLink::compile(
            &Link {
                id: "promo".into(),
                tenant_id: "t_0123456789abcdef".into(),
                destination: "https://shop.example/p".into(),
                campaign: "spring \"sale\"".into(),
                source: "fb".into(),
                medium: "cpc".into(),
                partner_id: None,
                ios_destination: None,
                android_destination: None,
                fallback_url: None,
                paused: false,
                expires_at: None,
                rules: Vec::new(),
                split: None,
                click_cap: None,
                created_at: String::new(),
                updated_at: String::new(),
                deleted_at: None,
            },
            &Interner::default(),
        )
        .unwrap();
        Click {
            id: ClickId::new(1_795_305_600_123),
            ts_ms: 1_795_305_600_123,
            link: Arc::new(link),
            ip: "81.2.69.160".parse().unwrap(),
            texts: Texts::new("ua", "", "abc123", ["banner", "", "", "", "x"]),
            platform,
            head: false,
            wal_segment: 0,
            variant: None,
        }
    }

    #[test]
    fn handed_over_vectors_come_back_with_their_room() {
        let (writer, mut intake) = handover();
        let drain = |n| -> Vec<Fingerprint> {
            (0..n)
                .map(|_| {
                    Fingerprint::of(click(Platform::Ios), 1, *b"GB", false, true, "Safari").unwrap()
                })
                .collect()
        };
        let mut fingerprints = drain(3);
        writer.send(&mut fingerprints).unwrap();
        assert!(fingerprints.is_empty());
        // The writer empties what it got and gives it back; the next drain fills that room.
        let got = intake.rx.try_recv().unwrap();
        assert_eq!(got.len(), 3);
        give_back(&intake.spare, got);
        fingerprints.extend(drain(1));
        writer.send(&mut fingerprints).unwrap();
        assert!(fingerprints.is_empty() && fingerprints.capacity() >= 3);
        // A writer that far behind: the channel is full, the drain is dropped and counted,
        // and its room kept.
        for _ in 1..CAPACITY {
            fingerprints.extend(drain(1));
            writer.send(&mut fingerprints).unwrap();
        }
        fingerprints.extend(drain(5));
        assert_eq!(writer.send(&mut fingerprints), Err(5));
        let kept = intake.spare.pop().unwrap();
        assert!(kept.is_empty() && kept.capacity() >= 5);
    }

    #[test]
    fn devices_of_app_and_web_clicks() {
        // (platform, browser, device)
        let cases = [
            (Platform::Ios, "Safari", "ios"),
            (Platform::Android, "Chrome", "android"),
            (Platform::Other, "Chrome", "web-chrome"),
            (Platform::Other, "Firefox", "web-firefox"),
            (Platform::Other, "Safari", "web-safari"),
            (Platform::Other, "UNKNOWN", "web-other"),
        ];
        for (platform, browser, want) in cases {
            assert_eq!(device(platform, browser), want, "{platform:?} {browser}");
        }
    }

    #[test]
    fn members_carry_the_clicks_facts() {
        let cases = [
            ("GB", Platform::Ios, true, Some("GB")),
            ("", Platform::Android, true, Some("")),
            ("not-a-code", Platform::Ios, true, Some("")),
            ("GB", Platform::Other, true, Some("GB")),
            ("GB", Platform::Ios, false, None),
        ];
        for (country, platform, human, expect) in cases {
            let c = click(platform);
            let id = c.id.0;
            let code = Fingerprint::country_code(country);
            let fp = Fingerprint::of(c, 42, code, false, human, "Chrome");
            let Some(expect) = expect else {
                assert!(fp.is_none(), "{country} {platform:?} {human}");
                continue;
            };
            let fp = fp.unwrap();
            assert_eq!((fp.tenant(), fp.ip_hash), ("t_0123456789abcdef", 42));
            let member = String::from_utf8(fp.member()).unwrap();
            let facts = parse_member(&member).unwrap();
            assert_eq!(facts.click_id, id);
            assert_eq!(facts.ts_ms, 1_795_305_600_123);
            assert_eq!(
                (
                    &*facts.link_id,
                    &*facts.campaign,
                    &*facts.source,
                    &*facts.medium
                ),
                ("promo", "spring \"sale\"", "fb", "cpc")
            );
            assert_eq!(facts.partner_click_id, "abc123");
            assert_eq!(facts.subs, ["banner", "", "", "", "x"]);
            assert_eq!(facts.country, expect);
        }
    }

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
                v: "",
                a: 0,
            };
            // Without a variant, with each case's text as one, and anonymous.
            for facts in [Facts { v: c[1], ..facts }, Facts { a: 1, ..facts }, facts] {
                let mut ours = Vec::new();
                facts.write(&mut ours);
                let json = String::from_utf8(ours).unwrap();
                assert_eq!(json, serde_json::to_string(&facts).unwrap(), "{c:?}");
                assert_eq!(
                    parse_member(&format!("{}|{json}", "ab".repeat(16)))
                        .unwrap()
                        .variant,
                    facts.v
                );
                assert_eq!(
                    parse_member(&format!("{}|{json}", "ab".repeat(16)))
                        .unwrap()
                        .anonymous,
                    facts.a == 1
                );
            }
        }
    }
}
