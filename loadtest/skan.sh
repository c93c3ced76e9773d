#!/usr/bin/env bash
# SKAdNetwork at scale:
#   1. figures: POSTBACKS synthetic postbacks (20 ad networks, 50 campaigns each, source
#      identifiers at two, three and four digits, all three windows, fine and coarse values)
#      are put in a 30-day window of a fresh database, and GET /v1/skan/stats?window=30d is
#      measured with oha, one request at a time (uncached: each sums skan_daily's window);
#   2. receiving: VUS k6 senders post postbacks with distinct transaction ids to the
#      developer-copy receiver for DURATION; reports postbacks/s and checks ClickHouse holds
#      exactly the 200s.
# Usage: loadtest/skan.sh [POSTBACKS] [VUS] [DURATION]     (defaults: 10000000, 64, 20s)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
POSTBACKS="${1:-10000000}"
VUS="${2:-64}"
DURATION="${3:-20s}"
PORT=18088
need oha k6
stack_up
DB=sluice_skan_load
drop_database $DB
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB \
  SLUICE_DATA_DIR="$WORK/skan" RUST_LOG=warn
./target/release/sluice migrate >/dev/null
TENANT="$(./target/release/sluice tenant create --name skan-load)"
field() { echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
TENANT_ID="$(field tenant_id)"
SK="$(field secret_key)"
./target/release/sluice serve &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true
  clear_redis_prefix "$DB"
}
trap cleanup EXIT
wait_healthy $PORT
BASE="http://127.0.0.1:$PORT"
curl -fsS -X POST "$BASE/v1/apps" -H "Authorization: Bearer $SK" \
  -d '{"app_store_id": 525463029, "name": "Load"}' >/dev/null
# Every campaign mapped, at two, three or four digits.
python3 - "$BASE" "$SK" <<'PY'
import json, sys, urllib.request
entries = [{"ad_network_id": f"net{n}.skadnetwork", "source_identifier": str(1000 + c * 7)[-(2 + c % 3):],
            "campaign": f"campaign-{n}-{c}"} for n in range(20) for c in range(50)]
entries = list({(e["ad_network_id"], e["source_identifier"]): e for e in entries}.values())
req = urllib.request.Request(sys.argv[1] + "/v1/skan/campaigns", method="PUT",
    data=json.dumps({"campaigns": entries}).encode(),
    headers={"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

echo "== seeding $POSTBACKS postbacks over 30 days"
# Shaped like a big advertiser's month: 20 networks (a few large), 50 live campaigns each, the
# first postback of an install carrying a fine value when the crowd is large enough (four
# digits of the source identifier) and a coarse one otherwise, later windows coarse only.
NOW_MS=$(( $(date +%s) * 1000 ))
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "INSERT INTO $DB.skan_postbacks \
  (date, received_ms, tenant_id, app_store_id, receiver, framework, version, ad_network_id, \
   source_identifier, transaction_id, conversion_type, fidelity_type, did_win, sequence, \
   fine_value, coarse_value, source_app_id, source_domain, signature, kid, counted, body, batch_id) \
  SELECT toDate(intDiv(ms, 1000)), ms, '$TENANT_ID', 525463029, 'skadnetwork', 'skadnetwork', '4.0', \
    concat('net', toString(toUInt32(sqrt(h % 400))), '.skadnetwork'), \
    substring(toString(1000 + intDiv(h, 400) % 50 * 7), tier), toString(generateUUIDv4()), \
    if(seq = 0 AND intDiv(h, 9) % 100 < 15, 'redownload', 'download'), 1, intDiv(h, 11) % 10 != 0, seq, \
    if(seq = 0 AND tier = 1, toInt16(sqrt(intDiv(h, 13) % 4096)), toInt16(-1)), \
    if(seq = 0 AND tier = 1, '', arrayElement(['low', 'medium', 'high'], 1 + intDiv(h, 17) % 3)), \
    '', 'example.com', 'valid', '', 1, '{}', intDiv(number, 100000) \
  FROM (SELECT number, h, $NOW_MS - intDiv(number * 29 * 86400000, $POSTBACKS) AS ms, \
          multiIf(intDiv(h, 20000) % 100 < 60, 0, intDiv(h, 20000) % 100 < 85, 1, 2) AS seq, \
          multiIf(intDiv(h, 7) % 10 < 5, 1, intDiv(h, 7) % 10 < 8, 2, 3) AS tier \
        FROM (SELECT number, cityHash64(number) AS h FROM system.numbers LIMIT $POSTBACKS))"
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "OPTIMIZE TABLE $DB.skan_postbacks FINAL" >/dev/null || true

echo "== GET /v1/skan/stats?window=30d, one request at a time"
"$OHA" -n 100 -c 1 --no-tui --output-format json -H "Authorization: Bearer $SK" \
  "$BASE/v1/skan/stats?window=30d" > "$WORK/skan-stats.json"
python3 - "$WORK/skan-stats.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
print(f"stats over the window: p50 {p['p50']*1000:.1f} ms  p99 {p['p99']*1000:.1f} ms  statuses {r.get('statusCodeDistribution')}")
PY
curl -fsS -H "Authorization: Bearer $SK" "$BASE/v1/skan/stats?window=30d" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
installs = sum(r["installs"] for r in rows)
mapped = sum(1 for r in rows if r["campaign"])
print(f"answer: {len(rows)} rows ({mapped} mapped campaigns), {installs} installs")'
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "SELECT 'skan_daily rows', count() FROM $DB.skan_daily"

echo "== receiving: $VUS senders for $DURATION"
BEFORE=$(curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "SELECT count() FROM $DB.skan_postbacks")
START=$(date +%s.%N)
SLUICE_URL="$BASE" VUS="$VUS" DURATION="$DURATION" RUN="$RANDOM" k6 run --quiet \
  --summary-export "$WORK/skan-summary.json" loadtest/skan.js | tail -n 5
END=$(date +%s.%N)
sleep 2
AFTER=$(curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "SELECT count() FROM $DB.skan_postbacks")
python3 - "$WORK/skan-summary.json" "$START" "$END" "$BEFORE" "$AFTER" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
ok = s["metrics"]["checks"]["passes"]
failed = s["metrics"]["checks"]["fails"]
d = s["metrics"]["http_req_duration"]
secs = float(sys.argv[3]) - float(sys.argv[2])
stored = int(sys.argv[5]) - int(sys.argv[4])
print(f"postbacks answered 200: {ok} ({ok / secs:.0f}/s), not 200: {failed}; "
      f"p50 {d['p(50)']:.1f} ms  p99 {d['p(99)']:.1f} ms; rows stored {stored}")
assert stored == ok, f"stored {stored} rows for {ok} answers"
PY
