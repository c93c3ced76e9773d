//! Destination templates: parsed once when a link is loaded into its literal text and the
//! places of its macros, expanded per click into a reused buffer with every macro value
//! URL-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters is encoded in a macro value.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Macro {
    ClickId,
    PartnerClickId,
    LinkId,
    Campaign,
    Source,
    Medium,
    Sub(u8),
    Country,
    Variant,
}

impl Macro {
    fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Macro::ClickId => "click_id".into(),
            Macro::PartnerClickId => "partner_click_id".into(),
            Macro::LinkId => "link_id".into(),
            Macro::Campaign => "campaign".into(),
            Macro::Source => "source".into(),
            Macro::Medium => "medium".into(),
            Macro::Sub(i) => format!("sub{}", i + 1).into(),
            Macro::Country => "country".into(),
            Macro::Variant => "variant".into(),
        }
    }

    fn parse(name: &str) -> Option<Macro> {
        Some(match name {
            "click_id" => Macro::ClickId,
            "partner_click_id" => Macro::PartnerClickId,
            "link_id" => Macro::LinkId,
            "campaign" => Macro::Campaign,
            "source" => Macro::Source,
            "medium" => Macro::Medium,
            "sub1" => Macro::Sub(0),
            "sub2" => Macro::Sub(1),
            "sub3" => Macro::Sub(2),
            "sub4" => Macro::Sub(3),
            "sub5" => Macro::Sub(4),
            "country" => Macro::Country,
            "variant" => Macro::Variant,
            _ => return None,
        })
    }
}

/// The URL's literal text in one string, and each macro with the position in that text where
/// its value goes: a link's whole template is two allocations, whatever its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: Box<str>,
    macros: Box<[(u16, Macro)]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must be an absolute http(s) URL")]
    NotHttp,
    #[error("must have a host")]
    NoHost,
    #[error("must not contain spaces or control characters")]
    BadCharacter,
    #[error("is longer than 4096 bytes")]
    TooLong,
    #[error("has unknown macro {{{0}}}")]
    UnknownMacro(String),
    #[error("has an unclosed '{{'")]
    Unclosed,
}

/// The values a click supplies to its destination's macros.
pub struct Values<'a> {
    pub click_id: &'a str,
    pub partner_click_id: &'a str,
    pub link_id: &'a str,
    pub campaign: &'a str,
    pub source: &'a str,
    pub medium: &'a str,
    pub subs: [&'a str; 5],
    pub country: &'a str,
    /// The split variant's id; empty when no split chose the destination.
    pub variant: &'a str,
}

impl Template {
    pub fn parse(url: &str) -> Result<Template, TemplateError> {
        if url.len() > 4096 {
            return Err(TemplateError::TooLong);
        }
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let rest = if lower.starts_with("https://") {
            &url[8..]
        } else if lower.starts_with("http://") {
            &url[7..]
        } else {
            return Err(TemplateError::NotHttp);
        };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err(TemplateError::NoHost);
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TemplateError::BadCharacter);
        }
        let mut text = String::with_capacity(url.len());
        let mut macros = Vec::new();
        let mut rest = url;
        while let Some(open) = rest.find('{') {
            push_literal(&mut text, &rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &after[..close];
            let m =
                Macro::parse(name).ok_or_else(|| TemplateError::UnknownMacro(name.to_string()))?;
            // At most 3 × 4096 bytes (non-ASCII written as %XX), so always a u16.
            let at = u16::try_from(text.len()).map_err(|_| TemplateError::TooLong)?;
            macros.push((at, m));
            rest = &after[close + 1..];
        }
        push_literal(&mut text, rest);
        Ok(Template {
            text: text.into(),
            macros: macros.into(),
        })
    }

    /// The template with its macros unexpanded (`{click_id}`), non-ASCII text as stored
    /// (percent-encoded): what a preview shows.
    pub fn source(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16 * self.macros.len());
        let mut from = 0;
        for &(at, m) in self.macros.iter() {
            out.push_str(&self.text[from..usize::from(at)]);
            out.push('{');
            out.push_str(&m.name());
            out.push('}');
            from = usize::from(at);
        }
        out.push_str(&self.text[from..]);
        out
    }

    /// Whether expansion needs the click's country (a geo lookup on the hot path).
    pub fn uses_country(&self) -> bool {
        self.macros.iter().any(|&(_, m)| m == Macro::Country)
    }

    pub fn expand(&self, v: &Values<'_>, out: &mut Vec<u8>) {
        let text = self.text.as_bytes();
        let mut from = 0;
        for &(at, m) in self.macros.iter() {
            let at = usize::from(at);
            out.extend_from_slice(&text[from..at]);
            from = at;
            let value = match m {
                Macro::ClickId => v.click_id,
                Macro::PartnerClickId => v.partner_click_id,
                Macro::LinkId => v.link_id,
                Macro::Campaign => v.campaign,
                Macro::Source => v.source,
                Macro::Medium => v.medium,
                Macro::Sub(i) => v.subs[i as usize],
                Macro::Country => v.country,
                Macro::Variant => v.variant,
            };
            if unreserved(value) {
                out.extend_from_slice(value.as_bytes());
            } else {
                for part in percent_encoding::utf8_percent_encode(value, VALUE) {
                    out.extend_from_slice(part.as_bytes());
                }
            }
        }
        out.extend_from_slice(&text[from..]);
    }
}

