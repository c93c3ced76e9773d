//! Apple's public keys for postback signatures: the one documented place. They are the keys
//! Apple publishes in "Verifying an install-validation postback" (StoreKit) and "Verifying a
//! postback" (AdAttributionKit), as base64 DER (X.509 SubjectPublicKeyInfo). When Apple rotates
//! a key, a JSON file replaces or adds keys without a release (`AppleKeys::rotated`):
//! `{"skadnetwork": "<base64 DER>", "adattributionkit": {"<kid>": {"key": "<base64 DER>",
//! "development": false}}}` (either part may be left out to keep the published one).

use std::collections::BTreeMap;

use base64::Engine;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

/// SKAdNetwork 2.1 and later (NIST P-256); also AdAttributionKit's production key.
pub const SKADNETWORK_P256: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWdp8GPcGqmhgzEFj9Z2nSpQVddayaPe4FMzqM9wib1+aHaaIzoHoLN9zW4K8y4SPykE3YVK3sVqW6Af0lfx3gg==";

/// SKAdNetwork 1.0 and 2.0 (P-192), from the "SKAdNetwork 1 / 2 release notes".
pub const SKADNETWORK_P192: &str = "MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAEMyHD625uvsmGq4C43cQ9BnfN2xslVT5V1nOmAMP6qaRRUll3PB1JYmgSm+62sosG";

/// AdAttributionKit's keys by the JWS header's `kid`, and whether each signs development
/// postbacks (end-to-end test flows, and postbacks a device's Developer settings generate).
pub const ADATTRIBUTIONKIT: [(&str, &str, bool); 3] = [
    ("apple-cas-identifier/0", SKADNETWORK_P256, false),
    (
        "apple-development-identifier/0",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELeEDzpJEP+/qRSE5hJVC1p1J0ssUnQGMzBBbvnACBok8OVGGLgxL0myrKiy6lvRtSlLRsWit87i+vftD8AEqeQ==",
        true,
    ),
    (
        "apple-development-identifier/1",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YzdO7eM97s/IJ25kdW5CZ3A14USE5IJ5Ha/vhWaxI6UBI1ZxCEvjrKxVluVGe6qWwF1BDFq+QHqKfH5u+wxHQ==",
        true,
    ),
];

/// A key AdAttributionKit names by `kid`.
#[derive(Debug, Clone)]
pub struct JwsKey {
    pub key: VerifyingKey,
    pub development: bool,
}

#[derive(Debug, Clone)]
pub struct AppleKeys {
    pub skadnetwork: VerifyingKey,
    /// Versions 1.0 and 2.0's key.
    pub skadnetwork_p192: p192::ecdsa::VerifyingKey,
    pub adattributionkit: BTreeMap<String, JwsKey>,
}

/// The rotation file's form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    skadnetwork: Option<String>,
    #[serde(default)]
    adattributionkit: BTreeMap<String, RotatedJwsKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotatedJwsKey {
    key: String,
    #[serde(default)]
    development: bool,
}

/// A base64 DER public key.
pub fn decode(b64: &str) -> Result<VerifyingKey, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| format!("not a P-256 public key: {e}"))
}

/// A base64 DER P-192 public key.
pub fn decode_p192(b64: &str) -> Result<p192::ecdsa::VerifyingKey, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    p192::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("not a P-192 public key: {e}"))
}

impl AppleKeys {
    /// The keys Apple publishes.
    pub fn published() -> AppleKeys {
        AppleKeys {
            skadnetwork: decode(SKADNETWORK_P256).expect("Apple's published key decodes"),
            skadnetwork_p192: decode_p192(SKADNETWORK_P192).expect("Apple's published key decodes"),
            adattributionkit: ADATTRIBUTIONKIT
                .iter()
                .map(|(kid, key, development)| {
                    let key = decode(key).expect("Apple's published key decodes");
                    (
                        kid.to_string(),
                        JwsKey {
                            key,
                            development: *development,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The published keys with a rotation file's replacing them (its kids added or replaced).
    pub fn rotated(json: &str) -> Result<AppleKeys, String> {
        let r: Rotation = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut keys = AppleKeys::published();
        if let Some(k) = r.skadnetwork {
            keys.skadnetwork = decode(&k).map_err(|e| format!("skadnetwork: {e}"))?;
        }
        for (kid, k) in r.adattributionkit {
            let key = decode(&k.key).map_err(|e| format!("adattributionkit.{kid}: {e}"))?;
            keys.adattributionkit.insert(
                kid,
                JwsKey {
                    key,
                    development: k.development,
                },
            );
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_keys_decode_and_rotation_replaces_them() {
        let keys = AppleKeys::published();
        assert_eq!(keys.adattributionkit.len(), 3);
        assert!(keys.adattributionkit["apple-development-identifier/1"].development);
        assert!(!keys.adattributionkit["apple-cas-identifier/0"].development);
        let dev0 = ADATTRIBUTIONKIT[1].1;
        let rotated = AppleKeys::rotated(&format!(
            r#"{{"skadnetwork": "{dev0}", "adattributionkit": {{"apple-cas-identifier/1": {{"key": "{dev0}"}}}}}}"#
        ))
        .unwrap();
        assert_eq!(rotated.skadnetwork, decode(dev0).unwrap());
        assert_eq!(rotated.adattributionkit.len(), 4);
        for bad in [
            r#"{"skadnetwork": "bm90IGEga2V5"}"#,
            r#"{"skadnetwork": "!!"}"#,
            r#"{"other": 1}"#,
            r#"{"adattributionkit": {"k": {"key": "bm90IGEga2V5"}}}"#,
        ] {
            assert!(AppleKeys::rotated(bad).is_err(), "{bad}");
        }
    }
}
