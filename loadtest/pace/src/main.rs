//! pace: HTTP/1.1 load at a fixed rate, each request's latency counted from when it was due
//! as well as from when it went out (wrk2's correction for coordinated omission).
//!
//! Requests are due evenly at the rate; each goes out on any free connection of the pool, and
//! waits (its latency running) only when all are busy: the open model of `oha -q` and k6's
//! constant-arrival-rate, for clicks that arrive whether or not earlier ones were answered.
//!
//! Why not `oha -q`: on two cores shared with the server it sent late, and its correction
//! billed that lateness to the server (oha's corrected p99 at 60k req/s was 6–12 ms for
//! either server where its uncorrected p99 was 1.3–1.9). pace is one thread on epoll: a request
//! is one `write`, its response one `read`, and a timer wakes it on a 100 µs grid for the
//! requests due. It costs about what oha does (~12 µs of CPU a request, most of it the
//! kernel's loopback TCP), but it reports its own lateness, so what it adds to a server's tail
//! is on the record.
//!
//! Usage: pace -R RATE [-c CONNECTIONS] [-d DURATION] [-H 'Name: value']... [--json] URL
//! (URL is `http://host:port/path?query`; no TLS, no redirects followed; a connection the
//! server closes is reopened.)

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    rate: u64,
    connections: usize,
    duration: Duration,
    headers: Vec<String>,
    json: bool,
    host: String,
    port: u16,
    path: String,
}

const USAGE: &str =
    "usage: pace -R RATE [-c CONNECTIONS] [-d DURATION] [-H 'Name: value']... [--json] http://host:port/path";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut rate, mut connections, mut duration) = (None, 64, Duration::from_secs(10));
    let (mut headers, mut json, mut url) = (Vec::new(), false, None);
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-R" | "--rate" => rate = Some(value()?.parse().map_err(|_| "bad rate")?),
            "-c" | "--connections" => {
                connections = value()?.parse().map_err(|_| "bad connection count")?
            }
            "-d" | "--duration" => duration = parse_duration(value()?)?,
            "-H" | "--header" => headers.push(value()?.clone()),
            "--json" => json = true,
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => url = Some(arg.clone()),
        }
    }
    let rate: u64 = rate.ok_or("-R RATE is required")?;
    if rate == 0 || connections == 0 || duration.is_zero() {
        return Err("rate, connections and duration must be above zero".into());
    }
    let (host, port, path) = parse_url(&url.ok_or("a URL is required")?)?;
    Ok(Args {
        rate,
        connections,
        duration,
        headers,
        json,
        host,
        port,
        path,
    })
}

/// `10s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| format!("bad duration {s}"))?;
    match &s[split..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration {s} (use ms, s or m)")),
    }
}

fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(format!("only http:// URLs: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {url}"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    let path = if path.is_empty() { "/" } else { path };
    Ok((host.to_string(), port, path.to_string()))
}

/// A complete response at the start of `buf`.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    len: usize,
    /// The server closes the connection after it (nginx does every `keepalive_requests`).
    close: bool,
}

/// The response at the start of `buf`; `Ok(None)` while more bytes are needed; an error for
/// what pace cannot frame (chunked bodies).
fn parse_response(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buf[..head_end];
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| head.starts_with(b"HTTP/1."))
        .ok_or("not an HTTP/1.x response")?;
    let (mut body, mut close) = (0, false);
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            body = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("bad content-length")?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("chunked responses are not supported".into());
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    let len = head_end + 4 + body;
    Ok((buf.len() >= len).then_some(Response { status, len, close }))
}

