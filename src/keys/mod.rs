//! API keys: a tenant's secret keys (`sk_…`, full access) and publishable keys (`pk_…`, the
//! client endpoints only). A key is shown once, when created, and stored only as its SHA-256;
//! it is listed by an id and its first characters, and revoked by id.

pub mod lifecycle;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Secret,
    Publishable,
}

impl KeyKind {
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "publishable" => Some(KeyKind::Publishable),
            _ => None,
        }
    }

    fn marker(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk_",
            KeyKind::Publishable => "pk_",
        }
    }
}

/// How many characters of a key are kept to tell keys apart in a listing: the kind's marker
/// and 8 hex digits (32 of the key's 128 random bits).
pub const PREFIX_LEN: usize = 11;

/// A key as listed (`GET /v1/keys`); the key itself is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub kind: KeyKind,
    pub prefix: String,
    /// SHA-256 of the key (hex): its lookup record's name.
    pub hash: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl ApiKey {
    /// The entry for `key` of `kind`, created `now`.
    pub fn new(kind: KeyKind, key: &str, now: String) -> ApiKey {
        let hash = hash(key);
        ApiKey {
            id: id_of(&hash),
            kind,
            prefix: key.chars().take(PREFIX_LEN).collect(),
            hash,
            created_at: now,
            revoked_at: None,
        }
    }

    pub fn active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// The key as listed (`GET /v1/keys`, `sluice key list`): never the key, nor its hash.
    pub fn listing(&self, last_used_at: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "kind": self.kind, "prefix": self.prefix,
            "created_at": self.created_at, "last_used_at": last_used_at,
            "revoked_at": self.revoked_at,
        })
    }

    /// The key as created: the one time the key itself is shown.
    pub fn created(&self, key: &str) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "kind": self.kind, "key": key, "prefix": self.prefix,
            "created_at": self.created_at,
        })
    }
}

/// A new random key of `kind`: its marker and 128 random bits in hex.
pub fn generate(kind: KeyKind) -> String {
    format!(
        "{}{}",
        kind.marker(),
        hex::encode(rand::random::<[u8; 16]>())
    )
}

/// Whether `key` looks like a key of either kind (checked before any lookup).
pub fn plausible(key: &str) -> bool {
    (key.starts_with("sk_") || key.starts_with("pk_")) && key.len() <= 128
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key's id, derived from its hash: the same on every node and for every request, so a
/// key issued before keys were listed is adopted under one id however many requests race.
pub fn id_of(hash: &str) -> String {
    format!("key_{}", &hash[..hash.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn entries_keep_no_key() {
        let key = generate(KeyKind::Secret);
        assert!(key.starts_with("sk_") && key.len() == 35, "{key}");
        assert!(plausible(&key));
        let entry = ApiKey::new(KeyKind::Secret, &key, "now".into());
        assert_eq!(entry.prefix, key[..PREFIX_LEN]);
        assert_eq!(entry.hash, hash(&key));
        assert_eq!(entry.id, format!("key_{}", &entry.hash[..12]));
        assert!(!serde_json::to_string(&entry).unwrap().contains(&key));
        assert!(generate(KeyKind::Publishable).starts_with("pk_"));
        // (text, plausible)
        for (text, want) in [("sk_x", true), ("pk_", true), ("xk_1", false), ("", false)] {
            assert_eq!(plausible(text), want, "{text}");
        }
        assert!(!plausible(&format!("sk_{}", "a".repeat(126))));
        assert_eq!(KeyKind::parse("secret"), Some(KeyKind::Secret));
        assert_eq!(KeyKind::parse("Secret"), None);
    }
}
