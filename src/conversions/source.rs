//! Webhook sources: a tenant's receivers of conversions, each with an unguessable webhook URL
//! (`/w/{token}`). Stored in Redis; a deleted source's conversions keep its id.

use serde::{Deserialize, Serialize};

/// The source every tenant gets on its first request.
pub const DEFAULT_NAME: &str = "default";
pub const MAX_NAME: usize = 128;
/// Source types Sluice accepts: `custom` (any backend POSTing the conversion shape).
pub const TYPES: &[&str] = &["custom"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub source_type: String,
    /// 256 random bits, hex: the secret part of the webhook URL.
    pub token: String,
    pub created_at: String,
}

impl Source {
    pub fn new(name: &str, source_type: &str) -> Source {
        Source {
            id: random_hex(12),
            name: name.to_string(),
            source_type: source_type.to_string(),
            token: random_hex(32),
            created_at: crate::time::now_rfc3339(),
        }
    }

    pub fn webhook_path(&self) -> String {
        format!("/w/{}", self.token)
    }
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// Whether `s` can be a token (so junk paths are refused without a Redis lookup).
pub fn plausible_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
