#!/usr/bin/env bash
# Event ingestion end to end: k6 posts 1,000-event batches to POST /v1/events for DURATION
# with VUS concurrent senders; every 204 means the events are durable. Reports events/s
# accepted and checks ClickHouse holds exactly that many rows.
# Usage: loadtest/events.sh [VUS] [DURATION]     (defaults: 128, 20s)
# A long-lived tenant also has last generation's ids to check every new id against
# (redis/idempotency.lua): PREVIOUS_IDS (default 5,000,000) random ids are put there first;
# PREVIOUS_IDS=0 measures a fresh tenant.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
VUS="${1:-128}"
DURATION="${2:-20s}"
PORT=18084
need k6
stack_up
DB=sluice_events_load
drop_database $DB
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB \
  SLUICE_DATA_DIR="$WORK/events" RUST_LOG=warn
./target/release/sluice serve &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true
  # The run leaves its idempotency sets and install records in Redis: clear them out.
  clear_redis_prefix "$DB"
}
trap cleanup EXIT
wait_healthy $PORT
TENANT="$(./target/release/sluice tenant create --name events-load)"
field() { echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
export SLUICE_URL="http://127.0.0.1:$PORT" SLUICE_TENANT="$(field tenant_id)" SLUICE_SK="$(field secret_key)"
# The 100 installs the events belong to (organic: the lookup is what costs).
for i in $(seq 0 99); do
  curl -fsS -X POST "$SLUICE_URL/v1/attribution/install" -H "Authorization: Bearer $SLUICE_SK" \
    -d "{\"install_id\":\"inst-$i\",\"platform\":\"android\"}" >/dev/null
done
PREVIOUS_IDS="${PREVIOUS_IDS:-5000000}"
if [ "$PREVIOUS_IDS" -gt 0 ]; then
  python3 - "$DB:{t:$SLUICE_TENANT}:idem:event" "$PREVIOUS_IDS" <<'PY' \
    | redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" --pipe >/dev/null
import os, sys, time
prefix, n = sys.argv[1].encode(), int(sys.argv[2])
lifetime = 30 * 86_400_000  # IDEMPOTENCY_TTL_MS
key = prefix + b":g%d" % (int(time.time() * 1000) // lifetime - 1)
out = sys.stdout.buffer
for start in range(0, n, 1000):
    ids = [os.urandom(16) for _ in range(min(1000, n - start))]
    parts = [b"*%d\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n" % (len(ids) + 2, len(key), key)]
    parts += [b"$16\r\n" + i + b"\r\n" for i in ids]
    out.write(b"".join(parts))
PY
  echo "previous generation: $PREVIOUS_IDS ids"
fi
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
