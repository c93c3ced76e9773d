#!/usr/bin/env bash
# Side-by-side redirect benchmark: nginx `return 302` vs Sluice's redirect with the whole
# pipeline running (ring → flusher → ClickHouse on this machine), same wrk, interleaved rounds.
#
# Usage: loadtest/compare.sh [ROUNDS] [DURATION]      (defaults: 3 rounds, 10s per run)
# Prints a markdown table (req/s, p50/p99 per run) and the median Sluice/nginx ratio per
# connection count. Installs wrk and nginx-light with apt when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
DURATION="${2:-10s}"
CONNS=(64 256)
SLUICE_PORT=18080
NGINX_PORT=18081
WORK="$ROOT/var/loadtest"
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'

for tool in wrk nginx; do
  if ! command -v "$tool" >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q wrk nginx-light >/dev/null
  fi
done

"$ROOT/deploy/stack.sh" up
eval "$("$ROOT/deploy/stack.sh" env)"
cargo build --release --quiet
mkdir -p "$WORK"

# nginx: the constant-302 baseline, one worker per core like Sluice's runtime.
cat > "$WORK/nginx.conf" <<NGINX
daemon off;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  fastcgi_temp_path $WORK/nginx-fastcgi;
  uwsgi_temp_path $WORK/nginx-uwsgi;
  scgi_temp_path $WORK/nginx-scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT reuseport;
    location / { return 302 https://example.com/landing?cid=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX_PID=$!

export SLUICE_LISTEN="127.0.0.1:$SLUICE_PORT"
export SLUICE_CLICKHOUSE_DATABASE=sluice_loadtest
export SLUICE_REDIS_PREFIX=sluice_loadtest
export SLUICE_DATA_DIR="$WORK/sluice"
export RUST_LOG=warn
./target/release/sluice serve &
SLUICE_PID=$!
cleanup() { kill -TERM "$SLUICE_PID" 2>/dev/null || true; kill "$NGINX_PID" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$SLUICE_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
SK="$(./target/release/sluice tenant create --name loadtest | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
CODE="lt$RANDOM$RANDOM"
curl -fsS -X POST "http://127.0.0.1:$SLUICE_PORT/v1/links" -H "Authorization: Bearer $SK" \
  -d "{\"id\":\"$CODE\",\"destination\":\"https://example.com/landing?cid={click_id}&s1={sub1}\",\"campaign\":\"load\"}" >/dev/null
sleep 0.5
BEFORE="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_loadtest" --data-binary "SELECT count() FROM clicks")"

# Runs wrk; prints "req/s p50_ms p99_ms".
run_wrk() {
  local url="$1" conns="$2"
  wrk -t2 -c"$conns" -d"$DURATION" --latency -H "User-Agent: $UA" "$url" > "$WORK/wrk.out"
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
total = int(re.search(r"(\d+) requests in", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f} {total - (int(bad.group(1)) if bad else 0)}")
PY
}

echo "| round | conns | nginx req/s | sluice req/s | ratio | nginx p50/p99 ms | sluice p50/p99 ms |"
echo "|---|---|---|---|---|---|---|"
declare -A RATIOS
ANSWERED=0
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONNS[@]}"; do
    read -r n_rps n_p50 n_p99 _ < <(run_wrk "http://127.0.0.1:$NGINX_PORT/$CODE?sub1=x" "$c")
    read -r s_rps s_p50 s_p99 s_ok < <(run_wrk "http://127.0.0.1:$SLUICE_PORT/$CODE?sub1=x" "$c")
    ANSWERED=$((ANSWERED + s_ok))
    ratio="$(python3 -c "print(f'{$s_rps/$n_rps:.2f}')")"
    RATIOS[$c]="${RATIOS[$c]:-} $ratio"
    echo "| $round | $c | $n_rps | $s_rps | $ratio | $n_p50 / $n_p99 | $s_p50 / $s_p99 |"
  done
done
for c in "${CONNS[@]}"; do
  python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[2:]]; print(f'median ratio at {sys.argv[1]} connections: {statistics.median(r):.2f}')" "$c" ${RATIOS[$c]}
done

# Every redirect answered during the runs must be in ClickHouse (SIGTERM drains the ring).
DROPPED="$(curl -fsS "http://127.0.0.1:$SLUICE_PORT/metrics" | awk '/^sluice_clicks_dropped_total/ {s+=$2} END {print s+0}')"
kill -TERM "$SLUICE_PID"; wait "$SLUICE_PID" || true
AFTER="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_loadtest" --data-binary "SELECT count() FROM clicks")"
echo "redirects answered by sluice: $ANSWERED; click rows stored: $((AFTER - BEFORE)); dropped (ring full): $DROPPED"