/// Whether `s` is all unreserved characters (what `VALUE` leaves as it is). Branch-free, so
/// it vectorizes: most values (click ids, plain words) are copied whole instead of being
/// encoded byte by byte.
fn unreserved(s: &str) -> bool {
    s.bytes().fold(true, |all, b| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        all & (letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~'))
    })
}

/// Literal text is kept as written, except non-ASCII, which a Location header cannot carry.
fn push_literal(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            click_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            partner_click_id: "abc 123&x=y",
            link_id: "spring",
            campaign: "Spring Sale/2026",
            source: "fb",
            medium: "cpc",
            subs: ["a+b", "ü", "", "100%", "x?y#z"],
            country: "GB",
            variant: "b",
        }
    }

    #[test]
    fn unreserved_is_what_values_leave_unencoded() {
        for b in 0u8..128 {
            let s = (b as char).to_string();
            let kept = percent_encoding::utf8_percent_encode(&s, VALUE).to_string() == s;
            assert_eq!(unreserved(&s), kept, "{b:#04x}");
        }
        for (s, want) in [
            ("", true),
            ("0190a1b2-c3d4", true),
            ("a b", false),
            ("ü", false),
        ] {
            assert_eq!(unreserved(s), want, "{s:?}");
        }
    }

    #[test]
    fn expansion_table() {
        let cases = [
            ("https://shop.example/p", "https://shop.example/p"),
            (
                "https://x.io/?c={click_id}",
                "https://x.io/?c=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            ),
            (
                "https://x.io/?p={partner_click_id}",
                "https://x.io/?p=abc%20123%26x%3Dy",
            ),
            (
                "https://x.io/{campaign}?s={source}&m={medium}",
                "https://x.io/Spring%20Sale%2F2026?s=fb&m=cpc",
            ),
            (
                "https://x.io/?a={sub1}&b={sub2}&c={sub3}&d={sub4}&e={sub5}",
                "https://x.io/?a=a%2Bb&b=%C3%BC&c=&d=100%25&e=x%3Fy%23z",
            ),
            ("https://x.io/{link_id}/{country}", "https://x.io/spring/GB"),
            ("https://x.io/?v={variant}", "https://x.io/?v=b"),
            ("https://x.io/café?q={sub3}", "https://x.io/caf%C3%A9?q="),
        ];
        for (template, want) in cases {
            let t = Template::parse(template).unwrap();
            let mut out = Vec::new();
            t.expand(&values(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{template}");
            assert_eq!(
                t.source(),
                template.replace('é', "%C3%A9"),
                "source of {template}"
            );
        }
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("ftp://x.io", TemplateError::NotHttp),
            ("x.io/path", TemplateError::NotHttp),
            ("https://", TemplateError::NoHost),
            ("https:///path", TemplateError::NoHost),
            ("https://x.io/a b", TemplateError::BadCharacter),
            (
                "https://x.io/{nope}",
                TemplateError::UnknownMacro("nope".into()),
            ),
            ("https://x.io/{click_id", TemplateError::Unclosed),
        ];
        for (template, want) in cases {
            assert_eq!(Template::parse(template), Err(want), "{template}");
        }
        assert!(Template::parse("HTTPS://X.IO/").is_ok());
        assert!(Template::parse("https://x.io/{country}")
            .unwrap()
            .uses_country());
        assert!(!Template::parse("https://x.io/{sub1}")
            .unwrap()
            .uses_country());
    }

    proptest::proptest! {
        #[test]
        fn fuzz_parse_never_panics(url in ".{0,300}") {
            let _ = Template::parse(&url);
        }

        /// Whatever a valid template and a click supply, the Location is a valid header value
        /// (visible ASCII only: no header injection, no raw control or non-ASCII bytes).
        #[test]
        fn fuzz_expansion_is_always_a_valid_location(
            path in "[ -~\u{80}-\u{10ffff}]{0,60}",
            values in proptest::array::uniform8(".{0,40}"),
        ) {
            let url = format!("https://x.example/{path}?a={{sub1}}&b={{partner_click_id}}&c={{campaign}}&d={{country}}");
            if let Ok(t) = Template::parse(&url) {
                let v = Values {
                    click_id: &values[0], partner_click_id: &values[1], link_id: &values[2],
                    campaign: &values[3], source: &values[4], medium: &values[5],
                    subs: [&values[6], &values[7], "", "", ""], country: &values[0], variant: &values[1],
                };
                let mut out = Vec::new();
                t.expand(&v, &mut out);
                proptest::prop_assert!(out.iter().all(|b| (0x21..0x7f).contains(b)), "{:?}", String::from_utf8_lossy(&out));
                proptest::prop_assert!(hyper::header::HeaderValue::from_bytes(&out).is_ok());
            }
        }
    }
}
