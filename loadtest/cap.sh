#!/usr/bin/env bash
# Click caps under load: NODES Sluice nodes (one local stack) share one link with
# `click_cap.total = CAP`; wrk drives every node at once, from many visitor addresses, past the
# cap. Then: the human clicks stored against the cap (the overshoot), and that overshoot in
# time — how long the deployment took to send that many clicks while the link was open. The
# promise (README, ARCHITECTURE "Routing"): at most about one sharing tick (250 ms) of the other
# nodes' traffic.
# Usage: loadtest/cap.sh [CAP] [NODES] [DURATION]     (defaults: 200000, 2, 15s)
# Prints, and writes into loadtest/RESULTS.md between its cap markers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
CAP="${1:-200000}"
NODES="${2:-2}"
DURATION="${3:-15s}"
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'
need wrk
stack_up
drop_database sluice_cap
export SLUICE_CLICKHOUSE_DATABASE=sluice_cap SLUICE_REDIS_PREFIX="sluice_cap_$RANDOM" \
  SLUICE_TRUSTED_PROXIES=127.0.0.1 RUST_LOG=warn
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
./target/release/sluice migrate >/dev/null
for n in $(seq 1 "$NODES"); do
  SLUICE_LISTEN="127.0.0.1:$((18090 + n))" SLUICE_DATA_DIR="$WORK/cap-$n" ./target/release/sluice serve &
  PIDS+=($!)
  wait_healthy $((18090 + n))
done
SK="$(./target/release/sluice tenant create --name cap | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
CODE="capped$RANDOM$RANDOM"
curl -fsS -X POST "http://127.0.0.1:18091/v1/links" -H "Authorization: Bearer $SK" \
  -d "{\"id\":\"$CODE\",\"destination\":\"https://example.com/?c={click_id}\",\"click_cap\":{\"total\":$CAP}}" >/dev/null
sleep 1 # on every node
cat > "$WORK/cap-visitors.lua" <<LUA
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local n = math.random(1000000) - 1
  local ip = string.format("%d.%d.%d.%d", 24 + n % 150, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = ip, ["User-Agent"] = "$UA"})
end
LUA
LOADS=()
for n in $(seq 1 "$NODES"); do
  wrk -t1 -c64 -d"$DURATION" -s "$WORK/cap-visitors.lua" "http://127.0.0.1:$((18090 + n))/$CODE" > "$WORK/cap-wrk-$n.out" &
  LOADS+=($!)
done
wait "${LOADS[@]}"
sleep 3 # the last batches
ch() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_cap" --data-binary "$1"; }
read -r stored first last < <(ch "SELECT count(), min(ts_ms), max(ts_ms) FROM clicks WHERE link_id = '$CODE' AND is_bot = 0 AND is_preview = 0 FORMAT TSV")
answered=0; gone=0
for n in $(seq 1 "$NODES"); do
  total=$(grep -oP '\d+(?= requests in)' "$WORK/cap-wrk-$n.out")
  bad=$(grep -oP 'Non-2xx or 3xx responses: \K\d+' "$WORK/cap-wrk-$n.out" || echo 0)
  answered=$((answered + total - bad)); gone=$((gone + bad))
done
OUT="$WORK/cap.md"
python3 - "$CAP" "$NODES" "$stored" "$first" "$last" "$answered" "$gone" "$DURATION" > "$OUT" <<'PY'
import sys
cap, nodes, stored, first, last, answered, gone, duration = sys.argv[1:]
cap, nodes, stored, answered, gone = int(cap), int(nodes), int(stored), int(answered), int(gone)
seconds = (int(last) - int(first)) / 1000
rate = stored / seconds if seconds else 0
over = stored - cap
print(f"Measured with `loadtest/cap.sh {cap} {nodes} {duration}` (one local stack, {nodes} nodes, wrk at 64 connections each from 1M addresses).")
print()
print(f"- cap {cap:,}: {stored:,} human clicks stored (overshoot {over:,}, {over / cap:.3%}); {answered:,} redirects answered 302, {gone:,} answered 410 afterwards")
print(f"- the link was open {seconds:.1f} s at {rate:,.0f} clicks/s across the nodes: the overshoot is {over / rate * 1000 if rate else 0:.0f} ms of the deployment's traffic")
PY
cat "$OUT"
results_block cap "Click caps across nodes — \`loadtest/cap.sh\`" "$OUT"
