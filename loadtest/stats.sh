#!/usr/bin/env bash
# Stats at scale: seeds CLICKS synthetic clicks (with proportional installs and conversions)
# into a fresh database, then
#   1. uncached: each stats endpoint and each breakdown (30-day window) measured alone with
#      oha, one request at a time, against a node whose cache is off (every request runs its
#      ClickHouse queries);
#   2. polling: VUS k6 dashboards poll all five endpoints every second against a node with the
#      default 1 s cache while oha sends redirect traffic, and the ClickHouse queries the stats
#      cost are counted from /metrics.
# Usage: loadtest/stats.sh [CLICKS] [VUS] [DURATION]     (defaults: 10000000, 200, 30s)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
CLICKS="${1:-10000000}"
VUS="${2:-200}"
DURATION="${3:-30s}"
need oha k6
stack_up
DB=sluice_stats_load
drop_database $DB
export SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB SLUICE_DATA_DIR="$WORK/stats" RUST_LOG=warn
./target/release/sluice migrate >/dev/null
TENANT="$(./target/release/sluice tenant create --name stats-load)"
field() { echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
TENANT_ID="$(field tenant_id)"
export SLUICE_SK="$(field secret_key)" SLUICE_LINK="$TENANT_ID-0"
bash loadtest/seed.sh "$DB" "$TENANT_ID" "$CLICKS"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start() { # port, cache ms (each node its own data directory)
  SLUICE_LISTEN="127.0.0.1:$1" SLUICE_DATA_DIR="$WORK/stats-$1" SLUICE_STATS_CACHE_MS="$2" SLUICE_RETENTION_INTERVAL_MS=0 ./target/release/sluice serve &
  PIDS+=($!)
  wait_healthy "$1"
}
start 18086 0
start 18087 1000
# The seeded link must exist for its stats endpoint (the seed wrote facts, not links).
curl -fsS -X POST "http://127.0.0.1:18086/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
  -d "{\"id\":\"$SLUICE_LINK\",\"destination\":\"https://example.com/?c={click_id}\",\"campaign\":\"campaign-0\"}" >/dev/null

echo "== uncached, one request at a time per endpoint (30d window over $CLICKS clicks)"
ENDPOINTS=("totals /v1/attribution/stats?window=30d" "by-campaign /v1/attribution/stats/by-campaign?window=30d"
  "by-source /v1/attribution/stats/by-source?window=30d" "timeseries /v1/attribution/stats/timeseries?window=30d"
  "link /v1/links/$SLUICE_LINK/stats?window=30d")
for d in country region city platform os browser device referrer_host variant link sub1; do
  ENDPOINTS+=("breakdown-$d /v1/attribution/stats/breakdown?by=$d&window=30d")
done
ENDPOINTS+=("breakdown-sub1-of-a-link /v1/attribution/stats/breakdown?by=sub1&window=30d&link=$SLUICE_LINK")
for e in "${ENDPOINTS[@]}"; do
  set -- $e
  "$OHA" -n 300 -c 1 --no-tui --output-format json -H "Authorization: Bearer $SLUICE_SK" "http://127.0.0.1:18086$2" > "$WORK/stats-$1.json"
  python3 - "$1" "$WORK/stats-$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"{sys.argv[1]:26} p50 {p['p50']*1000:7.1f} ms  p99 {p['p99']*1000:7.1f} ms  statuses {codes}")
PY
done

echo "== $VUS dashboards polling every second for $DURATION (1 s cache), redirects at 10k/s beside them"
LINK=$(curl -fsS -X POST "http://127.0.0.1:18087/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
  -d '{"destination":"https://example.com/"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$OHA" -z "$DURATION" -c 32 -q 10000 --no-tui --redirect 0 "http://127.0.0.1:18087/$LINK" > "$WORK/stats-redirects.txt" &
REDIRECTS=$!
before=$(curl -fsS http://127.0.0.1:18087/metrics | awk '/^sluice_stats_clickhouse_queries_total /{print $2}')
start_s=$(date +%s.%N)
SLUICE_URL=http://127.0.0.1:18087 VUS="$VUS" DURATION="$DURATION" k6 run --quiet --summary-export "$WORK/stats-summary.json" loadtest/stats.js > "$WORK/stats-k6.txt"
end_s=$(date +%s.%N)
after=$(curl -fsS http://127.0.0.1:18087/metrics | awk '/^sluice_stats_clickhouse_queries_total /{print $2}')
wait $REDIRECTS || true
grep -E "Success rate|Requests/sec|99.00%" "$WORK/stats-redirects.txt" | sed 's/^/redirects: /' || true
python3 - "$WORK/stats-summary.json" "${before:-0}" "${after:-0}" "$start_s" "$end_s" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["metrics"]
before, after, t0, t1 = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
reqs = m["http_reqs"]["count"]
print(f"stats requests: {reqs} ({m['http_reqs']['rate']:.0f}/s), failed: {m['checks']['fails']}")
for name in ["totals", "by-campaign", "by-source", "timeseries", "link"]:
    d = m.get(f"http_req_duration{{name:{name}}}")
    if d:
        print(f"  {name:12} p50 {d['p(50)']:6.1f} ms  p99 {d['p(99)']:6.1f} ms")
q = after - before
secs = t1 - t0
print(f"ClickHouse queries for stats: {q:.0f} in {secs:.1f} s = {q / secs:.1f}/s "
      f"(bound: 5 endpoints x 5 queries per 1 s interval = 25/s); requests per query: {reqs / max(q, 1):.0f}")
PY
