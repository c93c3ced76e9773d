#!/usr/bin/env bash
# The redirect scenarios of loadtest/compare.sh with the load tools users reach for: oha and k6
# each at saturation with 64 and 256 connections, then at a fixed RATE (latency-corrected),
# against Sluice with the whole pipeline running. Prints one table, then checks that every 302
# answered is a click row in ClickHouse.
# Usage: loadtest/redirect.sh [DURATION] [RATE]     (defaults: 10s, 20000 clicks/s)
# The same commands by hand, against any link:
#   oha -z 10s -c 64 --redirect 0 -H 'User-Agent: …' http://127.0.0.1:8080/CODE
#   oha -z 10s -c 64 -q 20000 --latency-correction --redirect 0 http://127.0.0.1:8080/CODE
#   URL=http://127.0.0.1:8080/CODE VUS=64 DURATION=10s k6 run loadtest/redirect.js
#   URL=http://127.0.0.1:8080/CODE VUS=64 RATE=20000 DURATION=10s k6 run loadtest/redirect.js
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
DURATION="${1:-10s}"
RATE="${2:-20000}"
PORT=18085
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'
need oha k6
stack_up
DB=sluice_redirect_load
drop_database $DB
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=$DB SLUICE_REDIS_PREFIX=$DB \
  SLUICE_DATA_DIR="$WORK/redirect" RUST_LOG=warn
./target/release/sluice serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
wait_healthy $PORT
CODE="$(new_link redirect-load "$PORT" 'https://example.com/landing?cid={click_id}&s1={sub1}')"
URL="http://127.0.0.1:$PORT/$CODE"

# Each prints "req/s p50_ms p99_ms p99.9_ms answered_302 other".
run_oha() { # CONNS [RATE]
  local rate=(); [ -n "${2:-}" ] && rate=(-q "$2" --latency-correction)
  "$OHA" -z "$DURATION" -c "$1" "${rate[@]}" --redirect 0 --no-tui --output-format json \
    -H "User-Agent: $UA" "$URL?sub1=oha" > "$WORK/redirect-oha.json"
  python3 - "$WORK/redirect-oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p, codes = r["latencyPercentiles"], r["statusCodeDistribution"]
ok = codes.get("302", 0)
print(f"{r['summary']['requestsPerSec']:.0f} {p['p50']*1000:.2f} {p['p99']*1000:.2f} {p['p99.9']*1000:.2f} {ok} {sum(codes.values()) - ok}")
PY
}
run_k6() { # VUS [RATE]
  URL="$URL" VUS="$1" RATE="${2:-0}" DURATION="$DURATION" k6 run --quiet \
    --summary-export "$WORK/redirect-k6.json" loadtest/redirect.js > "$WORK/redirect-k6.txt" 2>&1
  python3 - "$WORK/redirect-k6.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
d, c = m["http_req_duration"], m["checks"]
print(f"{m['http_reqs']['rate']:.0f} {d['p(50)']:.2f} {d['p(99)']:.2f} {d['p(99.9)']:.2f} {c['passes']} {c['fails']}")
PY
}

echo "Measured $(date -u +%Y-%m-%d) with \`loadtest/redirect.sh $DURATION $RATE\` ($(nproc) cores; the load tool, ClickHouse and Redis on the same machine)."
echo
echo "| tool | scenario | req/s | p50 ms | p99 ms | p99.9 ms | 302s | other |"
echo "|---|---|---|---|---|---|---|---|"
ANSWERED=0
for tool in oha k6; do
  for scenario in "64" "256" "64 $RATE"; do
    read -r rps p50 p99 p999 ok other < <("run_$tool" $scenario)
    ANSWERED=$((ANSWERED + ok))
    set -- $scenario
    label="$1 connections, saturated"; [ -n "${2:-}" ] && label="$2 req/s fixed, ≤ $1 connections"
    echo "| $tool | $label | $rps | $p50 | $p99 | $p999 | $ok | $other |"
  done
done

# SIGTERM drains the ring into ClickHouse: every 302 the tools saw must be a row. A request
# still in flight when a run's time is up may have been answered and stored without the tool
# counting it: at most one per connection per run.
kill -TERM $PID; wait $PID || true
STORED="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$DB" --data-binary "SELECT count() FROM clicks")"
echo
echo "- 302s counted by the tools: $ANSWERED; click rows stored: $STORED"
if [ "$STORED" -lt "$ANSWERED" ] || [ "$STORED" -gt $((ANSWERED + 2 * (64 + 256 + 64))) ]; then
  echo "redirect.sh: click rows stored do not match the redirects answered" >&2
  exit 1
fi
