//! The HTTP surface: accept loop (hyper 1, HTTP/1.1), router (method + path), and handlers.

pub mod api;
pub mod auth;
pub mod client_ip;
pub mod connection;
pub mod dashboard;
pub mod error;
pub mod ops;
pub mod rate_limit;
pub mod redirect;
pub mod visitor;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ACCEPT_LANGUAGE, REFERER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::app::App;
use crate::error::Unavailable;
use crate::link;
use crate::metrics::Route;
use crate::skan::receive::Receiver;
use crate::stats::Group;
use error::{ApiError, Body};

/// Slow clients get this long to send their request headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 16 * 1024;
// A `HeaderName`, not a `&str`: a string name is parsed again on every lookup.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Binds `threads` listening sockets to one address with `SO_REUSEPORT`: the kernel spreads
/// connections across them, and each is served by its own single-threaded runtime, so a
/// request never wakes another thread (nginx's model; measured in ARCHITECTURE.md).
pub fn bind_reuseport(
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let new_socket = |addr: SocketAddr| {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        Ok::<_, std::io::Error>(socket)
    };
    if addr.port() != 0 {
        // A plain bind first: with SO_REUSEPORT alone, a second Sluice (or anything else
        // listening with it, as the same user) would join the first one's group and quietly
        // get half its connections, where a user expects "address in use".
        new_socket(addr)?.bind(&addr.into())?;
    }
    let mut listeners = Vec::with_capacity(threads);
    let mut addr = addr;
    for _ in 0..threads.max(1) {
        let socket = new_socket(addr)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        // Port 0: the first bind picks the port, the rest join it.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accepts connections until `shutdown` flips, then lets open connections finish their
/// in-flight request (up to `grace`).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let builder = Arc::new(builder);
    // Connections watch this thread's own copy of the shutdown signal: waiting on the shared
    // one would take a lock both serving threads contend for on every request.
    let (stop_connections, stopping) = watch::channel(false);
    // Every connection holds a sender; `recv` answers `None` once all are gone.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection::serve(
                    stream,
                    peer,
                    app.clone(),
                    builder.clone(),
                    stopping.clone(),
                    alive.clone(),
                ));
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = stop_connections.send(true);
    drop(alive);
    if tokio::time::timeout(grace, all_closed.recv())
        .await
        .is_err()
    {
        warn!("connections still open after the grace period; closing them");
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `prefix` → `Some(None)` (the collection); `prefix/{id}` → `Some(Some(id))`; anything deeper
/// or an empty id → `None`.
fn item<'a>(path: &'a str, prefix: &str) -> Option<Option<&'a str>> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(None);
    }
    let id = rest.strip_prefix('/')?;
    (!id.is_empty() && !id.contains('/')).then_some(Some(id))
}

/// A link's sub-resource: `/v1/links/{id}/stats` or `/v1/links/{id}/qr`, with its `{id}`
/// (possibly empty or holding `/`: the caller says 404).
#[derive(Clone, Copy, PartialEq)]
enum LinkView {
    Stats,
    Qr,
    Preview,
}

fn link_view(path: &str) -> Option<(&str, LinkView)> {
    let rest = path.strip_prefix("/v1/links/")?;
    [
        ("/stats", LinkView::Stats),
        ("/qr", LinkView::Qr),
        ("/preview", LinkView::Preview),
    ]
    .into_iter()
    .find_map(|(suffix, view)| Some((rest.strip_suffix(suffix)?, view)))
}

/// The client endpoints web apps call from their own origins (with a publishable key, no
/// cookies), so they answer CORS preflights and carry `Access-Control-Allow-Origin: *`.
const CORS_PATHS: [&str; 3] = [
    "/v1/attribution/install",
    "/v1/attribution/deferred",
    "/v1/attribution/link",
];

/// Where Apple devices send the advertiser's copy of a postback (the app's developer
/// registers this server's domain in its Info.plist).
const WELL_KNOWN_SKADNETWORK: &str = "/.well-known/skadnetwork/report-attribution/";
const WELL_KNOWN_APPATTRIBUTION: &str = "/.well-known/appattribution/report-attribution/";

