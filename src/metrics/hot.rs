//! The metrics every request touches — requests and latency by route, clicks into the ring —
//! counted in one shard per thread and summed only when scraped. In the exporter's
//! registry both serving threads added to the same counters (and pushed every latency
//! sample into one shared bucket, reading the clock again for it), passing those cache
//! lines between the cores on every request. Rendered here in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use super::{Route, CLASSES, ROUTES};

/// Latency bucket bounds: the `le` label and the same bound in nanoseconds.
pub(super) const BUCKETS: [(&str, u64); 17] = [
    ("0.00005", 50_000),
    ("0.0001", 100_000),
    ("0.00025", 250_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// More threads than shards share them (still correct: the adds are atomic).
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

/// One thread's counts, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    requests: [[AtomicU64; CLASSES.len()]; ROUTES.len()],
    /// Per route, per bucket (the last one past every bound), not cumulative.
    latency: [[AtomicU64; BUCKETS.len() + 1]; ROUTES.len()],
    latency_ns: [AtomicU64; ROUTES.len()],
    enqueued: AtomicU64,
    dropped: AtomicU64,
}

pub struct Hot {
    shards: Box<[Shard]>,
}

impl Hot {
    pub fn new() -> Hot {
        Hot {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self) -> &Shard {
        &self.shards[SHARD.with(|i| *i)]
    }

    pub fn request(&self, route: Route, status: u16, elapsed: Duration) {
        let s = self.shard();
        let r = route as usize;
        let class = (status / 100).clamp(1, 5) as usize - 1;
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS
            .iter()
            .position(|&(_, le)| ns <= le)
            .unwrap_or(BUCKETS.len());
        s.requests[r][class].fetch_add(1, Relaxed);
        s.latency[r][bucket].fetch_add(1, Relaxed);
        s.latency_ns[r].fetch_add(ns, Relaxed);
    }

    /// `n` clicks taken by the ring (`true`) or refused by a full one.
    pub fn clicks(&self, enqueued: bool, n: u64) {
        let s = self.shard();
        if enqueued { &s.enqueued } else { &s.dropped }.fetch_add(n, Relaxed);
    }

    fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// Appends these metrics to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let _ = self.write(out);
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        family(
            out,
            "sluice_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status class",
        )?;
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.sum(|s| &s.requests[r][c]);
                writeln!(
                    out,
                    "sluice_http_requests_total{{route=\"{route}\",status=\"{class}\"}} {n}"
                )?;
            }
        }
        family(
            out,
            "sluice_http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by route",
        )?;
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            let mut count = 0;
            for (b, (le, _)) in BUCKETS.iter().enumerate() {
                count += self.sum(|s| &s.latency[r][b]);
                writeln!(out, "sluice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {count}")?;
            }
            count += self.sum(|s| &s.latency[r][BUCKETS.len()]);
            writeln!(out, "sluice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}")?;
            let seconds = self.sum(|s| &s.latency_ns[r]) as f64 / 1e9;
            writeln!(
                out,
                "sluice_http_request_duration_seconds_sum{{route=\"{route}\"}} {seconds}"
            )?;
            writeln!(
                out,
                "sluice_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            )?;
        }
        family(
            out,
            "sluice_clicks_enqueued_total",
            "counter",
            "Clicks pushed into the ring",
        )?;
        writeln!(
            out,
            "sluice_clicks_enqueued_total {}",
            self.sum(|s| &s.enqueued)
        )?;
        family(
            out,
            "sluice_clicks_dropped_total",
            "counter",
            "Clicks redirected but not recorded, by reason",
        )?;
        writeln!(
            out,
            "sluice_clicks_dropped_total{{reason=\"ring_full\"}} {}",
            self.sum(|s| &s.dropped)
        )
    }
}

/// A metric family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
    }

    #[test]
    fn counts_from_every_thread_are_summed_into_cumulative_buckets() {
        let hot = std::sync::Arc::new(Hot::new());
        // (status, latency in µs): on the bounds, between them and past the last one.
        let cases = [
            (302, 40),
            (302, 50),
            (302, 51),
            (404, 900),
            (500, 20_000_000),
        ];
        std::thread::scope(|scope| {
            for _ in 0..3 {
                let hot = hot.clone();
                scope.spawn(move || {
                    for (status, us) in cases {
                        hot.request(Route::Redirect, status, Duration::from_micros(us));
                    }
                    hot.clicks(true, 2);
                    hot.clicks(false, 1);
                });
            }
        });
        hot.request(Route::Stats, 200, Duration::from_millis(3));
        let mut text = String::new();
        hot.render(&mut text);
        for family in [
            "# TYPE sluice_http_requests_total counter",
            "# TYPE sluice_http_request_duration_seconds histogram",
            "# TYPE sluice_clicks_enqueued_total counter",
            "# HELP sluice_clicks_dropped_total Clicks redirected but not recorded, by reason",
        ] {
            assert_eq!(text.lines().filter(|l| *l == family).count(), 1, "{family}");
        }
        let redirect = |s: &str| format!("sluice_http_request_duration_seconds{s}");
        for (series, want) in [
            (
                "sluice_http_requests_total{route=\"redirect\",status=\"3xx\"}".to_string(),
                "9",
            ),
            (
                "sluice_http_requests_total{route=\"redirect\",status=\"4xx\"}".into(),
                "3",
            ),
            (
                "sluice_http_requests_total{route=\"redirect\",status=\"5xx\"}".into(),
                "3",
            ),
            (
                "sluice_http_requests_total{route=\"redirect\",status=\"2xx\"}".into(),
                "0",
            ),
            (
                "sluice_http_requests_total{route=\"stats\",status=\"2xx\"}".into(),
                "1",
            ),
            (redirect("_bucket{route=\"redirect\",le=\"0.00005\"}"), "6"),
            (redirect("_bucket{route=\"redirect\",le=\"0.0001\"}"), "9"),
            (redirect("_bucket{route=\"redirect\",le=\"0.001\"}"), "12"),
            (redirect("_bucket{route=\"redirect\",le=\"10\"}"), "12"),
            (redirect("_bucket{route=\"redirect\",le=\"+Inf\"}"), "15"),
            (redirect("_count{route=\"redirect\"}"), "15"),
            (redirect("_sum{route=\"redirect\"}"), "60.003123"),
            (redirect("_bucket{route=\"stats\",le=\"0.0025\"}"), "0"),
            (redirect("_bucket{route=\"stats\",le=\"0.005\"}"), "1"),
            ("sluice_clicks_enqueued_total".into(), "6"),
            (
                "sluice_clicks_dropped_total{reason=\"ring_full\"}".into(),
                "3",
            ),
        ] {
            assert_eq!(line(&text, &series), want, "{series}");
        }
    }
}
