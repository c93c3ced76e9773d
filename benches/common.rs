//! Fixtures shared by the benches.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use sluice::click::{Click, ClickId, Platform, Texts};
use sluice::link::{Interner, Link, LiveLink};

pub const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
pub const UA_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
pub const UA_DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

pub fn live_link() -> Arc<LiveLink> {
    live_link_named("promo")
}

pub fn live_link_named(id: &str) -> Arc<LiveLink> {
    Arc::new(
        LiveLink::compile(&Link {
            id: id.into(),
            tenant_id: "t_0123456789abcdef".into(),
            destination: "https://shop.example/p?cid={click_id}&pcid={partner_click_id}&s1={sub1}&c={campaign}".into(),
            campaign: "spring sale".into(),
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
        }, &Interner::default())
        .unwrap(),
    )
}

pub fn click(link: &Arc<LiveLink>, ip: IpAddr) -> Click {
    Click {
        id: ClickId::new(1_795_305_600_123),
        ts_ms: 1_795_305_600_123,
        link: link.clone(),
        ip,
        texts: Texts::new(
            UA,
            "https://news.example/article",
            "abc123",
            ["banner", "", "", "", ""],
        ),
        platform: Platform::Ios,
        head: false,
        wal_segment: 0,
        variant: None,
    }
}

/// The test City database written by tests/support/make_geo_db.py, when present.
pub fn geo_path() -> Option<std::path::PathBuf> {
    let p = std::env::var("SLUICE_TEST_GEOIP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("var/test/geo.mmdb")
        });
    p.exists().then_some(p)
}
