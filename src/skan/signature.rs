//! Apple's signatures on postbacks.
//!
//! - SKAdNetwork: Apple signs the postback's fields, joined in the order its version documents
//!   with U+2063 INVISIBLE SEPARATOR, with ECDSA P-256 / SHA-256 (DER, base64, in
//!   `attribution-signature`). Optional fields are left out, not blanked; booleans read `true`
//!   and `false`; the conversion values are never signed. Versions 1.0 and 2.0 are signed with
//!   Apple's P-192 key (SHA-256, the digest truncated to the curve's 192 bits).
//! - AdAttributionKit: the postback's `jws-string` is a compact JWS, ES256 whatever its header
//!   claims, with the key its header's `kid` names; development keys sign test postbacks.

use base64::Engine;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::Signature;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::AppleKeys;

pub const SEPARATOR: char = '\u{2063}';

/// What checking a postback's signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Signed with Apple's production key.
    Valid,
    /// Signed with one of Apple's development keys: a test postback.
    Development,
    /// The signature does not verify (or is not a signature).
    Invalid,
    /// Signed with a key not known here (a `kid`), or by a version not verifiable here.
    Unverifiable,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Valid => "valid",
            Check::Development => "development",
            Check::Invalid => "invalid",
            Check::Unverifiable => "unverifiable",
        }
    }
}

/// The signed fields of each SKAdNetwork version, in signing order, and whether each is
/// signed only when present: 1.0 signs no version; 2.0 and 2.1 the same fields (under
/// different keys), 2.2 adding `fidelity-type`, 3.0 `did-win`; 4.0 renames the campaign and
/// adds the web source and the conversion window.
fn signed_fields(version: &str) -> Option<Vec<(&'static str, bool)>> {
    const V2_1: [(&str, bool); 7] = [
        ("version", false),
        ("ad-network-id", false),
        ("campaign-id", false),
        ("app-id", false),
        ("transaction-id", false),
        ("redownload", false),
        ("source-app-id", true),
    ];
    const V4_0: [(&str, bool); 11] = [
        ("version", false),
        ("ad-network-id", false),
        ("source-identifier", false),
        ("app-id", false),
        ("transaction-id", false),
        ("redownload", false),
        ("source-app-id", true),
        ("source-domain", true),
        ("fidelity-type", false),
        ("did-win", false),
        ("postback-sequence-index", false),
    ];
    const V1_0: [(&str, bool); 4] = [
        ("ad-network-id", false),
        ("campaign-id", false),
        ("app-id", false),
        ("transaction-id", false),
    ];
    let added: &[(&str, bool)] = match version {
        "1.0" => return Some(V1_0.to_vec()),
        "2.0" | "2.1" => &[],
        "2.2" => &[("fidelity-type", false)],
        "3.0" => &[("fidelity-type", false), ("did-win", false)],
        "4.0" => return Some(V4_0.to_vec()),
        _ => return None,
    };
    Some([&V2_1[..], added].concat())
}

/// A field's value as Apple signs it: strings as they are, integers in decimal, booleans as
/// `true`/`false`.
fn rendered(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The string Apple signed for this postback; `Err` names the field that is missing, of a type
/// no postback has, or carries the separator (which would move the boundary between fields:
/// one signature, two readings).
pub fn skadnetwork_message(body: &Map<String, Value>) -> Result<Option<String>, &'static str> {
    let Some(fields) = signed_fields(version(body)) else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(fields.len());
    for (name, optional) in fields {
        match body.get(name) {
            None | Some(Value::Null) if optional => continue,
            None | Some(Value::Null) => return Err(name),
            Some(v) => {
                let s = rendered(v).ok_or(name)?;
                if s.contains(SEPARATOR) {
                    return Err(name);
                }
                parts.push(s);
            }
        }
    }
    Ok(Some(parts.join(&SEPARATOR.to_string())))
}

/// A postback's version: 1.0 postbacks carry none.
fn version(body: &Map<String, Value>) -> &str {
    match body.get("version") {
        None | Some(Value::Null) => "1.0",
        Some(v) => v.as_str().unwrap_or(""),
    }
}

/// Checks an SKAdNetwork postback's `attribution-signature`.
pub fn check_skadnetwork(body: &Map<String, Value>, keys: &AppleKeys) -> Check {
    let message = match skadnetwork_message(body) {
        Ok(Some(m)) => m,
        Ok(None) => return Check::Unverifiable,
        Err(_) => return Check::Invalid,
    };
    let Some(der) = body
        .get("attribution-signature")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return Check::Invalid;
    };
    let verified = match version(body) {
        "1.0" | "2.0" => p192::ecdsa::Signature::from_der(&der).is_ok_and(|sig| {
            let digest = Sha256::digest(message.as_bytes());
            keys.skadnetwork_p192.verify_prehash(&digest, &sig).is_ok()
        }),
        _ => Signature::from_der(&der)
            .is_ok_and(|sig| keys.skadnetwork.verify(message.as_bytes(), &sig).is_ok()),
    };
    if verified {
        Check::Valid
    } else {
        Check::Invalid
    }
}