/// When request `n` of the run is due: evenly spaced at `rate` from `start`.
fn due_ns(start: u64, n: u64, rate: u64) -> u64 {
    start + (n as u128 * 1_000_000_000 / rate as u128) as u64
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn check(ret: i32, what: &str) -> Result<i32, String> {
    if ret < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

struct Conn {
    stream: TcpStream,
    /// When the request in flight was due, and when it was written.
    due: u64,
    sent: u64,
    in_flight: bool,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Tally {
    /// From when each request was due to its response (ns).
    corrected: Vec<u64>,
    /// From when it was written to its response (ns).
    as_sent: Vec<u64>,
    /// From when each request was due to when it was written (ns): pace's own lateness,
    /// and any wait for a free connection.
    late: Vec<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

struct Load {
    args: Args,
    request: Vec<u8>,
    epoll: RawFd,
    conns: Vec<Conn>,
    /// Connections with no request in flight, the longest idle first.
    free: VecDeque<usize>,
    start: u64,
    /// The next request of the run, numbered from 0.
    next: u64,
    tally: Tally,
}

const TIMER: u64 = u64::MAX;
/// Requests due within one tick go out together. A timer interrupt per request (every 17 µs
/// at 60k req/s) cost pace 16 µs of CPU a response in this VM, 12–14 with a 100 µs grid,
/// which bounds the timer's wake-ups to 10k a second. What the grid adds to a request's
/// wait is counted against the server (latency runs from when the request was due) and
/// shown as pace's lateness.
const TICK_NS: u64 = 100_000;

impl Load {
    fn connect(&self, i: usize) -> Result<TcpStream, String> {
        let stream = TcpStream::connect((self.args.host.as_str(), self.args.port))
            .map_err(|e| format!("connect {}:{}: {e}", self.args.host, self.args.port))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: both descriptors are open; ev outlives the call.
        check(
            unsafe {
                libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut ev)
            },
            "epoll_ctl",
        )?;
        Ok(stream)
    }

    /// A fresh connection for `i` (the old one closes as it drops).
    fn reconnect(&mut self, i: usize) -> bool {
        match self.connect(i) {
            Ok(stream) => {
                self.conns[i].stream = stream;
                self.conns[i].buf.clear();
                true
            }
            Err(e) => {
                eprintln!("pace: {e}");
                false
            }
        }
    }

    fn send(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        c.sent = now;
        c.in_flight = true;
        // One small request on an idle keep-alive socket: the write takes it whole or fails.
        if !matches!(c.stream.write(&self.request), Ok(n) if n == self.request.len()) {
            self.fail(i);
        }
    }

    /// The request in flight on `i` is lost (an error, not a latency). The connection goes
    /// back to the pool for the main loop, so a server that keeps resetting is not retried
    /// in a tight loop.
    fn fail(&mut self, i: usize) {
        self.tally.errors += 1;
        self.conns[i].in_flight = false;
        if self.reconnect(i) {
            self.free.push_back(i);
        }
    }

    /// Writes every request due by `now` on free connections.
    fn dispatch(&mut self, now: u64) {
        loop {
            let due = due_ns(self.start, self.next, self.args.rate);
            if due > now {
                return;
            }
            let Some(i) = self.free.pop_front() else {
                return;
            };
            self.next += 1;
            self.conns[i].due = due;
            self.tally.late.push(now - due);
            self.send(i, now);
        }
    }

    fn readable(&mut self, i: usize) {
        let mut chunk = [0u8; 8192];
        let read = self.conns[i].stream.read(&mut chunk);
        let now = now_ns();
        let in_flight = self.conns[i].in_flight;
        match read {
            Ok(n) if n > 0 => self.conns[i].buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // Closed (or reset) while free, between requests: a keep-alive timeout, not an error.
            _ if !in_flight => {
                self.reconnect(i);
                return;
            }
            _ => return self.fail(i),
        }
        match parse_response(&self.conns[i].buf) {
            Ok(None) => {}
            Ok(Some(response)) => {
                let c = &mut self.conns[i];
                c.buf.drain(..response.len);
                self.tally.corrected.push(now - c.due);
                self.tally.as_sent.push(now - c.sent);
                *self.tally.statuses.entry(response.status).or_default() += 1;
                c.in_flight = false;
                if !response.close || self.reconnect(i) {
                    self.free.push_back(i);
                }
            }
            Err(e) => {
                eprintln!("pace: {e}");
                self.fail(i);
            }
        }
    }

    fn run(&mut self) -> Result<(), String> {
        // SAFETY: plain descriptor creation; checked below.
        let timer = check(
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK) },
            "timerfd_create",
        )?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: TIMER,
        };
        // SAFETY: both descriptors are open.
        check(
            unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, timer, &mut ev) },
            "epoll_ctl",
        )?;
        let result = self.run_until_end(timer);
        // SAFETY: the timer is this run's own.
        unsafe { libc::close(timer) };
        result
    }

    fn run_until_end(&mut self, timer: RawFd) -> Result<(), String> {
        let end = self.start + self.args.duration.as_nanos() as u64;
        let mut armed = 0;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let now = now_ns();
            if now >= end {
                return Ok(());
            }
            self.dispatch(now);
            // With every connection busy, a response is what frees the next send.
            let next = match self.free.is_empty() {
                true => end,
                false => due_ns(self.start, self.next, self.args.rate).min(end),
            };
            let wake = next.div_ceil(TICK_NS) * TICK_NS;
            if wake != armed {
                let spec = libc::itimerspec {
                    it_interval: libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: libc::timespec {
                        tv_sec: (wake / 1_000_000_000) as i64,
                        tv_nsec: (wake % 1_000_000_000) as i64,
                    },
                };
                // SAFETY: valid timer descriptor and spec.
                let set = unsafe {
                    libc::timerfd_settime(
                        timer,
                        libc::TFD_TIMER_ABSTIME,
                        &spec,
                        std::ptr::null_mut(),
                    )
                };
                check(set, "timerfd_settime")?;
                armed = wake;
            }
            // SAFETY: events is a valid buffer of its length.
            let n = unsafe {
                libc::epoll_wait(self.epoll, events.as_mut_ptr(), events.len() as i32, -1)
            };
            if n < 0 && std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            for ev in &events[..check(n, "epoll_wait")? as usize] {
                if ev.u64 == TIMER {
                    let mut expirations = [0u8; 8];
                    // SAFETY: reads 8 bytes into an 8-byte buffer (EAGAIN if none is due).
                    unsafe { libc::read(timer, expirations.as_mut_ptr().cast(), 8) };
                    armed = 0;
                } else {
                    self.readable(ev.u64 as usize);
                }
            }
        }
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: a zeroed rusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn report(args: &Args, tally: &mut Tally, cpu: f64) {
    for v in [&mut tally.corrected, &mut tally.as_sent, &mut tally.late] {
        v.sort_unstable();
    }
    let answered = tally.corrected.len() as u64;
    let secs = args.duration.as_secs_f64();
    let ms = |v: &[u64], q: f64| quantile(v, q) as f64 / 1e6;
    let qs = [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("max", 1.0),
    ];
    let cpu_us = if answered > 0 {
        cpu * 1e6 / answered as f64
    } else {
        0.0
    };
    if args.json {
        let obj = |v: &[u64]| {
            let fields: Vec<String> = qs
                .iter()
                .map(|(k, q)| format!("\"{k}\":{:.3}", ms(v, *q)))
                .collect();
            format!("{{{}}}", fields.join(","))
        };
        let statuses: Vec<String> = tally
            .statuses
            .iter()
            .map(|(s, n)| format!("\"{s}\":{n}"))
            .collect();
        println!(
            "{{\"rate\":{},\"answered\":{answered},\"req_per_sec\":{:.1},\"errors\":{},\"statuses\":{{{}}},\
             \"corrected_ms\":{},\"as_sent_ms\":{},\"late_send_ms\":{},\"cpu_us_per_request\":{cpu_us:.2}}}",
            args.rate,
            answered as f64 / secs,
            tally.errors,
            statuses.join(","),
            obj(&tally.corrected),
            obj(&tally.as_sent),
            obj(&tally.late),
        );
        return;
    }
    println!(
        "{answered} responses in {secs:.1} s ({:.0} req/s of {} asked), {} errors, statuses {:?}",
        answered as f64 / secs,
        args.rate,
        tally.errors,
        tally.statuses
    );
    for (label, v) in [
        ("latency from when due", &tally.corrected),
        ("latency as sent", &tally.as_sent),
        ("pace's own lateness", &tally.late),
    ] {
        let cells: Vec<String> = qs
            .iter()
            .map(|(k, q)| format!("{k} {:.3}", ms(v, *q)))
            .collect();
        println!("{label:>22} (ms): {}", cells.join("  "));
    }
    println!("pace's CPU: {cpu_us:.2} µs a response");
}

