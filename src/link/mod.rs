//! Tracking links: the stored entity, its validation, and the compiled form the redirect uses.

pub mod catalog;
pub mod table;
pub mod template;

use serde::{Deserialize, Serialize};

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
    pub created_at: String,
    pub updated_at: String,
    /// Deleted links stay in the global table (their code keeps answering 410 and can never
    /// be reused) but vanish from the tenant's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

/// A link compiled for the redirect: templates parsed once, not per click.
#[derive(Debug)]
pub struct LiveLink {
    pub link: Link,
    pub destination: Template,
    pub ios: Option<Template>,
    pub android: Option<Template>,
    pub fallback: Option<Template>,
}

impl LiveLink {
    pub fn compile(link: Link) -> Result<LiveLink, TemplateError> {
        let opt = |s: &Option<String>| s.as_deref().map(Template::parse).transpose();
        Ok(LiveLink {
            destination: Template::parse(&link.destination)?,
            ios: opt(&link.ios_destination)?,
            android: opt(&link.android_destination)?,
            fallback: opt(&link.fallback_url)?,
            link,
        })
    }

    /// Paused and deleted links answer 410 (or their fallback) and record no click.
    pub fn is_gone(&self) -> bool {
        self.link.paused || self.link.deleted_at.is_some()
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
