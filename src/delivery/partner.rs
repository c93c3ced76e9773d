//! Partners (ad networks, publishers) and their postback URL templates: one per conversion
//! type (`install`, `signup`, any event name or conversion type), filled with the macros of
//! the attributed click and fired as a GET.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

pub const MACROS: &[&str] = &[
    "click_id",
    "event",
    "revenue",
    "currency",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "campaign",
    "source",
    "country",
    "match_type",
    "ctit_seconds",
    "timestamp",
    // Filled in the `rejected_install` template only (empty elsewhere).
    "rejection_reason",
    "rejection_value",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub id: String,
    pub name: String,
    /// Conversion type → URL template.
    pub postbacks: BTreeMap<String, String>,
    pub share_revenue: bool,
    /// Its SKAdNetwork / AdAttributionKit ad network id: verified postbacks naming it are
    /// forwarded to `skan_postback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skan_ad_network_id: Option<String>,
    /// Where a copy of each verified postback is POSTed as received, signed like a webhook
    /// with `skan_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skan_postback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skan_secret: Option<String>,
    pub created_at: String,
}

/// Checks a template: an absolute http(s) URL whose `{…}` are all known macros, none of
/// them in the host (click values come from whoever clicks), and whose host is public
/// unless private targets are allowed.
pub fn check_template(template: &str, allow_private: bool) -> Result<(), String> {
    if template.len() > 2048 {
        return Err("is longer than 2048 bytes".into());
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("has a { without its }")?;
        let name = &rest[open + 1..open + close];
        if !MACROS.contains(&name) {
            return Err(format!("uses unknown macro {{{name}}}"));
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err("has a } without its {".into());
    }
    let authority = template.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if authority.contains('{') {
        return Err("must not use a macro in its host".into());
    }
    // The URL shape with every macro empty (a name's addresses are checked again when it is
    // sent).
    let blank = fill(template, &BTreeMap::new());
    super::target::check_url(&blank, allow_private)?;
    Ok(())
}

/// Everything but unreserved characters is escaped, so a value can never break out of its
/// query parameter.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The template with each `{macro}` replaced by its URL-encoded value (missing: empty).
pub fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let name = &rest[open + 1..open + close];
                if let Some(v) = values.get(name) {
                    out.extend(utf8_percent_encode(v, COMPONENT));
                }
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Digits after the decimal point in `currency` (ISO 4217 minor units).
fn minor_units(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// An amount in the currency's smallest unit as a decimal in its major unit (`-1050` USD →
/// `-10.50`, `500` JPY → `500`).
pub fn decimal(amount: i64, currency: &str) -> String {
    let digits = minor_units(currency);
    if digits == 0 {
        return amount.to_string();
    }
    let scale = 10i128.pow(digits);
    let a = i128::from(amount);
    let sign = if a < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        a.abs() / scale,
        a.abs() % scale,
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template(
            "https://net.example/pb?cid={click_id}&e={event}&r={revenue}&c={currency}",
            false
        )
        .is_ok());
        for bad in [
            "https://net.example/pb?cid={clickid}",
            "https://net.example/pb?cid={click_id",
            "https://net.example/pb?cid=click_id}",
            "ftp://net.example/",
            "/relative?x={event}",
            // A host chosen by a click's values, or a private one.
            "https://{sub1}.net.example/pb",
            "http://10.0.0.{sub1}/pb",
            "https://user:{sub1}@net.example/pb",
            "http://127.0.0.1/pb?cid={click_id}",
            "http://[::ffff:10.0.0.1]/pb",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(check_template(bad, false).is_err(), "{bad}");
        }
        assert!(check_template("http://127.0.0.1:9/pb?cid={click_id}", true).is_ok());
    }

    #[test]
    fn filling_encodes_every_value() {
        let values = BTreeMap::from([
            ("click_id", "abc 1&x=2".to_string()),
            ("event", "install".to_string()),
            ("sub1", "ü/?#".to_string()),
        ]);
        assert_eq!(
            fill(
                "https://n.example/p?cid={click_id}&e={event}&s={sub1}&r={revenue}",
                &values
            ),
            "https://n.example/p?cid=abc%201%26x%3D2&e=install&s=%C3%BC%2F%3F%23&r="
        );
    }

    #[test]
    fn decimals() {
        let cases = [
            (1050, "USD", "10.50"),
            (-1050, "USD", "-10.50"),
            (5, "EUR", "0.05"),
            (-5, "EUR", "-0.05"),
            (500, "JPY", "500"),
            (12345, "KWD", "12.345"),
            (i64::MIN, "USD", "-92233720368547758.08"),
        ];
        for (amount, currency, want) in cases {
            assert_eq!(decimal(amount, currency), want, "{amount} {currency}");
        }
    }
}
