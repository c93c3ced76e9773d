//! The web dashboard, served from the binary itself (`dashboard/` embedded at build time): no
//! separate server, no CDN, works offline. It is a client of the JSON API with a secret key.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::error::{ApiError, Body};

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/style.css");

/// `/dashboard…`: the page and its two assets.
pub fn asset(path: &str) -> Response<Body> {
    let (body, kind) = match path {
        "/dashboard" | "/dashboard/" | "/dashboard/index.html" => {
            (INDEX, "text/html; charset=utf-8")
        }
        "/dashboard/app.js" => (APP, "text/javascript; charset=utf-8"),
        "/dashboard/style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return ApiError::not_found("no such dashboard asset").into_response(),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // `blob:` images: the link page's QR code, fetched with the key and shown from memory.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}
