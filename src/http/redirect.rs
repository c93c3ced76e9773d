//! The hot path: `GET|HEAD /{code}` → 302. Link from the in-process table, click id, macro
//! expansion, one push into the ring. No await, no Redis, no ClickHouse; enrichment beyond
//! what the Location needs happens in the flusher.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::client_ip::client_ip;
use super::error::Body;
use super::visitor::Seen;
use crate::app::App;
use crate::click::geo::Place;
use crate::click::row::Captured;
use crate::click::{Click, ClickId, Platform, Texts};
use crate::link::routing::{VariantAt, Visitor};
use crate::link::template::Values;
use crate::link::LiveLink;
use crate::pipeline::ring;
use crate::pipeline::wal::{self, Wal};

/// Longest value kept from a query parameter, user agent or referrer.
pub const MAX_VALUE_LEN: usize = 512;

const NOT_FOUND_BODY: &[u8] =
    br#"{"error":{"code":"link_not_found","message":"no link has this code"}}"#;
const GONE_BODY: &[u8] =
    br#"{"error":{"code":"link_gone","message":"this link is paused or deleted"}}"#;
const BAD_LOCATION_BODY: &[u8] =
    br#"{"error":{"code":"bad_location","message":"destination could not be built"}}"#;

/// What a redirect request carries that its answer and its click need, whichever HTTP
/// front read it (`http::connection` off the socket, or hyper).
pub struct Visit<'a, F> {
    pub code: &'a str,
    pub query: Option<&'a str>,
    pub user_agent: &'a [u8],
    pub referrer: Option<&'a [u8]>,
    pub accept_language: Option<&'a [u8]>,
    /// The `X-Forwarded-For` header values, in order.
    pub forwarded_for: F,
    pub peer: SocketAddr,
    pub head: bool,
    /// When it arrived, in Unix milliseconds: the click's time.
    pub now_ms: u64,
    /// Room for the Location (cleared first): a connection hands back the last one's, so
    /// answering does not allocate.
    pub location: Vec<u8>,
}

/// A redirect's answer.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Found(Vec<u8>),
    NotFound,
    Gone,
    /// The Location could not be a header value: templates are validated and values encoded,
    /// so this is a bug, not user error.
    BadLocation,
}

