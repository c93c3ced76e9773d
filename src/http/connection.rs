//! One client connection. Redirects (`GET|HEAD /{code}` over HTTP/1.1 without a body) are
//! parsed and answered straight off the socket; the first request of any other kind hands
//! the connection, with what it has buffered, to hyper for the rest of its life.
//!
//! Why: under hyper the redirect's own work was a quarter of the serving thread's
//! instructions; the rest went to building and dropping header maps, URIs, timers and
//! response objects that a 302 does not need (callgrind figures in `loadtest/RESULTS.md`).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::{redirect, route, HEADER_READ_TIMEOUT, MAX_HEADERS, MAX_HEADER_BYTES};
use crate::app::App;
use crate::link;
use crate::metrics::Route;
use crate::time;

/// The answer to a redirect whose handling panicked; the connection is closed after it.
const PANIC_RESPONSE: &str = concat!(
    "HTTP/1.1 500 Internal Server Error\r\n",
    "content-type: application/json\r\n",
    "cache-control: no-store\r\n",
    "connection: close\r\n",
    "content-length: 100\r\n\r\n",
    r#"{"error":{"code":"internal_error","message":"the request could not be handled; it has been logged"}}"#
);

/// More `X-Forwarded-For` headers than this and the request goes to hyper.
const MAX_FORWARDED_FOR: usize = 8;

/// Serves `stream` until the client closes it, it idles or dawdles past
/// `HEADER_READ_TIMEOUT`, or `shutdown` flips (then after the request in progress).
/// `_alive` is dropped with the connection: the server waits for all of them.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    let mut stopping = *shutdown.borrow();
    // Polled across requests, so it registers with the channel once per connection.
    let stop = shutdown.changed();
    tokio::pin!(stop);
    // One timer per connection, re-armed lazily: a request head must arrive within
    // `HEADER_READ_TIMEOUT` of when the connection started waiting for it.
    let mut deadline = Instant::now() + HEADER_READ_TIMEOUT;
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    // The statuses of the redirects answered from one read, counted once it is written.
    let mut answered = Vec::new();
    let mut location = Vec::new();
    loop {
        let mut close = false;
        let mut hand_over = false;
        // The clock is read twice per read from the socket, not five times per request:
        // every request in it arrived at `arrived` (its click's time and the `Date`
        // header), and its latency runs from then until its answer is written.
        let arrived = Instant::now();
        let wall = SystemTime::now();
        while !buf.is_empty() {
            // A panic answering one request costs that request (500, connection closed), not
            // the serving thread and every connection on it.
            let written = out.len();
            let step = std::panic::catch_unwind(AssertUnwindSafe(|| {
                answer(&app, &buf, peer, stopping, wall, &mut location, &mut out)
            }));
            let Ok(step) = step else {
                app.metrics.panic(Route::Redirect);
                out.truncate(written);
                out.extend_from_slice(PANIC_RESPONSE.as_bytes());
                answered.push(500);
                close = true;
                break;
            };
            match step {
                Step::Answered {
                    consumed,
                    close: last,
                    status,
                    click,
                } => {
                    buf.advance(consumed);
                    answered.push(status);
                    if let Some(click) = click {
                        redirect::record(&app, click).await;
                    }
                    if last {
                        close = true;
                        break;
                    }
                }
                Step::Incomplete => {
                    // Past the header limit hyper answers 431.
                    hand_over = buf.len() >= MAX_HEADER_BYTES;
                    break;
                }
                Step::Other => {
                    hand_over = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let written = Instant::now();
        let took = written - arrived;
        for status in answered.drain(..) {
            app.metrics.record_request(Route::Redirect, status, took);
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        if hand_over {
            let stop = (!stopping).then_some(stop);
            return to_hyper(stream, buf.freeze(), peer, app, &builder, stop).await;
        }
        if buf.is_empty() {
            if stopping {
                return;
            }
            deadline = written + HEADER_READ_TIMEOUT;
        }
        buf.reserve(4096);
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => break,
                },
                _ = &mut sleep => {
                    if Instant::now() >= deadline {
                        debug!("request head not received in time; closing");
                        return;
                    }
                    sleep.as_mut().reset(deadline.into());
                }
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    if buf.is_empty() {
                        return;
                    }
                }
            }
        }
    }
}

