#!/usr/bin/env bash
# One command from a fresh clone to a running Sluice: local stack up, release build, schema,
# a demo tenant and tracking link, then Sluice in the foreground (Ctrl-C drains and stops it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT="${SLUICE_DEMO_PORT:-8080}"

"$ROOT/deploy/stack.sh" up
eval "$("$ROOT/deploy/stack.sh" env)"
export SLUICE_LISTEN="127.0.0.1:$PORT"
export SLUICE_DATA_DIR="$ROOT/var/sluice"
# The demo curl below stands in for a load balancer on this machine, so its X-Forwarded-For is believed.
export SLUICE_TRUSTED_PROXIES="${SLUICE_TRUSTED_PROXIES:-127.0.0.1}"

# A real (2018) GeoLite2 City database from PyPI, so the demo's clicks get geo fields.
if [ -z "${SLUICE_GEOIP_PATH:-}" ]; then
  python3 -c "import _maxminddb_geolite2" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check maxminddb-geolite2
  SLUICE_GEOIP_PATH="$(python3 -c 'import _maxminddb_geolite2, os; print(os.path.join(os.path.dirname(_maxminddb_geolite2.__file__), "GeoLite2-City.mmdb"))')"
  export SLUICE_GEOIP_PATH
fi

echo "demo: building sluice (release)…" >&2
cargo build --release --quiet
BIN="$ROOT/target/release/sluice"
"$BIN" migrate >/dev/null

mkdir -p var/demo
if [ ! -s var/demo/tenant.json ]; then
  "$BIN" tenant create --name demo > var/demo/tenant.json
fi
SK="$(python3 -c 'import json; print(json.load(open("var/demo/tenant.json"))["secret_key"])')"

"$BIN" serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID' INT TERM
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# A tenant.json kept from a run whose Redis data is gone (the stack's var/ wiped) names a
# tenant that no longer exists: make a new one.
if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/links" -H "Authorization: Bearer $SK")" = 401 ]; then
  "$BIN" tenant create --name demo > var/demo/tenant.json
  SK="$(python3 -c 'import json; print(json.load(open("var/demo/tenant.json"))["secret_key"])')"
fi

curl -fsS -X POST "http://127.0.0.1:$PORT/v1/links" -H "Authorization: Bearer $SK" \
  -d '{"id":"demo","destination":"https://example.com/landing?cid={click_id}&partner={partner_click_id}&country={country}","campaign":"launch","source":"newsletter","medium":"email","ios_destination":"https://apps.apple.com/app/id000000000?ct={click_id}"}' \
  >/dev/null 2>&1 || true   # already there on a second run

# A few clicks, so the dashboard has something to show from the start.
for ua in "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)" "Mozilla/5.0 (Linux; Android 14; Pixel 8)" "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"; do
  curl -fsS -o /dev/null -A "$ua" "http://127.0.0.1:$PORT/demo?click_id=demo-click&sub1=readme" || true
done

cat <<MSG

Sluice is running on http://127.0.0.1:$PORT (tenant keys in var/demo/tenant.json).

  Open the dashboard: http://127.0.0.1:$PORT/dashboard
  and sign in with the demo secret key: $SK

  Follow the demo tracking link (-i shows the 302 and its Location):
    curl -i 'http://127.0.0.1:$PORT/demo?click_id=partner-123&sub1=banner' -H 'X-Forwarded-For: 81.2.69.160'

  See the stored clicks (flushed within a second):
    curl -s 'http://127.0.0.1:${SLUICE_CLICKHOUSE_URL##*:}/?database=sluice' --data-binary 'SELECT link_id, partner_click_id, sub1, country, city, browser, platform FROM clicks ORDER BY ts_ms DESC LIMIT 5 FORMAT PrettyCompact'

  Manage links:   curl -s http://127.0.0.1:$PORT/v1/links -H 'Authorization: Bearer $SK'
  Metrics:        curl -s http://127.0.0.1:$PORT/metrics | grep sluice_clicks

Ctrl-C stops Sluice (it drains buffered clicks first); deploy/stack.sh down stops ClickHouse and Redis.
MSG
wait $PID
