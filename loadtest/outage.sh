#!/usr/bin/env bash
# ClickHouse outage under steady load: redirect latency healthy vs. during the outage, how
# long an outage was ridden out at what click rate, the replay rate after recovery, and an
# exact count at the end. Uses oha at a fixed rate (`cargo install oha --locked`).
#
# Usage: loadtest/outage.sh [RATE] [OUTAGE_SECONDS]      (defaults: 20000 clicks/s, 30 s)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
RATE="${1:-20000}"
OUTAGE="${2:-30}"
PORT=18082
need oha
stack_up
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE=sluice_outage SLUICE_REDIS_PREFIX=sluice_outage \
  SLUICE_DATA_DIR="$WORK/outage" RUST_LOG=warn
./target/release/sluice serve &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; "$ROOT/deploy/stack.sh" up >/dev/null' EXIT
wait_healthy $PORT
CODE="$(new_link outage "$PORT" 'https://example.com/?c={click_id}')"
URL="http://127.0.0.1:$PORT/$CODE"
ch() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_outage" --data-binary "$1"; }
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
BEFORE="$(ch "SELECT count() FROM clicks")"

# oha at a fixed rate; prints "requests p50_ms p99_ms p99.9_ms non_302".
load() {
  "$OHA" --no-tui --output-format json -z "$1" -q "$RATE" -c 64 --redirect 0 "$URL" > "$WORK/oha.json"
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
total = sum(codes.values())
print(total, f'{p["p50"]*1000:.3f}', f'{p["p99"]*1000:.3f}', f'{p["p99.9"]*1000:.3f}', total - codes.get("302", 0))
PY
}

read -r h_n h_p50 h_p99 h_p999 h_bad < <(load 15s)
CH_PID="$(cat "$ROOT/var/clickhouse/pid")"
kill -9 "$CH_PID"
KILLED=$(date +%s.%N)
read -r o_n o_p50 o_p99 o_p999 o_bad < <(load "${OUTAGE}s")
SPILLED="$(metric sluice_clicks_spilled_total)"
SPILL_BYTES="$(metric sluice_spill_bytes)"
"$ROOT/deploy/stack.sh" up >/dev/null
UP=$(date +%s.%N)
# Replay: from ClickHouse answering until the spill is empty, under continued load.
(load 20s > "$WORK/after.txt") &
LOADER=$!
REPLAYED_BEFORE="$(metric sluice_clicks_replayed_total)"
while [ "$(metric sluice_spill_bytes)" != "0" ]; do sleep 0.2; done
DRAINED=$(date +%s.%N)
REPLAYED="$(python3 -c "print(int($(metric sluice_clicks_replayed_total) - ${REPLAYED_BEFORE:-0}))")"
wait $LOADER
read -r a_n a_p50 a_p99 a_p999 a_bad < "$WORK/after.txt"
ENQUEUED="$(metric sluice_clicks_enqueued_total)"
DROPPED="$(metric 'sluice_clicks_dropped_total{reason="ring_full"}')"
kill -TERM $PID; wait $PID || true
STORED=$(( $(ch "SELECT count() FROM clicks") - BEFORE ))
UNIQUE="$(ch "SELECT uniqExact(click_id) FROM clicks")"

python3 - <<PY
outage = $UP - $KILLED
replay_s = $DRAINED - $UP
print(f"| phase | requests | non-302 | p50 ms | p99 ms | p99.9 ms |")
print(f"|---|---|---|---|---|---|")
print(f"| healthy | $h_n | $h_bad | $h_p50 | $h_p99 | $h_p999 |")
print(f"| ClickHouse down ({outage:.0f} s) | $o_n | $o_bad | $o_p50 | $o_p99 | $o_p999 |")
print(f"| after recovery (replaying) | $a_n | $a_bad | $a_p50 | $a_p99 | $a_p999 |")
print()
print(f"offered rate: $RATE clicks/s; clicks spilled during the outage: {int(float('${SPILLED:-0}'))} ({int(float('${SPILL_BYTES:-0}'))/1e6:.1f} MB on disk)")
print(f"replay: {$REPLAYED} clicks in {replay_s:.1f} s = {$REPLAYED/max(replay_s,1e-9):,.0f} clicks/s while new traffic kept flowing")
print(f"enqueued $ENQUEUED, stored $STORED (unique click ids in the database: $UNIQUE), dropped ${DROPPED:-0}")
PY