enum Step {
    /// A redirect answered into `out`; `consumed` bytes of the buffer were its request.
    Answered {
        consumed: usize,
        close: bool,
        status: u16,
        click: Option<crate::click::Click>,
    },
    /// The request head is not all here yet.
    Incomplete,
    /// Not a redirect (or not one this front handles): hyper's.
    Other,
}

/// Parses the request at the start of `buf` and, if it is a redirect that arrived at `now`,
/// answers it into `out`. `location` is room for the Location, kept for the next answer.
fn answer(
    app: &App,
    buf: &[u8],
    peer: SocketAddr,
    stopping: bool,
    now: SystemTime,
    location: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Step {
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let consumed = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::Incomplete,
        Err(_) => return Step::Other,
    };
    if req.version != Some(1) {
        return Step::Other;
    }
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Step::Other,
    };
    let target = req.path.unwrap_or_default();
    // A char array, not a char: on a target this short, setting up memchr costs more.
    let (path, query) = match target.split_once(['?']) {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let Some(code) = path.strip_prefix('/') else {
        return Step::Other;
    };
    if !link::valid_code(code) || link::is_reserved(code) {
        return Step::Other;
    }
    let mut user_agent: &[u8] = &[];
    let mut referrer = None;
    let mut accept_language = None;
    let mut forwarded = [&[][..]; MAX_FORWARDED_FOR];
    let mut forwarded_len = 0;
    let mut close = stopping;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent = h.value;
        } else if name.eq_ignore_ascii_case(b"referer") {
            referrer = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"accept-language") {
            accept_language = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if forwarded_len == MAX_FORWARDED_FOR {
                return Step::Other;
            }
            forwarded[forwarded_len] = h.value;
            forwarded_len += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"content-length") && h.value.trim_ascii() != b"0"
        {
            // A body to read past: hyper's business.
            return Step::Other;
        }
    }
    let (answer, click) = redirect::redirect(
        app,
        redirect::Visit {
            code,
            query,
            user_agent,
            referrer,
            accept_language,
            forwarded_for: forwarded[..forwarded_len].iter().copied(),
            peer,
            head,
            now_ms: time::ms_since_epoch(now),
            location: std::mem::take(location),
        },
    );
    DATE.with_borrow_mut(|date| answer.write_http1(head, close, date.at(now), out));
    let status = answer.status().as_u16();
    if let redirect::Answer::Found(room) = answer {
        *location = room;
    }
    Step::Answered {
        consumed,
        close,
        status,
        click,
    }
}

/// Serves the rest of the connection with hyper, starting with the bytes already read;
/// `stop` (absent once shutdown has begun) completes when it begins.
async fn to_hyper(
    stream: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    app: Arc<App>,
    builder: &http1::Builder,
    stop: Option<Pin<&mut impl Future<Output = Result<(), watch::error::RecvError>>>>,
) {
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(route(&app, req, peer).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(Rewind { read, stream }), service);
    tokio::pin!(conn);
    match stop {
        None => conn.as_mut().graceful_shutdown(),
        Some(stop) => tokio::select! {
            done = conn.as_mut() => {
                if let Err(error) = done {
                    debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stop => conn.as_mut().graceful_shutdown(),
        },
    }
    if let Err(error) = conn.await {
        debug!(%error, "connection ended with an error");
    }
}

/// A stream that first yields bytes already read from it.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The `Date` header value, formatted once a second per serving thread.
struct CachedDate {
    second: u64,
    text: String,
}

impl CachedDate {
    fn at(&mut self, now: SystemTime) -> &[u8] {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

thread_local! {
    static DATE: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: 0, text: String::new() })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_response_is_framed() {
        let (head, body) = PANIC_RESPONSE.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "internal_error");
    }
}
