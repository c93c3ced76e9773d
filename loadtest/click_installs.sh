#!/usr/bin/env bash
# Click-id installs at an ad network's scale: CLICKS clicks (default 100,000,000) of one tenant
# in today's date written straight into ClickHouse (the materialized view fills click_facts as
# the pipeline's inserts do), then k6 sends RATE installs/s (default 2,000) for DURATION, each
# naming a different stored click; reports latency percentiles and how many were attributed.
# Usage: loadtest/click_installs.sh [CLICKS] [RATE] [DURATION]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
N="${1:-100000000}"
RATE="${2:-2000}"
DURATION="${3:-30s}"
PORT=18085
need k6
stack_up
DB=sluice_installs_load
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB \
  SLUICE_DATA_DIR="$WORK/installs" SLUICE_RATE_LIMIT_TENANT=100000 SLUICE_RATE_LIMIT_KEY=100000 RUST_LOG=warn
q() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$DB" --data-binary "$1"; }
STATE="$WORK/installs-tenant.json"
field() { python3 -c "import json,sys; print(json.load(open('$STATE'))['$1'])"; }
# The clicks stay between runs (inserting 100M takes minutes): a run reuses them, and the
# clicks earlier runs attributed are skipped. FRESH=1 starts over.
if [ -n "${FRESH:-}" ] || [ ! -f "$STATE" ] || [ "$(q "SELECT count() FROM click_facts WHERE tenant_id = '$(field tenant_id)'" 2>/dev/null || echo 0)" != "$N" ]; then
  drop_database $DB
  clear_redis_prefix "$DB"
  ./target/release/sluice migrate >/dev/null
  ./target/release/sluice tenant create --name installs-load > "$STATE"
  echo 0 > "$WORK/installs-used"
  T="$(field tenant_id)"
  DAY="$(date -u +%F)"
  DAY_MS="$(( $(date -u -d "$DAY" +%s) * 1000 ))"
  ELAPSED_MS="$(( $(date -u +%s) * 1000 - DAY_MS - 60000 ))"
  echo "inserting $N clicks of $T on $DAY…"
  started=$(date +%s)
  # Ids as the redirect makes them (UUIDv7, see click_lookup.sh), spread over the day so far.
  for part in $(seq 0 9); do
    q "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview)
       SELECT toDate('$DAY'), $DAY_MS + intDiv(number * $ELAPSED_MS, $N) AS ts,
         unhex(concat(substring(hex(ts + 281474976710656), 3, 12), '7', substring(hex(sipHash128(toString(number))), 1, 19))),
         '$T', concat('link', toString(number % 1000)), 'c', 's', 'm', cityHash64(number), 0, 0
       FROM numbers($(( part * N / 10 )), $(( N / 10 )))" >/dev/null
  done
  echo "inserted in $(( $(date +%s) - started )) s; click_facts: $(q 'SELECT count() FROM click_facts') rows"
fi
T="$(field tenant_id)"
USED="$(cat "$WORK/installs-used")"
q "SELECT lower(hex(click_id)) FROM click_facts WHERE tenant_id = '$T' ORDER BY cityHash64(click_id) LIMIT 200000 OFFSET $USED" \
  | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/' > "$WORK/click_ids.txt"
./target/release/sluice serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
wait_healthy $PORT
SLUICE_URL="http://127.0.0.1:$PORT" SLUICE_SK="$(field secret_key)" CLICK_IDS="$WORK/click_ids.txt" RUN="$RANDOM" \
  RATE="$RATE" DURATION="$DURATION" k6 run --quiet --summary-export "$WORK/installs-summary.json" loadtest/click_installs.js >/dev/null
python3 - "$WORK/installs-summary.json" "$WORK/installs-used" "$USED" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
open(sys.argv[2], "w").write(str(int(sys.argv[3]) + m["iterations"]["count"]))
d, checks, it = m["http_req_duration"], m["checks"], m["iterations"]
print(f"{it['count']} installs at {it['rate']:,.0f}/s: {checks['passes']} attributed by click id, {checks['fails']} not")
print(f"latency ms: p50 {d['p(50)']:.1f}  p95 {d['p(95)']:.1f}  p99 {d['p(99)']:.1f}  max {d['max']:.1f}")
PY
