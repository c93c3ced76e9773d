//! Every metric Sluice exports, declared once. Label values are fixed strings, never user
//! input. Handles are resolved once so the hot path only does atomic adds; the metrics of
//! every request are per-thread shards of their own (`hot`).

mod hot;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::attribution::fraud::Verdict;
use crate::attribution::MatchType;

/// Routes as they appear in the `route` label (in `ROUTES`' order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Redirect,
    Links,
    Attribution,
    Events,
    Sources,
    Conversions,
    Stats,
    Delivery,
    Keys,
    Skan,
    Metrics,
    Health,
    Ready,
    Other,
}

const ROUTES: [(Route, &str); 14] = [
    (Route::Redirect, "redirect"),
    (Route::Links, "links"),
    (Route::Attribution, "attribution"),
    (Route::Events, "events"),
    (Route::Sources, "sources"),
    (Route::Conversions, "conversions"),
    (Route::Stats, "stats"),
    (Route::Delivery, "delivery"),
    (Route::Keys, "keys"),
    (Route::Skan, "skan"),
    (Route::Metrics, "metrics"),
    (Route::Health, "healthz"),
    (Route::Ready, "readyz"),
    (Route::Other, "other"),
];

/// The fact tables, as the `table` label says them.
const TABLES: [&str; 4] = ["clicks", "installs", "events", "conversions"];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct Metrics {
    hot: hot::Hot,
    pub ring_depth: Gauge,
    pub ring_capacity: Gauge,
    pub clicks_flushed: Counter,
    pub clicks_bot: Counter,
    pub clicks_preview: Counter,
    pub flush_batch_rows: Histogram,
    pub flush_duration: Histogram,
    pub flush_ok: Counter,
    pub flush_error: Counter,
    pub batches_pending: Gauge,
    pub clickhouse_errors: Counter,
    pub redis_errors: Counter,
    pub link_table_size: Gauge,
    pub link_refresh_errors: Counter,
    pub click_cap_share_errors: Counter,
    pub link_changes_applied: Counter,
    pub link_catalog_loads: Counter,
    pub link_catalog_version: Gauge,
    pub clicks_spilled: Counter,
    pub clicks_replayed: Counter,
    pub spill_bytes: Gauge,
    pub spill_written: Counter,
    pub spill_already_landed: Counter,
    pub spill_errors: Counter,
    pub spill_corrupt: Counter,
    pub wal_group_size: Histogram,
    pub wal_errors: Counter,
    pub clicks_recovered: Counter,
    pub fingerprints_dropped: Counter,
    pub fingerprints_written: Counter,
    pub matches: [Counter; 5],
    /// Matched installs by fraud verdict, in `Verdict` order.
    pub fraud_verdicts: [Counter; 5],
    /// Postbacks received, by (stored, counted): duplicate/uncounted, duplicate/counted,
    /// stored/uncounted, stored/counted.
    pub skan_postbacks: [Counter; 4],
    /// Installs, events and conversions inserted into ClickHouse.
    facts_flushed: [Counter; 4],
    pub events_received: Counter,
    pub events_deduped: Counter,
    /// Conversions by outcome: accepted, deduped, unattributed, failed.
    pub conversions: [Counter; 4],
    pub rate_limited: Counter,
    pub stats_queries: Counter,
    pub deliveries_enqueued: Counter,
    pub deliveries_lost: Counter,
    /// Delivery attempts by outcome: delivered, retrying, dead.
    pub deliveries: [Counter; 3],
    /// Rows of batches ClickHouse refused for good, set aside, by table.
    dead_letter_rows: [Counter; 4],
    /// Requests whose handling panicked, by route (in `ROUTES`' order).
    panics: [Counter; ROUTES.len()],
}

impl Metrics {
    /// Counts rows of a batch ClickHouse refused for good, by the table it was for.
    pub fn dead_lettered(&self, table: &str, rows: u64) {
        let i = TABLES.iter().position(|t| *t == table).unwrap_or(0);
        self.dead_letter_rows[i].increment(rows);
    }