impl Answer {
    fn found(location: Vec<u8>) -> Answer {
        // What `HeaderValue` accepts: visible bytes, space and tab.
        // Branch-free, so it vectorizes (short-circuiting was ~300 instructions a redirect).
        let valid = location.iter().fold(true, |ok, &b| {
            ok & (((b >= 0x20) & (b != 0x7f)) | (b == b'\t'))
        });
        if valid {
            Answer::Found(location)
        } else {
            Answer::BadLocation
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Found(_) => StatusCode::FOUND,
            Answer::NotFound => StatusCode::NOT_FOUND,
            Answer::Gone => StatusCode::GONE,
            Answer::BadLocation => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> &'static [u8] {
        match self {
            Answer::Found(_) => b"",
            Answer::NotFound => NOT_FOUND_BODY,
            Answer::Gone => GONE_BODY,
            Answer::BadLocation => BAD_LOCATION_BODY,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut resp = Response::new(Full::new(Bytes::from_static(self.body())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        match self {
            Answer::Found(location) => {
                let location = HeaderValue::from_maybe_shared(Bytes::from(location))
                    .expect("checked by Answer::found");
                headers.insert(LOCATION, location);
            }
            _ => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// The whole HTTP/1.1 response, as hyper would write it for `into_response`.
    pub fn write_http1(&self, head: bool, close: bool, date: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(match self {
            Answer::Found(_) => b"HTTP/1.1 302 Found\r\n" as &[u8],
            Answer::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Answer::Gone => b"HTTP/1.1 410 Gone\r\n",
            Answer::BadLocation => b"HTTP/1.1 500 Internal Server Error\r\n",
        });
        match self {
            Answer::Found(location) => {
                out.extend_from_slice(b"location: ");
                out.extend_from_slice(location);
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(b"content-type: application/json\r\n"),
        }
        let body = self.body();
        out.extend_from_slice(b"cache-control: no-store\r\ncontent-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n\r\n");
        if !head {
            out.extend_from_slice(body);
        }
    }
}

/// The parameters a click carries in its query string: borrowed from it unless they had
/// something to decode.
#[derive(Debug, Default, PartialEq)]
pub struct ClickParams<'q> {
    pub partner_click_id: Cow<'q, str>,
    pub subs: [Cow<'q, str>; 5],
}

impl ClickParams<'_> {
    /// The macro values of a click on `link` carrying these parameters.
    fn values<'a>(
        &'a self,
        link: &'a LiveLink,
        click_id: &'a str,
        country: &'a str,
        variant: Option<VariantAt>,
    ) -> Values<'a> {
        let s = &self.subs;
        Values {
            click_id,
            partner_click_id: &self.partner_click_id,
            link_id: &link.id,
            campaign: &link.labels.campaign,
            source: &link.labels.source,
            medium: &link.labels.medium,
            subs: [&s[0], &s[1], &s[2], &s[3], &s[4]],
            country,
            variant: variant.map_or("", |at| link.variant_id(at)),
        }
    }
}

pub fn parse_query(query: Option<&str>) -> ClickParams<'_> {
    let mut params = ClickParams::default();
    let Some(query) = query else { return params };
    // Char arrays, not chars: on a query this short, setting up memchr (what a char pattern
    // searches with) costs more than it saves.
    for pair in query.split(['&']) {
        let (key, value) = pair.split_once(['=']).unwrap_or((pair, ""));
        let slot = match key {
            "click_id" => &mut params.partner_click_id,
            "sub1" => &mut params.subs[0],
            "sub2" => &mut params.subs[1],
            "sub3" => &mut params.subs[2],
            "sub4" => &mut params.subs[3],
            "sub5" => &mut params.subs[4],
            _ => continue,
        };
        if slot.is_empty() {
            *slot = decode_component(value);
        }
    }
    params
}

/// Form-style decoding (`+` is a space), lossy UTF-8, capped at `MAX_VALUE_LEN` bytes.
fn decode_component(value: &str) -> Cow<'_, str> {
    // Most values have nothing to decode, and the query is UTF-8 already.
    if !value.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(truncate(value));
    }
    let spaced;
    let value = if value.contains('+') {
        spaced = value.replace('+', " ");
        &spaced
    } else {
        value
    };
    Cow::Owned(truncate(&percent_decode_str(value).decode_utf8_lossy()).to_owned())
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_VALUE_LEN {
        return s;
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A header's bytes as text, capped at `MAX_VALUE_LEN` (invalid UTF-8 replaced).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    // Valid UTF-8 (nearly always) is checked several times faster than the lossy decoder
    // walks it.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(truncate(text)),
        Err(_) => Cow::Owned(truncate(&String::from_utf8_lossy(bytes)).to_owned()),
    }
}

/// The answer and, for a live link, the click to record (`record` stores it).
pub fn redirect<'a, F>(app: &App, visit: Visit<'a, F>) -> (Answer, Option<Click>)
where
    F: DoubleEndedIterator<Item = &'a [u8]>,
{
    let Some(live) = app.links.get(visit.code) else {
        if app.config.panic_route && visit.code == "__panic" {
            panic!("the test link code panics on purpose");
        }
        return (Answer::NotFound, None);
    };
    let params = parse_query(visit.query);
    if live.is_gone(visit.now_ms) {
        return (gone(&live, &params), None);
    }
    let ua = visit.user_agent;
    let platform = Platform::from_user_agent(ua);
    let ip = client_ip(visit.peer.ip(), visit.forwarded_for, &app.trusted_proxies);
    let ts_ms = visit.now_ms;
    let id = ClickId::new(ts_ms);
    let seen = Seen::new(
        app,
        ip,
        platform,
        ua,
        visit.accept_language,
        visit.query,
        ts_ms,
    );
    let (template, variant) = match live.routing().and_then(|r| r.route(&seen)) {
        Some(route) => (route.template, route.variant),
        None => (live.destination_for(platform.as_str()), None),
    };
    let country = if template.uses_country() {
        seen.country()
    } else {
        ""
    };
    let click_id = id.to_hyphenated();
    let mut location = visit.location;
    location.clear();
    location.reserve(256);
    template.expand(
        &params.values(
            &live,
            std::str::from_utf8(&click_id).expect("hex is ascii"),
            country,
            variant,
        ),
        &mut location,
    );
    let answer = Answer::found(location);
    let click = Click {
        id,
        ts_ms,
        link: live,
        ip,
        texts: Texts::new(
            &text(ua),
            &visit.referrer.map(text).unwrap_or_default(),
            &params.partner_click_id,
            params.subs.each_ref().map(|s| &**s),
        ),
        platform,
        head: visit.head,
        wal_segment: 0,
        variant,
    };
    (answer, Some(click))
}

/// Stores a click: on local disk first in write-ahead mode, then into the ring.
pub async fn record(app: &App, mut click: Click) {
    if let Some(wal) = &app.wal {
        write_ahead(app, wal, &mut click).await;
    }
    // Never blocks: a full ring drops and counts it.
    ring::push(&app.ring, click);
}

/// Write-ahead mode: the click is on local disk (group commit) before its 302 goes out. A
/// failed append is counted and the click still answered and recorded through the ring.
async fn write_ahead(app: &App, wal: &Wal, click: &mut Click) {
    let place = match &app.geo {
        Some(geo) => geo.lookup(click.ip),
        None => Place::default(),
    };
    let mut record = Vec::with_capacity(256);
    wal::encode_record(
        &Captured::of(
            click,
            app.ip_hasher.hash(click.ip),
            place,
            app.anonymous.as_ref().is_some_and(|a| a.contains(click.ip)),
        ),
        &mut record,
    );
    if let Ok(segment) = wal.append(record).await {
        click.wal_segment = segment;
    }
}

