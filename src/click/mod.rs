//! The Click: what the redirect captures (cheaply, on the hot path) and what the flusher turns
//! into a ClickHouse row (enrichment: keyed IP hash, geo, user agent, bot and preview flags).

pub mod agent;
pub mod enrich;
pub mod geo;
pub mod id;
pub mod row;

use std::net::IpAddr;
use std::sync::Arc;

pub use id::ClickId;

use crate::link::LiveLink;

/// Device platform, decided on the hot path from the user agent because it picks the
/// destination (cheap substring checks, no full parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Ios,
    Android,
    Other,
}

impl Platform {
    pub fn from_user_agent(ua: &[u8]) -> Platform {
        // iPadOS 13+ Safari claims to be a Mac; such clicks are "other", as most trackers do.
        if contains(ua, b"iPhone") || contains(ua, b"iPad") || contains(ua, b"iPod") {
            Platform::Ios
        } else if contains(ua, b"Android") {
            Platform::Android
        } else {
            Platform::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Other => "other",
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One click as the redirect saw it. It lives only in memory: the raw `ip` is hashed and
/// geolocated by the flusher and never written anywhere.
#[derive(Debug)]
pub struct Click {
    pub id: ClickId,
    pub ts_ms: u64,
    pub link: Arc<LiveLink>,
    pub ip: IpAddr,
    pub user_agent: Box<str>,
    pub referrer: Box<str>,
    pub partner_click_id: Box<str>,
    pub subs: [Box<str>; 5],
    pub platform: Platform,
    /// A `HEAD` request: counted as a preview, never as a click.
    pub head: bool,
    /// The write-ahead segment holding this click (0: not written ahead).
    pub wal_segment: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_from_user_agent() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit",
                Platform::Ios,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_1 like Mac OS X)",
                Platform::Ios,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36",
                Platform::Android,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120",
                Platform::Other,
            ),
            ("", Platform::Other),
        ];
        for (ua, want) in cases {
            assert_eq!(Platform::from_user_agent(ua.as_bytes()), want, "{ua}");
        }
    }
}