    /// Counts rows that reached ClickHouse, by the table they went to.
    pub fn rows_flushed(&self, table: &str, rows: u64) {
        match table {
            "clicks" => &self.clicks_flushed,
            "events" => &self.facts_flushed[1],
            "conversions" => &self.facts_flushed[2],
            "skan_postbacks" => &self.facts_flushed[3],
            _ => &self.facts_flushed[0],
        }
        .increment(rows);
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the metric handles.
pub fn init() -> &'static Metrics {
    HANDLE.get_or_init(|| {
        // The request latency's bounds (`hot`) for every other duration too.
        let seconds = hot::BUCKETS.map(|(_, ns)| ns as f64 / 1e9);
        let rows = [
            1.0, 10.0, 100.0, 1_000.0, 10_000.0, 50_000.0, 100_000.0, 500_000.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &seconds)
            .expect("static buckets")
            .set_buckets_for_metric(Matcher::Suffix("rows".into()), &rows)
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("metrics recorder installed once");
        handle
    });
    METRICS.get_or_init(|| {
        describe();
        Metrics {
            hot: hot::Hot::new(),
            ring_depth: metrics::gauge!("sluice_ring_depth"),
            ring_capacity: metrics::gauge!("sluice_ring_capacity"),
            clicks_flushed: metrics::counter!("sluice_clicks_flushed_total"),
            clicks_bot: metrics::counter!("sluice_clicks_flagged_total", "flag" => "bot"),
            clicks_preview: metrics::counter!("sluice_clicks_flagged_total", "flag" => "preview"),
            flush_batch_rows: metrics::histogram!("sluice_flush_batch_rows"),
            flush_duration: metrics::histogram!("sluice_flush_duration_seconds"),
            flush_ok: metrics::counter!("sluice_flush_batches_total", "result" => "ok"),
            flush_error: metrics::counter!("sluice_flush_batches_total", "result" => "error"),
            batches_pending: metrics::gauge!("sluice_flush_batches_pending"),
            clickhouse_errors: metrics::counter!("sluice_clickhouse_errors_total"),
            redis_errors: metrics::counter!("sluice_redis_errors_total"),
            link_table_size: metrics::gauge!("sluice_link_table_links"),
            link_refresh_errors: metrics::counter!("sluice_link_refresh_errors_total"),
            click_cap_share_errors: metrics::counter!("sluice_click_cap_share_errors_total"),
            link_changes_applied: metrics::counter!("sluice_link_changes_applied_total"),
            link_catalog_loads: metrics::counter!("sluice_link_catalog_loads_total"),
            link_catalog_version: metrics::gauge!("sluice_link_catalog_version"),
            clicks_spilled: metrics::counter!("sluice_clicks_spilled_total"),
            clicks_replayed: metrics::counter!("sluice_clicks_replayed_total"),
            spill_bytes: metrics::gauge!("sluice_spill_bytes"),
            spill_written: metrics::counter!("sluice_spill_batches_total", "op" => "written"),
            spill_already_landed: metrics::counter!("sluice_spill_batches_total", "op" => "already_landed"),
            spill_errors: metrics::counter!("sluice_spill_errors_total"),
            spill_corrupt: metrics::counter!("sluice_spill_corrupt_records_total"),
            wal_group_size: metrics::histogram!("sluice_wal_group_commit_rows"),
            wal_errors: metrics::counter!("sluice_wal_errors_total"),
            clicks_recovered: metrics::counter!("sluice_clicks_recovered_total"),
            fingerprints_dropped: metrics::counter!("sluice_fingerprints_dropped_total"),
            fingerprints_written: metrics::counter!("sluice_fingerprints_written_total"),
            matches: MatchType::ALL.map(|m| {
                metrics::counter!("sluice_attribution_matches_total", "match_type" => m.as_str())
            }),
            fraud_verdicts: Verdict::ALL.map(|v| {
                metrics::counter!("sluice_fraud_verdicts_total", "verdict" => v.as_str())
            }),
            skan_postbacks: [
                ("duplicate", "false"),
                ("duplicate", "true"),
                ("stored", "false"),
                ("stored", "true"),
            ]
            .map(|(result, counted)| {
                metrics::counter!("sluice_skan_postbacks_total", "result" => result, "counted" => counted)
            }),
            facts_flushed: ["installs", "events", "conversions", "skan_postbacks"]
                .map(|k| metrics::counter!("sluice_facts_flushed_total", "kind" => k)),
            events_received: metrics::counter!("sluice_events_total", "result" => "accepted"),
            events_deduped: metrics::counter!("sluice_events_total", "result" => "deduped"),
            conversions: ["accepted", "deduped", "unattributed", "failed"]
                .map(|r| metrics::counter!("sluice_conversions_total", "result" => r)),
            rate_limited: metrics::counter!("sluice_rate_limited_total"),
            stats_queries: metrics::counter!("sluice_stats_clickhouse_queries_total"),
            deliveries_enqueued: metrics::counter!("sluice_deliveries_enqueued_total"),
            deliveries_lost: metrics::counter!("sluice_deliveries_lost_total"),
            deliveries: ["delivered", "retrying", "dead"]
                .map(|r| metrics::counter!("sluice_delivery_attempts_total", "result" => r)),
            panics: ROUTES.map(|(_, r)| metrics::counter!("sluice_panics_total", "route" => r)),
            dead_letter_rows: TABLES
                .map(|t| metrics::counter!("sluice_dead_letter_rows_total", "table" => t)),
        }
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("sluice_ring_depth", "Clicks waiting in the ring buffer");
    describe_gauge!("sluice_ring_capacity", "Capacity of the ring buffer");
    describe_counter!(
        "sluice_clicks_flushed_total",
        "Click rows inserted into ClickHouse"
    );
    describe_counter!(
        "sluice_facts_flushed_total",
        "Install, event, conversion and SKAdNetwork postback rows inserted into ClickHouse, by kind"
    );
    describe_counter!(
        "sluice_events_total",
        "Server-to-server events received, stored (accepted) or already known (deduped)"
    );
    describe_counter!(
        "sluice_conversions_total",
        "Webhook-source conversions by outcome"
    );
    describe_counter!("sluice_rate_limited_total", "API requests refused with 429");
    describe_counter!(
        "sluice_stats_clickhouse_queries_total",
        "ClickHouse queries run for stats answers (cache misses)"
    );
    describe_counter!(
        "sluice_deliveries_enqueued_total",
        "Postbacks, webhooks and report batches put in the durable delivery queue"
    );
    describe_counter!(
        "sluice_deliveries_lost_total",
        "Deliveries of stored facts that could not be enqueued (Redis down)"
    );
    describe_counter!(
        "sluice_delivery_attempts_total",
        "Delivery attempts by outcome: delivered, retrying (failed, rescheduled), dead (gave up)"
    );
    describe_counter!(
        "sluice_clicks_flagged_total",
        "Flushed clicks flagged as bot or preview"
    );
    describe_histogram!(
        "sluice_flush_batch_rows",
        "Rows per ClickHouse insert batch"
    );
    describe_histogram!(
        "sluice_flush_duration_seconds",
        Unit::Seconds,
        "Time per ClickHouse insert attempt"
    );
    describe_counter!(
        "sluice_flush_batches_total",
        "ClickHouse insert attempts, by result"
    );
    describe_gauge!(
        "sluice_flush_batches_pending",
        "Sealed batches waiting to be inserted"
    );
    describe_counter!(
        "sluice_clickhouse_errors_total",
        "Failed ClickHouse requests"
    );
    describe_counter!("sluice_redis_errors_total", "Failed Redis requests");
    describe_gauge!(
        "sluice_link_table_links",
        "Links in the in-process link table"
    );
    describe_counter!(
        "sluice_link_refresh_errors_total",
        "Failed link table refreshes"
    );
    describe_counter!(
        "sluice_click_cap_share_errors_total",
        "Failed attempts to share click-cap counts with the other nodes (retried every tick)"
    );
    describe_counter!(
        "sluice_link_changes_applied_total",
        "Link changes applied to the link table from the change feed"
    );
    describe_counter!(
        "sluice_link_catalog_loads_total",
        "Whole-catalog loads: one at start, then one per change feed gap"
    );
    describe_gauge!(
        "sluice_link_catalog_version",
        "The catalog version the link table has applied"
    );
    describe_counter!(
        "sluice_clicks_spilled_total",
        "Click rows written to the disk spill"
    );
    describe_counter!(
        "sluice_clicks_replayed_total",
        "Click rows replayed from the spill"
    );
    describe_gauge!(
        "sluice_spill_bytes",
        "Bytes in the disk spill not yet replayed"
    );
    describe_counter!(
        "sluice_spill_batches_total",
        "Spill operations on batches, by op"
    );
    describe_counter!("sluice_spill_errors_total", "Failed spill reads and writes");
    describe_counter!(
        "sluice_spill_corrupt_records_total",
        "Torn or corrupt spill records skipped"
    );
    describe_histogram!(
        "sluice_wal_group_commit_rows",
        "Clicks made durable per write-ahead fsync"
    );
    describe_counter!(
        "sluice_wal_errors_total",
        "Clicks the write-ahead log failed to write"
    );
    describe_counter!(
        "sluice_clicks_recovered_total",
        "Clicks recovered from write-ahead segments"
    );
    describe_counter!(
        "sluice_fingerprints_dropped_total",
        "Fingerprints not written to Redis"
    );
    describe_counter!(
        "sluice_fingerprints_written_total",
        "Click fingerprints written to Redis (claimable by deferred matching from then on)"
    );
    describe_counter!(
        "sluice_dead_letter_rows_total",
        "Rows of batches ClickHouse refused for good (bad data), set aside under <data_dir>/dead-letter, by table"
    );
    describe_counter!(
        "sluice_panics_total",
        "Requests whose handling panicked (answered 500; the server went on), by route"
    );
    describe_counter!(
        "sluice_attribution_matches_total",
        "Installs attributed, by match type"
    );
    describe_counter!(
        "sluice_skan_postbacks_total",
        "SKAdNetwork and AdAttributionKit postbacks received, by result (stored, duplicate) and whether they count (verified)"
    );
    describe_counter!(
        "sluice_fraud_verdicts_total",
        "Installs matched to a click, by fraud verdict (not_evaluated, clean, suspicious, flagged, rejected)"
    );
}

impl Metrics {
    pub fn record_request(&self, route: Route, status: u16, elapsed: Duration) {
        self.hot.request(route, status, elapsed);
    }

    /// A request of `route` panicked.
    pub fn panic(&self, route: Route) {
        self.panics[route as usize].increment(1);
    }

    /// `n` clicks taken by the ring (`true`), or refused by a full one.
    pub fn record_clicks(&self, enqueued: bool, n: u64) {
        self.hot.clicks(enqueued, n);
    }
}

/// Folds recorded histogram samples into their buckets. Without it samples pile up in memory
/// between scrapes (the exporter's own upkeep task comes only with its HTTP listener).
pub fn upkeep() {
    if let Some(h) = HANDLE.get() {
        h.run_upkeep();
    }
}

pub fn render() -> String {
    let mut text = HANDLE.get().map(|h| h.render()).unwrap_or_default();
    if let Some(m) = METRICS.get() {
        m.hot.render(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_index_their_labels() {
        for (i, (route, _)) in ROUTES.iter().enumerate() {
            assert_eq!(*route as usize, i);
        }
    }
}