/// A compact JWS's parts: the header's `kid`, the payload's JSON, and the check of its
/// signature. `None` when it is not a JWS at all (the caller answers 400).
pub struct Jws {
    pub kid: String,
    pub payload: Map<String, Value>,
    pub check: Check,
}

pub fn check_jws(jws: &str, keys: &AppleKeys) -> Option<Jws> {
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let head: Map<String, Value> = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
    let body: Map<String, Value> = serde_json::from_slice(&b64.decode(payload).ok()?).ok()?;
    let kid = head.get("kid")?.as_str()?.to_string();
    let check = match keys.adattributionkit.get(&kid) {
        None => Check::Unverifiable,
        // The header never chooses the algorithm: ES256 is the only one accepted.
        Some(_) if head.get("alg").and_then(Value::as_str) != Some("ES256") => Check::Invalid,
        Some(key) => {
            let signed = &jws[..header.len() + 1 + payload.len()];
            let verified = b64
                .decode(signature)
                .ok()
                .and_then(|raw| Signature::from_slice(&raw).ok())
                .is_some_and(|sig| key.key.verify(signed.as_bytes(), &sig).is_ok());
            match (verified, key.development) {
                (false, _) => Check::Invalid,
                (true, false) => Check::Valid,
                (true, true) => Check::Development,
            }
        }
    };
    Some(Jws {
        kid,
        payload: body,
        check,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// Apple's published example postbacks, with the signatures Apple's keys made
    /// (`tests/data/apple_postbacks.json`; the integration tests send the same): SKAdNetwork
    /// 4.0 from "Verifying an install-validation postback", 3.0 from "Combining parameters
    /// for SKAdNetwork 3 postbacks", 2.2 from "… for previous SKAdNetwork postback versions",
    /// then AdAttributionKit's from "Identifying the parameters in a postback", signed with
    /// the key of postbacks the Developer settings generate.
    fn examples() -> Vec<(String, Value)> {
        let all: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/data/apple_postbacks.json")).unwrap();
        all.into_iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["postback"].clone(),
                )
            })
            .collect()
    }

    /// The SKAdNetwork examples.
    pub fn apple_examples() -> Vec<(String, Value)> {
        examples()
            .into_iter()
            .filter(|(_, p)| p.get("jws-string").is_none())
            .collect()
    }

    /// The AdAttributionKit example's JWS.
    pub fn aak_example() -> String {
        let (_, postback) = examples().pop().unwrap();
        postback["jws-string"].as_str().unwrap().to_string()
    }

    /// A P-192 key that is not Apple's.
    const OTHER_P192: &str = "MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAEiPVPseRK/AhNd+a8hm2/Qb9cbAVBrBBya/mr8PtLTlidyCo3EUlC7Zhcu4TV35GV";

    fn object(v: &Value) -> &Map<String, Value> {
        v.as_object().unwrap()
    }

    #[test]
    fn apples_examples_verify_and_altered_copies_do_not() {
        let keys = AppleKeys::published();
        for (name, example) in apple_examples() {
            assert_eq!(
                check_skadnetwork(object(&example), &keys),
                Check::Valid,
                "{name}"
            );
            // Each signed field changed, one at a time.
            for (field, v) in object(&example) {
                let signed = signed_fields(example["version"].as_str().unwrap())
                    .unwrap()
                    .iter()
                    .any(|(f, _)| f == field);
                let mut altered = example.clone();
                altered[field] = match v {
                    Value::Bool(b) => json!(!b),
                    Value::Number(n) => json!(n.as_u64().unwrap() + 1),
                    Value::String(s) if field == "attribution-signature" => continue,
                    Value::String(s) => json!(format!("{s}x")),
                    _ => unreachable!(),
                };
                // A changed version names no version whose fields are known.
                let want = match (field.as_str(), signed) {
                    ("version", _) => Check::Unverifiable,
                    (_, true) => Check::Invalid,
                    (_, false) => Check::Valid,
                };
                assert_eq!(
                    check_skadnetwork(object(&altered), &keys),
                    want,
                    "{name}: {field}"
                );
            }
            // The signature re-encoded (base64 of other bytes; not DER; another key's).
            let mut altered = example.clone();
            let sig = example["attribution-signature"].as_str().unwrap();
            altered["attribution-signature"] = json!(sig.replacen('M', "N", 1));
            assert_eq!(
                check_skadnetwork(object(&altered), &keys),
                Check::Invalid,
                "{name}"
            );
            altered["attribution-signature"] = json!("not base64!!");
            assert_eq!(
                check_skadnetwork(object(&altered), &keys),
                Check::Invalid,
                "{name}"
            );
            let mut other = keys.clone();
            other.skadnetwork =
                super::super::keys::decode(super::super::keys::ADATTRIBUTIONKIT[1].1).unwrap();
            other.skadnetwork_p192 = super::super::keys::decode_p192(OTHER_P192).unwrap();
            assert_eq!(
                check_skadnetwork(object(&example), &other),
                Check::Invalid,
                "{name}"
            );
        }
    }

    #[test]
    fn messages_follow_each_versions_order() {
        let examples = apple_examples();
        let s = SEPARATOR;
        let cases = [
            (0, format!("4.0{s}com.example{s}5239{s}525463029{s}6aafb7a5-0170-41b5-bbe4-fe71dedf1e30{s}false{s}example.com{s}1{s}true{s}0")),
            (3, format!("3.0{s}example123.skadnetwork{s}42{s}525463029{s}f9ac267a-a889-44ce-b5f7-0166d11461f0{s}true{s}1{s}false")),
            (4, format!("2.2{s}com.example{s}42{s}525463029{s}6aafb7a5-0170-41b5-bbe4-fe71dedf1e28{s}true{s}1234567891{s}1")),
        ];
        for (i, want) in cases {
            let got = skadnetwork_message(object(&examples[i].1))
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{}", examples[i].0);
        }
        // A missing signed field, a value carrying the separator, a type no postback has.
        let mut v = examples[0].1.clone();
        object_mut(&mut v).remove("app-id");
        assert_eq!(skadnetwork_message(object(&v)), Err("app-id"));
        let mut v = examples[0].1.clone();
        v["ad-network-id"] = json!(format!("com.example{s}5239"));
        assert_eq!(skadnetwork_message(object(&v)), Err("ad-network-id"));
        v["ad-network-id"] = json!(["x"]);
        assert_eq!(skadnetwork_message(object(&v)), Err("ad-network-id"));
        // 1.0 carries no version and signs four fields; 2.0 signs 2.1's. Both are checked
        // with the P-192 key, which did not sign 2.2's example.
        let mut v = examples[4].1.clone();
        object_mut(&mut v).remove("version");
        let want = format!("com.example{s}42{s}525463029{s}6aafb7a5-0170-41b5-bbe4-fe71dedf1e28");
        assert_eq!(skadnetwork_message(object(&v)), Ok(Some(want)));
        v["version"] = json!("2.0");
        let want = format!("2.0{s}com.example{s}42{s}525463029{s}6aafb7a5-0170-41b5-bbe4-fe71dedf1e28{s}true{s}1234567891");
        assert_eq!(skadnetwork_message(object(&v)), Ok(Some(want)));
        assert_eq!(
            check_skadnetwork(object(&v), &AppleKeys::published()),
            Check::Invalid
        );
        // A version not known here.
        v["version"] = json!("5.0");
        assert_eq!(skadnetwork_message(object(&v)), Ok(None));
        assert_eq!(
            check_skadnetwork(object(&v), &AppleKeys::published()),
            Check::Unverifiable
        );
    }

    fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
        v.as_object_mut().unwrap()
    }

    #[test]
    fn adattributionkit_jws() {
        let keys = AppleKeys::published();
        let jws = check_jws(&aak_example(), &keys).unwrap();
        assert_eq!(jws.kid, "apple-development-identifier/1");
        assert_eq!(jws.check, Check::Development);
        assert_eq!(jws.payload["advertised-item-identifier"], 10738027756u64);
        assert_eq!(
            jws.payload["postback-identifier"],
            "85546EB7-FD39-44BC-8990-C98A4AC36A49"
        );
        let example = aak_example();
        let [header, payload, signature]: [&str; 3] =
            example.split('.').collect::<Vec<_>>().try_into().unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // A changed payload field; the signature re-encoded; another kid; another alg.
        let mut body: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        body["did-win"] = json!(false);
        let changed = format!("{header}.{}.{signature}", b64.encode(body.to_string()));
        assert_eq!(check_jws(&changed, &keys).unwrap().check, Check::Invalid);
        let sig = b64.decode(signature).unwrap();
        let padded = format!(
            "{header}.{payload}.{}",
            base64::engine::general_purpose::URL_SAFE.encode(&sig)
        );
        assert_eq!(check_jws(&padded, &keys).unwrap().check, Check::Invalid);
        let der = p256::ecdsa::Signature::from_slice(&sig).unwrap().to_der();
        let as_der = format!("{header}.{payload}.{}", b64.encode(der.as_bytes()));
        assert_eq!(check_jws(&as_der, &keys).unwrap().check, Check::Invalid);
        for head in [
            json!({"kid": "apple-development-identifier/0", "alg": "ES256"}),
            json!({"kid": "someone-else/1", "alg": "ES256"}),
            json!({"kid": "apple-development-identifier/1", "alg": "none"}),
        ] {
            let other = format!("{}.{payload}.{signature}", b64.encode(head.to_string()));
            let want = if head["kid"] == "someone-else/1" {
                Check::Unverifiable
            } else {
                Check::Invalid
            };
            assert_eq!(check_jws(&other, &keys).unwrap().check, want, "{head}");
        }
        for not_jws in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &format!("{header}.{header}"),
        ] {
            assert!(check_jws(not_jws, &keys).is_none(), "{not_jws}");
        }
    }
}
