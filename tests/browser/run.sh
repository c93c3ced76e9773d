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
source "$ROOT/tests/support/sluice.sh"
[ -f var/test/geo.mmdb ] || python3 tests/support/make_geo_db.py var/test/geo.mmdb
start_sluice browser SLUICE_TRUSTED_PROXIES=127.0.0.1 SLUICE_GEOIP_PATH="$ROOT/var/test/geo.mmdb"
export SLUICE_URL="$BASE" SLUICE_SK="$(tenant_field secret_key)" SLUICE_PK="$(tenant_field publishable_key)"
# Seed: two campaigns' links with clicks from several IPs, one install.
for c in spring fall; do
  curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
    -d "{\"id\":\"$RUN-$c\",\"destination\":\"https://shop.example/$c\",\"campaign\":\"$c\",\"source\":\"fb\",\"medium\":\"cpc\"}" >/dev/null
done
export SLUICE_DEFERRED_LINK="$RUN-app"
curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SLUICE_SK" \
  -d "{\"id\":\"$SLUICE_DEFERRED_LINK\",\"destination\":\"https://shop.example/open?c={click_id}\",\"ios_destination\":\"https://apps.example/open?c={click_id}\",\"campaign\":\"app\"}" >/dev/null
for i in $(seq 1 12); do
  curl -fsS -o /dev/null -H "X-Forwarded-For: 198.51.100.$i" -H "User-Agent: Mozilla/5.0 (Linux; Android 14)" "$BASE/$RUN-spring"
  [ $((i % 3)) -eq 0 ] && curl -fsS -o /dev/null -H "X-Forwarded-For: 198.51.100.$i" "$BASE/$RUN-fall"
done
# Two from addresses the test geo database places (GB, SE), for the breakdowns' world table.
for ip in 81.2.69.160 89.160.20.128; do
  curl -fsS -o /dev/null -H "X-Forwarded-For: $ip" -H "User-Agent: Mozilla/5.0 (Linux; Android 14)" "$BASE/$RUN-spring"
done
curl -fsS -X POST "$BASE/v1/attribution/install" -H "Authorization: Bearer $SLUICE_PK" \
  -d '{"install_id":"seed-install","platform":"android","campaign":"spring","source":"fb"}' >/dev/null
# The dashboard shows the seed once it is stored: 16 clicks and the install in the stats.
for _ in $(seq 1 200); do
  curl -fsS "$BASE/v1/attribution/stats" -H "Authorization: Bearer $SLUICE_SK" \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["clicks"] >= 16 and s["installs"] >= 1 else 1)' \
    && break
  sleep 0.1
done
export SCREENSHOTS="$ROOT/var/test/screenshots"
(cd tests/browser && npm test)