/// The `route` label of a path, for the request metrics.
fn route_of(path: &str) -> Route {
    let api = |prefix| under(path, prefix);
    match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/v1/attribution/install"
        | "/v1/attribution/deferred"
        | "/v1/attribution/link"
        | "/v1/attribution/config" => Route::Attribution,
        "/v1/attribution/results" => Route::Stats,
        _ if api("/v1/attribution/installs") => Route::Stats,
        "/v1/events" => Route::Events,
        _ if api("/v1/attribution/stats")
            || link_view(path).is_some_and(|(_, view)| view == LinkView::Stats) =>
        {
            Route::Stats
        }
        _ if api("/v1/attribution/reports") || api("/v1/partners") || api("/v1/webhooks") => {
            Route::Delivery
        }
        _ if api("/v1/sources") => Route::Sources,
        _ if api("/v1/apps") || api("/v1/skan") || path.starts_with("/.well-known/") => Route::Skan,
        _ if api("/v1/keys") => Route::Keys,
        _ if path.starts_with("/w/") => Route::Conversions,
        _ if api("/v1/links") => Route::Links,
        _ if path
            .strip_prefix('/')
            .is_some_and(|code| link::valid_code(code) && !link::is_reserved(code)) =>
        {
            Route::Redirect
        }
        _ => Route::Other,
    }
}

pub(crate) async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let route = route_of(req.uri().path());
    let cors = CORS_PATHS.contains(&req.uri().path());
    let mut resp = if cors && req.method() == Method::OPTIONS {
        error::empty_response(hyper::StatusCode::NO_CONTENT)
    } else {
        // A bug costs its request, not the process: a panic anywhere below answers 500 and
        // the serving thread goes on (the release profile unwinds for this).
        match AssertUnwindSafe(dispatch(app, req, peer))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(_) => panicked(app, route),
        }
    };
    if cors {
        use hyper::header::{
            HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
            ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
        };
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, PUT, OPTIONS"),
        );
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-api-key"),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    }
    app.metrics
        .record_request(route, resp.status().as_u16(), started.elapsed());
    resp
}

/// The answer to a request whose handling panicked (the panic hook has logged it).
pub(crate) fn panicked(app: &App, route: Route) -> Response<Body> {
    app.metrics.panic(route);
    ApiError::internal().into_response()
}

/// Turns a handler's outcome into its response; a store that failed is logged and counted
/// here, once per request.
fn answer(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|e| {
        let metrics = crate::metrics::init();
        match e.unavailable.as_deref() {
            Some(Unavailable::Redis(error)) => {
                warn!(%error, "redis request failed");
                metrics.redis_errors.increment(1);
            }
            Some(Unavailable::ClickHouse(error)) => {
                warn!(%error, "clickhouse request failed");
                metrics.clickhouse_errors.increment(1);
            }
            None => {}
        }
        e.into_response()
    })
}