/// Runs the load `args` describe: what it measured and pace's CPU seconds meanwhile.
fn run_load(args: Args) -> Result<(Tally, f64), String> {
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", args.path, args.host);
    for h in &args.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    // SAFETY: plain descriptor creation.
    let epoll = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    let mut load = Load {
        request: request.into_bytes(),
        epoll,
        conns: Vec::new(),
        free: (0..args.connections).collect(),
        start: 0,
        next: 0,
        tally: Tally::default(),
        args,
    };
    for i in 0..load.args.connections {
        let stream = load.connect(i)?;
        load.conns.push(Conn {
            stream,
            due: 0,
            sent: 0,
            in_flight: false,
            buf: Vec::with_capacity(8192),
        });
    }
    load.start = now_ns() + 1_000_000;
    let cpu = cpu_seconds();
    load.run()?;
    let cpu = cpu_seconds() - cpu;
    Ok((std::mem::take(&mut load.tally), cpu))
}

impl Drop for Load {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this Load's own.
        unsafe { libc::close(self.epoll) };
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pace: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run_load(args.clone()) {
        Ok((mut tally, cpu)) => {
            report(&args, &mut tally, cpu);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pace: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_their_length() {
        let nginx =
            b"HTTP/1.1 302 Moved Temporarily\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello";
        let sluice = b"HTTP/1.1 302 Found\r\nlocation: https://x/\r\ncontent-length: 0\r\n\r\n";
        let closing = b"HTTP/1.1 302 Found\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n";
        let ok = |status, len, close| Ok(Some(Response { status, len, close }));
        type Framed = Result<Option<Response>, ()>;
        let cases: &[(&[u8], Framed)] = &[
            (nginx, ok(302, nginx.len(), false)),
            (&nginx[..nginx.len() - 1], Ok(None)),
            (&nginx[..20], Ok(None)),
            (sluice, ok(302, sluice.len(), false)),
            (closing, ok(302, closing.len(), true)),
            (
                b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1",
                ok(204, 27, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(()),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Err(())),
            (b"SSH-2.0-OpenSSH\r\n\r\n", Err(())),
        ];
        for (input, want) in cases {
            let got = parse_response(input).map_err(|_| ());
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn requests_are_due_evenly_across_the_run() {
        // (start, n, rate) -> due
        let cases = [
            (0, 0, 1000, 0),
            (0, 1, 1000, 1_000_000),
            (5, 3, 3, 1_000_000_005),
            (0, 60_000 * 3600, 60_000, 3600 * 1_000_000_000),
            (0, 1, 3, 333_333_333),
        ];
        for (start, n, rate, want) in cases {
            assert_eq!(due_ns(start, n, rate), want, "{start} {n} {rate}");
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        for (q, want) in [(0.5, 500), (0.99, 990), (0.999, 999), (1.0, 1000), (0.0, 1)] {
            assert_eq!(quantile(&v, q), want, "{q}");
        }
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn arguments() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let a = parse_args(&argv(
            "-R 500 -c 8 -d 250ms -H X-A:1 http://127.0.0.1:18080/ab?x=1",
        ))
        .unwrap();
        assert_eq!(
            (a.rate, a.connections, a.duration),
            (500, 8, Duration::from_millis(250))
        );
        assert_eq!(
            (a.host.as_str(), a.port, a.path.as_str()),
            ("127.0.0.1", 18080, "/ab?x=1")
        );
        assert_eq!(a.headers, vec!["X-A:1"]);
        let a = parse_args(&argv("--json -R 1 http://localhost")).unwrap();
        assert_eq!(
            (a.port, a.path.as_str(), a.json, a.duration),
            (80, "/", true, Duration::from_secs(10))
        );
        for bad in [
            "http://h/",
            "-R 0 http://h/",
            "-R 5 https://h/",
            "-R 5 -d 3h http://h/",
            "-R 5 -x http://h/",
            "-R 5",
            "-R 5 http://:80/",
        ] {
            assert!(parse_args(&argv(bad)).is_err(), "{bad}");
        }
    }

    /// A server on a thread per connection: answers each request with a 302, closes every
    /// `close_every`-th response's connection (as nginx does after `keepalive_requests`), and
    /// holds the `slow`-th request of the run for 30 ms.
    fn serve(close_every: usize, slow: usize) -> u16 {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut stream, count) = (stream.unwrap(), count.clone());
                std::thread::spawn(move || {
                    let (mut buf, mut answered) = (Vec::new(), 0);
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut chunk) {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            answered += 1;
                            if count.fetch_add(1, Ordering::Relaxed) + 1 == slow {
                                std::thread::sleep(Duration::from_millis(30));
                            }
                            let close = answered % close_every == 0;
                            let header = if close { "Connection: close\r\n" } else { "" };
                            let response = format!("HTTP/1.1 302 Found\r\nLocation: /x\r\n{header}Content-Length: 3\r\n\r\nabc");
                            stream.write_all(response.as_bytes()).unwrap();
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn paces_requests_and_counts_from_when_each_was_due() {
        let port = serve(7, 100);
        let argv: Vec<String> = ["-R", "2000", "-c", "4", "-d", "500ms"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("http://127.0.0.1:{port}/x")])
            .collect();
        let (mut tally, _) = run_load(parse_args(&argv).unwrap()).unwrap();
        let answered = tally.corrected.len();
        // 2000 req/s for 0.5 s, the last few possibly still in flight at the end.
        assert!((950..=1000).contains(&answered), "{answered} answered");
        assert_eq!(
            tally.errors, 0,
            "reconnecting after Connection: close is not an error"
        );
        assert_eq!(tally.statuses.get(&302).copied(), Some(answered as u64));
        for v in [&mut tally.corrected, &mut tally.as_sent] {
            v.sort_unstable();
        }
        let ms = 1_000_000;
        // The held request took 30 ms, as sent and from when it was due.
        assert!(quantile(&tally.as_sent, 1.0) >= 30 * ms);
        assert!(quantile(&tally.corrected, 1.0) >= 30 * ms);
        assert!(quantile(&tally.late, 1.0) > 0);
    }
}
