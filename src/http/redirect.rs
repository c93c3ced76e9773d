//! The hot path: `GET|HEAD /{code}` → 302. Link from the in-process table, click id, macro
//! expansion, one push into the ring. No await, no Redis, no ClickHouse; enrichment beyond
//! what the Location needs happens in the flusher.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, REFERER, USER_AGENT,
};
use hyper::{Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::client_ip::client_ip;
use super::error::Body;
use crate::app::App;
use crate::click::geo::Place;
use crate::click::row::Captured;
use crate::click::{Click, ClickId, Platform};
use crate::link::template::Values;
use crate::link::{Link, LiveLink};
use crate::pipeline::wal::{self, Wal};
use crate::time;

/// Longest value kept from a query parameter, user agent or referrer.
pub const MAX_VALUE_LEN: usize = 512;

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NOT_FOUND_BODY: &[u8] =
    br#"{"error":{"code":"link_not_found","message":"no link has this code"}}"#;
const GONE_BODY: &[u8] =
    br#"{"error":{"code":"link_gone","message":"this link is paused or deleted"}}"#;
// A `HeaderName`, not a `&str`: a string name is parsed again on every lookup.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The parameters a click carries in its query string.
#[derive(Debug, Default, PartialEq)]
pub struct ClickParams {
    pub partner_click_id: Box<str>,
    pub subs: [Box<str>; 5],
}

impl ClickParams {
    /// The macro values of a click on `link` carrying these parameters.
    fn values<'a>(&'a self, link: &'a Link, click_id: &'a str, country: &'a str) -> Values<'a> {
        let s = &self.subs;
        Values {
            click_id,
            partner_click_id: &self.partner_click_id,
            link_id: &link.id,
            campaign: &link.campaign,
            source: &link.source,
            medium: &link.medium,
            subs: [&s[0], &s[1], &s[2], &s[3], &s[4]],
            country,
        }
    }
}

pub fn parse_query(query: Option<&str>) -> ClickParams {
    let mut params = ClickParams::default();
    let Some(query) = query else { return params };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
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
fn decode_component(value: &str) -> Box<str> {
    if value.is_empty() {
        return Box::default();
    }
    let decoded = if value.contains('+') {
        percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    } else {
        percent_decode_str(value).decode_utf8_lossy().into_owned()
    };
    truncate(&decoded).into()
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
fn text(bytes: &[u8]) -> Box<str> {
    // Valid UTF-8 (nearly always) is checked several times faster than the lossy decoder
    // walks it.
    match std::str::from_utf8(bytes) {
        Ok(text) => truncate(text).into(),
        Err(_) => truncate(&String::from_utf8_lossy(bytes)).into(),
    }
}

fn static_response(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    resp
}

fn found(location: Vec<u8>) -> Response<Body> {
    match HeaderValue::from_maybe_shared(Bytes::from(location)) {
        Ok(location) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut().insert(LOCATION, location);
            resp.headers_mut().insert(CACHE_CONTROL, NO_STORE);
            resp
        }
        // Templates are validated and values encoded, so this is a bug, not user error.
        Err(_) => static_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"code":"bad_location","message":"destination could not be built"}}"#,
        ),
    }
}

/// The response and, for a live link, the click to record (the caller enqueues it).
pub fn redirect(
    app: &App,
    code: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
    head: bool,
) -> (Response<Body>, Option<Click>) {
    let Some(live) = app.links.get(code) else {
        return (static_response(StatusCode::NOT_FOUND, NOT_FOUND_BODY), None);
    };
    let params = parse_query(query);
    if live.is_gone() {
        return (gone(&live, &params), None);
    }
    let ua = headers
        .get(USER_AGENT)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let platform = Platform::from_user_agent(ua);
    let ip = client_ip(
        peer.ip(),
        headers.get_all(&X_FORWARDED_FOR).iter(),
        &app.trusted_proxies,
    );
    let ts_ms = time::now_ms();
    let id = ClickId::new(ts_ms);
    let template = match platform {
        Platform::Ios => live.ios.as_ref(),
        Platform::Android => live.android.as_ref(),
        Platform::Other => None,
    }
    .unwrap_or(&live.destination);
    let country = match (&app.geo, template.uses_country()) {
        (Some(geo), true) => geo.lookup(ip).country,
        _ => "",
    };
    let click_id = id.to_hyphenated();
    let link = &live.link;
    let mut location = Vec::with_capacity(link.destination.len() + 64);
    template.expand(
        &params.values(
            link,
            std::str::from_utf8(&click_id).expect("hex is ascii"),
            country,
        ),
        &mut location,
    );
    let response = found(location);
    let click = Click {
        id,
        ts_ms,
        link: live,
        ip,
        user_agent: text(ua),
        referrer: headers
            .get(REFERER)
            .map_or_else(Box::default, |v| text(v.as_bytes())),
        partner_click_id: params.partner_click_id,
        subs: params.subs,
        platform,
        head,
        wal_segment: 0,
    };
    (response, Some(click))
}

/// Pushes the click into the ring (never blocks; a full ring drops and counts it).
pub fn enqueue(app: &App, click: Click) {
    match app.ring.push(click) {
        Ok(()) => app.metrics.clicks_enqueued.increment(1),
        Err(_) => app.metrics.clicks_dropped_ring_full.increment(1),
    }
}

/// Write-ahead mode: the click is on local disk (group commit) before its 302 goes out. A
/// failed append is counted and the click still answered and recorded through the ring.
pub async fn write_ahead(app: &App, wal: &Wal, click: &mut Click) {
    let place = match &app.geo {
        Some(geo) => geo.lookup(click.ip),
        None => Place::default(),
    };
    let mut record = Vec::with_capacity(256);
    wal::encode_record(
        &Captured::of(click, app.ip_hasher.hash(click.ip), place),
        &mut record,
    );
    if let Ok(segment) = wal.append(record).await {
        click.wal_segment = segment;
    }
}

/// Paused or deleted: the fallback URL when the link has one (no click recorded), else 410.
fn gone(live: &Arc<LiveLink>, params: &ClickParams) -> Response<Body> {
    let Some(fallback) = &live.fallback else {
        return static_response(StatusCode::GONE, GONE_BODY);
    };
    let mut location = Vec::with_capacity(128);
    fallback.expand(&params.values(&live.link, "", ""), &mut location);
    found(location)
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
    fn long_values_are_capped_on_a_char_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let p = parse_query(Some(&format!("sub1={long}")));
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
