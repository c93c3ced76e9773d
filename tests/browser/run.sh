#!/usr/bin/env bash
# Browser tests: the dashboard and the JavaScript SDK in Debian's Chromium (playwright-core)
# against a real Sluice on the local stack, seeded here. Screenshots: var/test/screenshots.
# Usage: tests/browser/run.sh   (deploy/test.sh runs it; the stack must be up)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if ! command -v chromium >/dev/null; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
(cd sdk/js && npm ci --no-audit --no-fund --silent && npm run build --silent)
(cd tests/browser && npm ci --no-audit --no-fund --silent)
eval "$("$ROOT/deploy/stack.sh" env)"
cargo build --quiet
RUN="browser_$(date +%s)_$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK="$ROOT/var/test/browser"
rm -rf "$WORK"; mkdir -p "$WORK"
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE="$RUN" SLUICE_REDIS_PREFIX="$RUN" \
  SLUICE_DATA_DIR="$WORK/data" SLUICE_FLUSH_PERIOD_MS=200 SLUICE_TRUSTED_PROXIES=127.0.0.1 RUST_LOG=warn
./target/debug/sluice serve > "$WORK/sluice.log" 2>&1 &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true
  wait $PID 2>/dev/null || true
  curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $RUN" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
BASE="http://127.0.0.1:$PORT"
TENANT="$(./target/debug/sluice tenant create --name browser)"
field() { echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
export SLUICE_URL="$BASE" SLUICE_SK="$(field secret_key)" SLUICE_PK="$(field publishable_key)"
# Seed: two campaigns' links with clicks from several IPs, one install.
for c in spring fall; do
  curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
    -d "{\"id\":\"$RUN-$c\",\"destination\":\"https://shop.example/$c\",\"campaign\":\"$c\",\"source\":\"fb\",\"medium\":\"cpc\"}" >/dev/null
done
export SLUICE_DEFERRED_LINK="$RUN-app"
curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
  -d "{\"id\":\"$SLUICE_DEFERRED_LINK\",\"destination\":\"https://shop.example/open?c={click_id}\",\"ios_destination\":\"https://apps.example/open?c={click_id}\",\"campaign\":\"app\"}" >/dev/null
sleep 0.5
for i in $(seq 1 12); do
  curl -fsS -o /dev/null -H "X-Forwarded-For: 198.51.100.$i" -H "User-Agent: Mozilla/5.0 (Linux; Android 14)" "$BASE/$RUN-spring"
  [ $((i % 3)) -eq 0 ] && curl -fsS -o /dev/null -H "X-Forwarded-For: 198.51.100.$i" "$BASE/$RUN-fall"
done
curl -fsS -X POST "$BASE/v1/attribution/install" -H "Authorization: Bearer $SLUICE_PK" \
  -d '{"install_id":"seed-install","platform":"android","campaign":"spring","source":"fb"}' >/dev/null
sleep 1.5
export SCREENSHOTS="$ROOT/var/test/screenshots"
(cd tests/browser && npm test)