/// Paused or deleted: the fallback URL when the link has one (no click recorded), else 410.
fn gone(live: &Arc<LiveLink>, params: &ClickParams) -> Answer {
    let Some(fallback) = live.fallback() else {
        return Answer::Gone;
    };
    let mut location = Vec::with_capacity(128);
    fallback.expand(&params.values(live, "", "", None), &mut location);
    Answer::found(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_table() {
        let cases: &[(Option<&str>, &str, [&str; 5])] = &[
            (None, "", ["", "", "", "", ""]),
            (Some(""), "", ["", "", "", "", ""]),
            (
                Some("click_id=abc&sub1=x&sub5=y"),
                "abc",
                ["x", "", "", "", "y"],
            ),
            (
                Some("click_id=a%20b+c&sub2=%C3%BC"),
                "a b c",
                ["", "ü", "", "", ""],
            ),
            (Some("utm_source=fb&sub3"), "", ["", "", "", "", ""]),
            (
                Some("click_id=first&click_id=second"),
                "first",
                ["", "", "", "", ""],
            ),
            (Some("sub4=%ZZ%"), "", ["", "", "", "%ZZ%", ""]),
            (Some("sub1=%FF"), "", ["\u{fffd}", "", "", "", ""]),
        ];
        for (query, click_id, subs) in cases {
            let p = parse_query(*query);
            assert_eq!(&*p.partner_click_id, *click_id, "{query:?}");
            for (i, (got, want)) in p.subs.iter().zip(subs).enumerate() {
                assert_eq!(&**got, *want, "{query:?} sub{}", i + 1);
            }
        }
    }

    #[test]
    fn answers_render_as_http1() {
        let date = b"Sun, 22 Nov 2026 08:00:00 GMT";
        let found = Answer::found(b"https://x.example/?a=1".to_vec());
        // (answer, head, close, expected)
        let cases: &[(&Answer, bool, bool, String)] = &[
            (&found, false, false, "HTTP/1.1 302 Found\r\nlocation: https://x.example/?a=1\r\ncache-control: no-store\r\ncontent-length: 0\r\ndate: Sun, 22 Nov 2026 08:00:00 GMT\r\n\r\n".into()),
            (&found, true, true, "HTTP/1.1 302 Found\r\nlocation: https://x.example/?a=1\r\ncache-control: no-store\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 22 Nov 2026 08:00:00 GMT\r\n\r\n".into()),
            (&Answer::Gone, false, false, format!("HTTP/1.1 410 Gone\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\ndate: Sun, 22 Nov 2026 08:00:00 GMT\r\n\r\n{}", GONE_BODY.len(), std::str::from_utf8(GONE_BODY).unwrap())),
            (&Answer::NotFound, true, false, format!("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\ndate: Sun, 22 Nov 2026 08:00:00 GMT\r\n\r\n", NOT_FOUND_BODY.len())),
        ];
        for (answer, head, close, want) in cases {
            let mut out = Vec::new();
            answer.write_http1(*head, *close, date, &mut out);
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                want,
                "{answer:?} head {head}"
            );
        }
        // A Location that cannot be a header value is a 500, never a broken response.
        assert_eq!(
            Answer::found(b"https://x/\r\nset-cookie: a".to_vec()),
            Answer::BadLocation
        );
        // A Location is found exactly when it is a valid header value.
        for b in 0..=255u8 {
            let location = vec![b'/', b, b'x'];
            let valid = HeaderValue::from_bytes(&location).is_ok();
            let found = matches!(Answer::found(location), Answer::Found(_));
            assert_eq!(found, valid, "{b:#04x}");
        }
    }

    #[test]
    fn long_values_are_capped_on_a_char_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let query = format!("sub1={long}");
        let p = parse_query(Some(&query));
        assert!(p.subs[0].len() <= MAX_VALUE_LEN);
        assert!(p.subs[0].chars().all(|c| c == 'é'));
    }

    proptest::proptest! {
        #[test]
        fn fuzz_query_never_panics_and_caps(query in ".{0,2000}") {
            let p = parse_query(Some(&query));
            proptest::prop_assert!(p.partner_click_id.len() <= MAX_VALUE_LEN);
            proptest::prop_assert!(p.subs.iter().all(|s| s.len() <= MAX_VALUE_LEN));
        }

        #[test]
        fn fuzz_query_round_trips_encoded_values(values in proptest::array::uniform5(".{0,40}"), pcid in ".{0,40}") {
            let enc = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
            let query = format!(
                "click_id={}&sub1={}&sub2={}&sub3={}&sub4={}&sub5={}&other=x",
                enc(&pcid), enc(&values[0]), enc(&values[1]), enc(&values[2]), enc(&values[3]), enc(&values[4])
            );
            let p = parse_query(Some(&query));
            proptest::prop_assert_eq!(&*p.partner_click_id, pcid.as_str());
            for (got, want) in p.subs.iter().zip(values.iter()) {
                proptest::prop_assert_eq!(&**got, want.as_str());
            }
        }
    }
}
