//! The Android Play install referrer: the URL-encoded query string the store hands the app on
//! first launch (`utm_source=…&utm_medium=…&click_id=…`), carrying the tracking link's click id
//! when the link put one in the Play URL's `referrer` parameter.

use percent_encoding::percent_decode_str;

use crate::click::ClickId;

pub const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferrerError {
    #[error("is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("is not a URL-encoded query string")]
    Malformed,
}

/// The Sluice click id in the referrer, if any. A referrer may arrive encoded once more (the
/// whole string percent-encoded, as some SDKs pass it through): that is undone first.
pub fn click_id(referrer: &str) -> Result<Option<ClickId>, ReferrerError> {
    if referrer.len() > MAX_LEN {
        return Err(ReferrerError::TooLong);
    }
    let once = if referrer.contains('=') {
        referrer.to_string()
    } else {
        decode(referrer)?
    };
    let mut found = None;
    for pair in once.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or(ReferrerError::Malformed)?;
        let key = decode(key)?;
        let value = decode(value)?;
        if matches!(key.as_str(), "click_id" | "sluice_click_id") && found.is_none() {
            found = ClickId::parse(value.trim());
        }
    }
    Ok(found)
}

fn decode(s: &str) -> Result<String, ReferrerError> {
    if !valid_escapes(s) {
        return Err(ReferrerError::Malformed);
    }
    let bytes: Vec<u8> = percent_decode_str(&s.replace('+', " ")).collect();
    String::from_utf8(bytes).map_err(|_| ReferrerError::Malformed)
}

/// Every `%` starts a two-hex-digit escape.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        match (b.get(i + 1), b.get(i + 2)) {
            (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn referrer_table() {
        let id = ClickId::parse(ID);
        let cases: Vec<(String, Result<Option<ClickId>, ReferrerError>)> = vec![
            (
                format!("utm_source=fb&utm_medium=cpc&click_id={ID}"),
                Ok(id),
            ),
            (format!("click_id={ID}"), Ok(id)),
            (format!("sluice_click_id={ID}&utm_source=x"), Ok(id)),
            // The whole referrer encoded once more.
            (format!("utm_source%3Dfb%26click_id%3D{ID}"), Ok(id)),
            ("utm_source=google-play&utm_medium=organic".into(), Ok(None)),
            ("click_id=not-a-click-id".into(), Ok(None)),
            ("".into(), Ok(None)),
            ("utm_source=a&&".into(), Ok(None)),
            ("utm_source=%ZZ".into(), Err(ReferrerError::Malformed)),
            ("utm_source=%E".into(), Err(ReferrerError::Malformed)),
            ("utm_source=%FF%FE".into(), Err(ReferrerError::Malformed)),
            ("justtext=1&novalue".into(), Err(ReferrerError::Malformed)),
            ("x".repeat(MAX_LEN + 1), Err(ReferrerError::TooLong)),
        ];
        for (referrer, want) in cases {
            assert_eq!(click_id(&referrer), want, "{referrer}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fuzz_referrer_never_panics(s in ".{0,300}") {
            let _ = click_id(&s);
        }
    }
}
