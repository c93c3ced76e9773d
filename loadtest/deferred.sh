#!/usr/bin/env bash
# Deferred-match throughput: many concurrent first-launch checks over HTTP, each a fresh
# install (unique id) from one of 62,500 client IPs, half of which clicked an iOS link first,
# so the flip both matches and misses. Reports calls/s, matches and latency.
# Usage: loadtest/deferred.sh [CONNECTIONS] [DURATION]     (defaults: 64, 10s)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
CONNS="${1:-64}"
DURATION="${2:-10s}"
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
CODE="d$RANDOM$RANDOM"
curl -fsS -X POST "http://127.0.0.1:$PORT/v1/links" -H "Authorization: Bearer $SK" \
  -d "{\"id\":\"$CODE\",\"destination\":\"https://example.com/\",\"ios_destination\":\"https://apps.apple.com/app/id1?c={click_id}\"}" >/dev/null
# iOS clicks from every other IP of the range the load uses.
cat > "$WORK/click.lua" <<'LUA'
local n = 0
function request()
  n = n + 2
  wrk.headers["X-Forwarded-For"] = string.format("198.18.%d.%d", (n / 250) % 250, n % 250 + 1)
  wrk.headers["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)"
  return wrk.format("GET")
end
LUA
wrk -t1 -c4 -d3s -s "$WORK/click.lua" "http://127.0.0.1:$PORT/$CODE" >/dev/null
sleep 2
wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s loadtest/deferred.lua "http://127.0.0.1:$PORT/v1/attribution/deferred" | tee "$WORK/deferred.out"
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^sluice_attribution_matches_total' || true
kill -TERM $PID; wait $PID || true
echo "install rows: $(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_deferred" --data-binary 'SELECT count() FROM installs')"
# The run leaves one remembered answer per install in Redis: clear them out of the dev stack.
redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" --scan --pattern 'sluice_deferred:*' \
  | xargs -r -n 10000 redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" unlink >/dev/null