async fn dispatch(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method().clone();
    let not_found = || ApiError::not_found("no such route").into_response();
    let wrong_method = || ApiError::method_not_allowed().into_response();
    // The hot path first: a single root segment that is not reserved.
    if let Some(code) = path.strip_prefix('/') {
        if link::valid_code(code) && !link::is_reserved(code) {
            let head = match method {
                Method::GET => false,
                Method::HEAD => true,
                _ => return wrong_method(),
            };
            let headers = req.headers();
            let visit = redirect::Visit {
                code,
                query: req.uri().query(),
                user_agent: headers.get(USER_AGENT).map_or(&[], |v| v.as_bytes()),
                referrer: headers.get(REFERER).map(|v| v.as_bytes()),
                accept_language: headers.get(ACCEPT_LANGUAGE).map(|v| v.as_bytes()),
                forwarded_for: headers
                    .get_all(&X_FORWARDED_FOR)
                    .iter()
                    .map(HeaderValue::as_bytes),
                peer,
                head,
                now_ms: crate::time::now_ms(),
                location: Vec::new(),
            };
            let (answer, click) = redirect::redirect(app, visit);
            if let Some(click) = click {
                redirect::record(app, click).await;
            }
            return answer.into_response();
        }
    }
    match path {
        "/metrics" => ops::metrics(app),
        _ if path == "/dashboard" || path.starts_with("/dashboard/") => {
            if method != Method::GET && method != Method::HEAD {
                return wrong_method();
            }
            dashboard::asset(path)
        }
        "/healthz" => ops::healthz(),
        "/v1/openapi.json" if method == Method::GET || method == Method::HEAD => ops::openapi(),
        "/readyz" => ops::readyz(app).await,
        "/v1/test/panic" if app.config.panic_route => panic!("the test route panics on purpose"),
        "/v1/attribution/install" | "/v1/attribution/deferred" if method == Method::POST => {
            let endpoint = if path.ends_with("install") {
                api::attribution::Endpoint::Install
            } else {
                api::attribution::Endpoint::Deferred
            };
            let (parts, body) = req.into_parts();
            answer(api::attribution::attribute(app, endpoint, &parts.headers, peer, body).await)
        }
        "/v1/attribution/link" if method == Method::PUT => {
            let (parts, body) = req.into_parts();
            answer(api::attribution::bind_user(app, &parts.headers, body).await)
        }
        "/v1/attribution/install" | "/v1/attribution/deferred" | "/v1/attribution/link" => {
            wrong_method()
        }
        "/v1/attribution/config" => {
            let (parts, body) = req.into_parts();
            answer(api::attribution::config(app, &parts.method, &parts.headers, body).await)
        }
        "/v1/attribution/stats"
        | "/v1/attribution/stats/by-campaign"
        | "/v1/attribution/stats/by-source"
        | "/v1/attribution/stats/timeseries" => {
            if method != Method::GET {
                return wrong_method();
            }
            let group = match path.rsplit('/').next() {
                Some("by-campaign") => Group::Campaign,
                Some("by-source") => Group::Source,
                Some("timeseries") => Group::Day,
                _ => Group::Total,
            };
            answer(api::stats::tenant_stats(app, group, req.headers(), req.uri().query()).await)
        }
        "/v1/attribution/stats/breakdown" => {
            if method != Method::GET {
                return wrong_method();
            }
            answer(api::stats::breakdown(app, req.headers(), req.uri().query()).await)
        }
        "/v1/attribution/stats/ctit" => {
            if method != Method::GET {
                return wrong_method();
            }
            answer(api::stats::ctit(app, req.headers(), req.uri().query()).await)
        }
        _ if under(path, "/v1/attribution/reports") => {
            let Some(id) = item(path, "/v1/attribution/reports").map(|id| id.map(str::to_string))
            else {
                return not_found();
            };
            let (parts, body) = req.into_parts();
            answer(
                api::reports::reports(app, &parts.method, id.as_deref(), &parts.headers, body)
                    .await,
            )
        }
        "/v1/attribution/results" => {
            if method != Method::GET {
                return wrong_method();
            }
            answer(api::results::results(app, req.headers(), req.uri().query()).await)
        }
        _ if under(path, "/v1/attribution/installs") => {
            let Some(Some(id)) = item(path, "/v1/attribution/installs") else {
                return not_found();
            };
            if method != Method::GET {
                return wrong_method();
            }
            answer(api::results::receipt(app, req.headers(), id).await)
        }
        _ if link_view(path).is_some() => {
            let Some((id, view)) = link_view(path) else {
                return not_found();
            };
            let wanted = match view {
                LinkView::Preview => Method::POST,
                LinkView::Stats | LinkView::Qr => Method::GET,
            };
            if method != wanted {
                return wrong_method();
            }
            if id.is_empty() || id.contains('/') {
                return not_found();
            }
            let id = id.to_string();
            let (parts, body) = req.into_parts();
            let (headers, query) = (&parts.headers, parts.uri.query());
            answer(match view {
                LinkView::Stats => api::stats::link_stats(app, &id, headers, query).await,
                LinkView::Qr => api::links::qr(app, &id, headers, query).await,
                LinkView::Preview => api::links::preview(app, &id, headers, body).await,
            })
        }
        "/v1/events" => {
            if method != Method::POST {
                return wrong_method();
            }
            let (parts, body) = req.into_parts();
            answer(api::events::ingest(app, &parts.headers, body).await)
        }
        _ if under(path, "/v1/partners") || under(path, "/v1/webhooks") => {
            let webhooks = path.starts_with("/v1/webhooks");
            let rest = path.splitn(4, '/').nth(3).map(str::to_string);
            let (id, deliveries) = match rest.as_deref().map(|r| r.split_once('/')) {
                None => (None, false),
                Some(None) => (rest.clone(), false),
                Some(Some((id, "deliveries"))) => (Some(id.to_string()), true),
                Some(Some(_)) => (Some(String::new()), false),
            };
            if id.as_deref() == Some("") {
                return not_found();
            }
            let (parts, body) = req.into_parts();
            let (method, headers, id) = (&parts.method, &parts.headers, id.as_deref());
            answer(if webhooks {
                api::partners::webhooks(app, method, id, deliveries, headers, body).await
            } else {
                api::partners::partners(app, method, id, deliveries, headers, body).await
            })
        }
        _ if under(path, "/v1/sources") => {
            // `/v1/sources/{id}/rotate` gives the source a new webhook URL.
            let action = path.strip_suffix("/rotate");
            let rotate = action.is_some();
            let Some(id) = item(action.unwrap_or(path), "/v1/sources")
                .filter(|id| id.is_some() || !rotate)
                .map(|id| id.map(str::to_string))
            else {
                return not_found();
            };
            let (parts, body) = req.into_parts();
            let (method, headers) = (&parts.method, &parts.headers);
            answer(api::sources::handle(app, method, id.as_deref(), rotate, headers, body).await)
        }
        _ if path.starts_with("/w/") => {
            if method != Method::POST {
                return wrong_method();
            }
            let token = path["/w/".len()..].to_string();
            let (parts, body) = req.into_parts();
            answer(api::sources::receive(app, &token, &parts.headers, body).await)
        }
        WELL_KNOWN_SKADNETWORK | WELL_KNOWN_APPATTRIBUTION | "/v1/skan/postbacks" => {
            if method != Method::POST {
                return wrong_method();
            }
            let receiver = match path {
                WELL_KNOWN_SKADNETWORK => Some(Receiver::SkAdNetwork),
                WELL_KNOWN_APPATTRIBUTION => Some(Receiver::AppAttribution),
                _ => None,
            };
            let (parts, body) = req.into_parts();
            answer(api::skan::postback(app, receiver, &parts.headers, body).await)
        }
        "/v1/skan/campaigns" => {
            let (parts, body) = req.into_parts();
            answer(api::skan::campaign_map(app, &parts.method, &parts.headers, body).await)
        }
        "/v1/skan/stats" => {
            if method != Method::GET {
                return wrong_method();
            }
            answer(api::skan::figures(app, req.headers(), req.uri().query()).await)
        }
        _ if under(path, "/v1/apps") => {
            let Some(id) = item(path, "/v1/apps").map(|id| id.map(str::to_string)) else {
                return not_found();
            };
            let (parts, body) = req.into_parts();
            answer(api::skan::apps(app, &parts.method, id.as_deref(), &parts.headers, body).await)
        }
        _ if under(path, "/v1/keys") => {
            let Some(id) = item(path, "/v1/keys").map(|id| id.map(str::to_string)) else {
                return not_found();
            };
            let (parts, body) = req.into_parts();
            answer(api::keys::handle(app, &parts.method, id.as_deref(), &parts.headers, body).await)
        }
        _ if under(path, "/v1/links") => {
            let Some(id) = item(path, "/v1/links").map(|id| id.map(str::to_string)) else {
                return not_found();
            };
            let (parts, body) = req.into_parts();
            answer(api::links::handle(app, &parts, id.as_deref(), body).await)
        }
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_on_the_same_port_is_refused() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert!(first.iter().all(|l| l.local_addr().unwrap() == addr));
        let second = bind_reuseport(addr, 2).expect_err("joined the first server's sockets");
        assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
        drop(first);
        assert_eq!(
            bind_reuseport(addr, 2).unwrap().len(),
            2,
            "free again once closed"
        );
    }

    #[test]
    fn collection_paths() {
        let cases = [
            ("/v1/links", Some(None)),
            ("/v1/links/abc", Some(Some("abc"))),
            ("/v1/links/", None),
            ("/v1/links/a/b", None),
            ("/v1/linksx", None),
        ];
        for (path, want) in cases {
            assert_eq!(item(path, "/v1/links"), want, "{path}");
        }
        assert!(under("/v1/links/a/stats", "/v1/links"));
        assert!(!under("/v1/linksx", "/v1/links"));
    }
}
