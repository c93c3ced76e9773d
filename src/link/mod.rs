//! Tracking links: the stored entity, its validation, and the compiled form the redirect uses.

pub mod cap;
pub mod catalog;
pub mod csv;
pub mod qr;
pub mod routing;
pub mod sync;
pub mod table;
pub mod template;

use std::sync::Arc;

use ahash::AHashSet;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::time;

pub use routing::Routing;
pub use table::LinkTable;
pub use template::{Template, TemplateError};

/// Root path segments that can never be link codes (SPEC: reserved routes).
pub const RESERVED: &[&str] = &[
    "v1",
    "w",
    "metrics",
    "healthz",
    "readyz",
    "dashboard",
    "favicon.ico",
    "robots.txt",
];

pub const MAX_FIELD_LEN: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub id: String,
    pub tenant_id: String,
    pub destination: String,
    #[serde(default)]
    pub campaign: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub medium: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ios_destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub android_destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    #[serde(default)]
    pub paused: bool,
    /// RFC 3339; from then on the link answers as a paused one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Ordered, first match wins (SPEC "Routing").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<routing::Rule>,
    /// A split test for the clicks no rule takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<routing::Variant>>,
    /// Past it (in human clicks) the link answers as a paused one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_cap: Option<cap::ClickCap>,
    pub created_at: String,
    pub updated_at: String,
    /// Deleted links stay in the global table (their code keeps answering 410 and can never
    /// be reused) but vanish from the tenant's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

/// A link compiled for the redirect: templates parsed once, not per click, and the labels
/// many links share held once per node. Nothing the redirect does not read is kept: a node
/// holds millions of these.
#[derive(Debug)]
pub struct LiveLink {
    pub id: Box<str>,
    pub labels: Arc<Labels>,
    pub destination: Template,
    /// Most links have no platform destinations, fallback, expiry or routing: one null
    /// pointer for them.
    alternates: Option<Box<Alternates>>,
    gone: bool,
}

/// What a link's clicks are recorded under. Links of one tenant, campaign, source, medium
/// and partner share one copy (`Interner`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Labels {
    pub tenant_id: Box<str>,
    pub campaign: Box<str>,
    pub source: Box<str>,
    pub medium: Box<str>,
    pub partner_id: Option<Box<str>>,
}

#[derive(Debug)]
struct Alternates {
    ios: Option<Template>,
    android: Option<Template>,
    fallback: Option<Template>,
    /// When the link expires (ms since the epoch).
    expires_ms: Option<u64>,
    routing: Option<Routing>,
    cap: Option<cap::Cap>,
}

impl LiveLink {
    /// The link compiled, or the first field that does not (what validation refuses).
    pub fn compile(link: &Link, labels: &Interner) -> Result<LiveLink, FieldError> {
        let template = |field: &str, url: &str| {
            Template::parse(url).map_err(|e| FieldError::new(field, e.to_string()))
        };
        let opt = |field: &str, url: &Option<String>| {
            url.as_deref().map(|url| template(field, url)).transpose()
        };
        let alternates = Alternates {
            ios: opt("ios_destination", &link.ios_destination)?,
            android: opt("android_destination", &link.android_destination)?,
            fallback: opt("fallback_url", &link.fallback_url)?,
            expires_ms: link.expires_at.as_deref().and_then(time::parse_rfc3339),
            routing: Routing::compile(&link.rules, link.split.as_deref(), &link.id)?,
            cap: link.click_cap.map(|limits| cap::Cap {
                limits,
                counter: labels.counters.of(&link.id),
            }),
        };
        let any = alternates.ios.is_some()
            || alternates.android.is_some()
            || alternates.fallback.is_some()
            || alternates.expires_ms.is_some()
            || alternates.routing.is_some()
            || alternates.cap.is_some();
        Ok(LiveLink {
            id: link.id.as_str().into(),
            labels: labels.intern(Labels {
                tenant_id: link.tenant_id.as_str().into(),
                campaign: link.campaign.as_str().into(),
                source: link.source.as_str().into(),
                medium: link.medium.as_str().into(),
                partner_id: link.partner_id.as_deref().map(Into::into),
            }),
            destination: template("destination", &link.destination)?,
            alternates: any.then(|| Box::new(alternates)),
            gone: link.paused || link.deleted_at.is_some(),
        })
    }

    /// Paused, deleted, expired and capped links answer 410 (or their fallback) and record
    /// no click.
    pub fn is_gone(&self, now_ms: u64) -> bool {
        self.gone
            || self.alternates.as_ref().is_some_and(|a| {
                a.expires_ms.is_some_and(|expires| now_ms >= expires)
                    || a.cap.as_ref().is_some_and(|cap| cap.reached(now_ms))
            })
    }

    /// The link's click cap, which counts its human clicks.
    pub fn cap(&self) -> Option<&cap::Cap> {
        self.alternates.as_ref()?.cap.as_ref()
    }

    pub fn ios(&self) -> Option<&Template> {
        self.alternates.as_ref()?.ios.as_ref()
    }

    pub fn android(&self) -> Option<&Template> {
        self.alternates.as_ref()?.android.as_ref()
    }

    pub fn fallback(&self) -> Option<&Template> {
        self.alternates.as_ref()?.fallback.as_ref()
    }

    /// The destination for a platform (`ios`, `android`, anything else): its own, when the
    /// link has one, else the link's.
    pub fn destination_for(&self, platform: &str) -> &Template {
        match platform {
            "ios" => self.ios(),
            "android" => self.android(),
            _ => None,
        }
        .unwrap_or(&self.destination)
    }

    pub fn routing(&self) -> Option<&Routing> {
        self.alternates.as_ref()?.routing.as_ref()
    }

    /// The id of the variant a click on this (compiled) link got.
    pub fn variant_id(&self, at: routing::VariantAt) -> &str {
        self.routing().map_or("", |r| r.variant_id(at))
    }
}

/// What compiled links share: one copy of each distinct `Labels` the live links have, and
/// each capped link's click counter (kept while the link is recompiled). What no link uses
/// any more is dropped by `prune` (after a full catalog load).
#[derive(Default)]
pub struct Interner {
    labels: parking_lot::Mutex<AHashSet<Arc<Labels>>>,
    pub counters: cap::Counters,
}

impl Interner {
    pub fn intern(&self, labels: Labels) -> Arc<Labels> {
        let mut set = self.labels.lock();
        if let Some(shared) = set.get(&labels) {
            return shared.clone();
        }
        let shared = Arc::new(labels);
        set.insert(shared.clone());
        shared
    }

    pub fn prune(&self) {
        self.labels.lock().retain(|l| Arc::strong_count(l) > 1);
        self.counters.prune();
    }
}

pub fn valid_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn is_reserved(code: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let cases = [
            ("abc", true),
            ("A-b_9", true),
            ("", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
            ("a/b", false),
            ("a.b", false),
            ("ü", false),
        ];
        for (code, ok) in cases {
            assert_eq!(valid_code(code), ok, "{code}");
        }
        assert!(is_reserved("v1") && is_reserved("Metrics") && !is_reserved("v2"));
    }
}
