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
    /// SHA-256 (hex) of the webhook URL's token: the URL is a credential, shown once (when
    /// made or rotated) and kept only as this.
    #[serde(default)]
    pub token_hash: String,
    /// The token's first characters, to tell URLs apart in a listing.
    #[serde(default)]
    pub token_hint: String,
    /// A source stored before tokens were hashed kept its token; it is replaced by its hash
    /// the first time the URL is used.
    #[serde(default, rename = "token", skip_serializing)]
    pub legacy_token: Option<String>,
    pub created_at: String,
}

/// How many characters of a token a listing shows (32 of its 256 bits).
const HINT_LEN: usize = 8;

impl Source {
    /// A new source and its webhook URL's token (the only time the token exists in full).
    pub fn new(name: &str, source_type: &str) -> (Source, String) {
        let mut source = Source {
            id: random_hex(12),
            name: name.to_string(),
            source_type: source_type.to_string(),
            token_hash: String::new(),
            token_hint: String::new(),
            legacy_token: None,
            created_at: crate::time::now_rfc3339(),
        };
        let token = source.new_token();
        (source, token)
    }

    /// Gives the source a new token (its old URL stops working once stored) and returns it.
    pub fn new_token(&mut self) -> String {
        let token = random_hex(32);
        self.token_hash = token_hash(&token);
        self.token_hint = token[..HINT_LEN].to_string();
        self.legacy_token = None;
        token
    }

    /// The hash its webhook URL is looked up by.
    pub fn lookup_hash(&self) -> String {
        match &self.legacy_token {
            Some(token) if self.token_hash.is_empty() => token_hash(token),
            _ => self.token_hash.clone(),
        }
    }
}

pub fn token_hash(token: &str) -> String {
    crate::keys::hash(token)
}

pub fn webhook_path(token: &str) -> String {
    format!("/w/{token}")
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// Whether `s` can be a token (so junk paths are refused without a Redis lookup).
pub fn plausible_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_keeps_only_its_tokens_hash() {
        let (mut source, token) = Source::new("shop", "custom");
        assert!(plausible_token(&token));
        assert_eq!(source.token_hash, token_hash(&token));
        assert_eq!(source.token_hint, token[..8]);
        let stored = serde_json::to_string(&source).unwrap();
        assert!(!stored.contains(&token));
        let rotated = source.new_token();
        assert_ne!(rotated, token);
        assert_eq!(source.lookup_hash(), token_hash(&rotated));
        // A record from before hashing: looked up by its token's hash until rewritten.
        let legacy: Source = serde_json::from_str(&format!(
            r#"{{"id":"a","name":"n","source_type":"custom","token":"{token}","created_at":"x"}}"#
        ))
        .unwrap();
        assert_eq!(legacy.lookup_hash(), token_hash(&token));
        assert!(!serde_json::to_string(&legacy).unwrap().contains(&token));
    }
}
