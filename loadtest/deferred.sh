#!/usr/bin/env bash
# Deferred-match throughput: many concurrent first-launch checks over HTTP, each a fresh
# install (unique id) from one of 62,500 client IPs, half of which clicked an iOS link first,
# so the flip both matches and misses. Rounds alternate the tenant's fraud mode between `off`
# and `reject` (every match is judged; installed seconds after its click, each is rejected as
# click injection): reports calls/s, latency and the ratio of the medians.
# Usage: loadtest/deferred.sh [CONNECTIONS] [DURATION] [ROUNDS]     (defaults: 64, 10s, 3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
CONNS="${1:-64}"
DURATION="${2:-10s}"
ROUNDS="${3:-3}"
PORT=18083
need wrk
stack_up
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=sluice_deferred SLUICE_REDIS_PREFIX=sluice_deferred \
  SLUICE_DATA_DIR="$WORK/deferred" SLUICE_TRUSTED_PROXIES=127.0.0.1 RUST_LOG=warn
./target/release/sluice serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
wait_healthy $PORT
TENANT="$(./target/release/sluice tenant create --name deferred)"
SK="$(echo "$TENANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
export SLUICE_PK="$(echo "$TENANT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["publishable_key"])')"
# One round: the tenant's fraud mode set, a fresh link clicked from every other IP of the
# range the load uses (iOS), then the deferred checks. Rounds alternate between the modes.
cat > "$WORK/click.lua" <<'LUA'
local n = 0
function request()
  n = n + 2
  wrk.headers["X-Forwarded-For"] = string.format("198.18.%d.%d", (n / 250) % 250, n % 250 + 1)
  wrk.headers["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)"
  return wrk.format("GET")
end
LUA
round() { # mode
  curl -fsS -X PATCH "http://127.0.0.1:$PORT/v1/attribution/config" -H "Authorization: Bearer $SK" \
    -d "{\"fraud_mode\":\"$1\"}" >/dev/null
  local code="d$RANDOM$RANDOM"
  curl -fsS -X POST "http://127.0.0.1:$PORT/v1/links" -H "Authorization: Bearer $SK" \
    -d "{\"id\":\"$code\",\"destination\":\"https://example.com/\",\"ios_destination\":\"https://apps.apple.com/app/id1?c={click_id}\"}" >/dev/null
  wrk -t1 -c4 -d3s -s "$WORK/click.lua" "http://127.0.0.1:$PORT/$code" >/dev/null
  sleep 2
  SLUICE_RUN="$1-$RANDOM$RANDOM" wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s loadtest/deferred.lua "http://127.0.0.1:$PORT/v1/attribution/deferred" > "$WORK/deferred-$1.out"
  local rps
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/deferred-$1.out")
  echo "$1 $rps" >> "$WORK/deferred-rounds"
  echo "fraud_mode=$1: $rps calls/s, p99 $(awk '$1 == "99%" {print $2}' "$WORK/deferred-$1.out")"
}
: > "$WORK/deferred-rounds"
for _ in $(seq "$ROUNDS"); do
  round off
  round reject
done
python3 - "$WORK/deferred-rounds" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    mode, rps = line.split()
    by.setdefault(mode, []).append(float(rps))
off, reject = statistics.median(by["off"]), statistics.median(by["reject"])
print(f"median calls/s: off {off:.0f}, reject {reject:.0f}: reject/off = {reject / off:.2f}x")
PY
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^sluice_fraud_verdicts_total' || true
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^sluice_attribution_matches_total' || true
kill -TERM $PID; wait $PID || true
echo "install rows: $(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_deferred" --data-binary 'SELECT count() FROM installs')"
# The run leaves one remembered answer per install in Redis: clear them out of the dev stack.
clear_redis_prefix sluice_deferred
