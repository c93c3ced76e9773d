#!/usr/bin/env bash
# Prometheus for real: Sluice under load is scraped by Debian's Prometheus (every second), the
# exposition passes `promtool check metrics`, and Prometheus's own API sees the target up and
# the redirect counters moving.
# Usage: tests/prometheus/run.sh   (deploy/test.sh runs it; the stack must be up)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null
fi
source "$ROOT/tests/support/sluice.sh"
start_sluice prometheus
PROM_PORT=$(free_port)
SK="$(tenant_field secret_key)"
curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SK" -d "{\"id\":\"$RUN\",\"destination\":\"https://example.com/\"}" >/dev/null

cat > "$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YML
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

# Load: redirects (and a few API calls and 404s) for 14 s from 4 parallel clients.
load() { local end=$((SECONDS + 14)); while [ $SECONDS -lt $end ]; do
  curl -s -o /dev/null "$BASE/$RUN" || true
  curl -s -o /dev/null "$BASE/no-such-link" || true
  curl -s -o /dev/null "$BASE/v1/links" -H "Authorization: Bearer $SK" || true
done; }
for _ in 1 2 3 4; do load & PIDS+=($!); done
sleep 3
curl -fsS "$BASE/metrics" > "$WORK/metrics.txt"
echo "== promtool check metrics (under load)"
promtool check metrics < "$WORK/metrics.txt"
echo "== every metric the Grafana dashboard charts is exported"
python3 - "$ROOT/deploy/grafana/sluice.json" "$WORK/metrics.txt" <<'PY'
import json, re, sys
exprs = " ".join(t["expr"] for p in json.load(open(sys.argv[1]))["panels"] for t in p["targets"])
wanted = {re.sub(r"_bucket$", "", m) for m in re.findall(r"sluice_[a-z_]+", exprs)}
exported = set(re.findall(r"^# TYPE (sluice_[a-z_]+)", open(sys.argv[2]).read(), re.M))
missing = sorted(wanted - exported)
assert not missing, f"charted but not exported: {missing}"
print(f"{len(wanted)} metrics charted, all exported")
PY
sleep 6

query() { curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'; }
UP=$(query 'up{job="sluice"}')
CLICKS=$(query 'max_over_time(sluice_clicks_enqueued_total[1m])')
RATE=$(query 'sum(rate(sluice_http_requests_total{route="redirect",status="3xx"}[1m]))')
P99=$(query 'histogram_quantile(0.99, sum by (le) (rate(sluice_http_request_duration_seconds_bucket{route="redirect"}[1m])))')
echo "prometheus: up=$UP clicks_enqueued=$CLICKS redirect_rate=$RATE/s redirect_p99=${P99}s"
python3 - "$UP" "$CLICKS" "$RATE" "$P99" <<'PY'
import sys
up, clicks, rate, p99 = sys.argv[1:]
assert up == "1", f"target not up: {up}"
assert clicks != "none" and float(clicks) > 0, f"no clicks counted: {clicks}"
assert rate != "none" and float(rate) > 0, f"no redirect rate: {rate}"
assert p99 != "none" and p99 != "NaN" and float(p99) > 0, f"no redirect latency: {p99}"
print("prometheus scrape test passed")
PY
