#!/usr/bin/env bash
# Routing on the hot path: a link with 10 rules (none matching, so every one is evaluated:
# country and region from a real GeoLite2 City database, device, OS and browser from the user
# agent, language, IP networks, query parameters) and a 3-way split (50/30/20) at the end,
# against the same destination with no rules, side by side in interleaved wrk rounds. Every
# request comes from another public address (X-Forwarded-For from a trusted proxy, drawn from
# a pool of POOL visitors), so geo lookups and split buckets see many visitors.
# Then the split's shares and stickiness over every routed click stored (at least CLICKS,
# topped up with more load): each variant's share against its weight, and the visitors (one
# user agent, so one visitor per address) that ever saw two variants.
#
# Usage: loadtest/routing.sh [ROUNDS] [DURATION]     (defaults: 3 rounds, 10s per run)
#        CLICKS=1000000 POOL=100000 loadtest/routing.sh …
# Prints, and writes into loadtest/RESULTS.md between its routing markers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
ROUNDS="${1:-3}"
DURATION="${2:-10s}"
CLICKS="${CLICKS:-1000000}"
POOL="${POOL:-100000}"
CONNS=(64 256)
PORT=18080
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'
need wrk
stack_up
python3 -c 'import _maxminddb_geolite2' 2>/dev/null || python3 -m pip install -q maxminddb-geolite2
export SLUICE_GEOIP_PATH="$(python3 -c 'import _maxminddb_geolite2, os; print(os.path.join(os.path.dirname(_maxminddb_geolite2.__file__), "GeoLite2-City.mmdb"))')"
drop_database sluice_loadtest
export SLUICE_LISTEN="127.0.0.1:$PORT"
export SLUICE_CLICKHOUSE_DATABASE=sluice_loadtest
export SLUICE_REDIS_PREFIX=sluice_loadtest
export SLUICE_DATA_DIR="$WORK/sluice"
export SLUICE_TRUSTED_PROXIES=127.0.0.1
export RUST_LOG=warn
./target/release/sluice serve &
SLUICE_PID=$!
trap 'kill -TERM "$SLUICE_PID" 2>/dev/null || true; wait "$SLUICE_PID" 2>/dev/null || true' EXIT
wait_healthy "$PORT"

SK="$(./target/release/sluice tenant create --name routing | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
DEST='https://example.com/landing?cid={click_id}&s1={sub1}'
link() {
  curl -fsS -X POST "http://127.0.0.1:$PORT/v1/links" -H "Authorization: Bearer $SK" -d "$1" >/dev/null
}
PLAIN="plain$RANDOM$RANDOM"
ROUTED="routed$RANDOM$RANDOM"
link "{\"id\":\"$PLAIN\",\"destination\":\"$DEST\"}"
link "$(python3 - "$ROUTED" "$DEST" <<'PY'
import json, sys
code, dest = sys.argv[1:]
go = lambda n: f"https://example.com/rule{n}?cid={{click_id}}"
rules = [
    {"when": {"country": ["AQ"]}, "destination": go(1)},
    {"when": {"region": ["US-AK", "CA-NU"]}, "destination": go(2)},
    {"when": {"platform": ["android"], "country": ["DE", "AT", "CH"]}, "destination": go(3)},
    {"when": {"language": ["de", "fr"]}, "destination": go(4)},
    {"when": {"ip_cidr": ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"]}, "destination": go(5)},
    {"when": {"query": {"tier": ["gold"]}}, "destination": go(6)},
    {"when": {"device": ["tablet"]}, "destination": go(7)},
    {"when": {"os": ["windows", "linux"]}, "destination": go(8)},
    {"when": {"browser": ["Firefox"]}, "destination": go(9)},
    {"when": {"query": {"utm_source": ["tiktok"]}, "weekdays": ["sat", "sun"]}, "destination": go(10)},
]
split = [
    {"id": "a", "destination": "https://example.com/a?cid={click_id}&v={variant}", "weight": 50},
    {"id": "b", "destination": "https://example.com/b?cid={click_id}&v={variant}", "weight": 30},
    {"id": "c", "destination": "https://example.com/c?cid={click_id}&v={variant}", "weight": 20},
]
print(json.dumps({"id": code, "destination": dest, "rules": rules, "split": split}))
PY
)"
sleep 0.5

# Each request from one of POOL public addresses (first octets of real allocations).
cat > "$WORK/visitors.lua" <<LUA
local firsts = {24, 50, 68, 81, 89, 91, 104, 151, 176, 185, 188, 203, 212, 217}
local pool = $POOL
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local n = math.random(pool) - 1
  local ip = string.format("%d.%d.%d.%d", firsts[n % #firsts + 1],
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = ip, ["User-Agent"] = "$UA"})
end
LUA
run_wrk() {
  wrk -t2 -c"$2" -d"$DURATION" --latency -s "$WORK/visitors.lua" "$1" > "$WORK/wrk.out"
  if grep -q "Non-2xx or 3xx" "$WORK/wrk.out"; then echo "routing.sh: answers other than 302" >&2; exit 1; fi
  wrk_summary "$WORK/wrk.out"
}
ch() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_loadtest" --data-binary "$1"; }

# Warm-up, not recorded.
for code in "$PLAIN" "$ROUTED"; do wrk -t2 -c64 -d5s -s "$WORK/visitors.lua" "http://127.0.0.1:$PORT/$code?sub1=x" >/dev/null; done

measure() {
echo "Measured $(date -u +%Y-%m-%d) with \`loadtest/routing.sh $ROUNDS $DURATION\` ($(nproc) cores; wrk, ClickHouse and Redis on the same machine; GeoLite2 City; visitors from $POOL addresses)."
echo
echo "| round | conns | plain req/s | 10 rules + split req/s | ratio | plain p50/p99 ms | routed p50/p99 ms |"
echo "|---|---|---|---|---|---|---|"
declare -A RATIOS
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONNS[@]}"; do
    # Each from a quiet machine, and each first in every other round: neither is billed for
    # the other's storing.
    if [ $((round % 2)) = 1 ]; then
      settle; read -r p_rps p_p50 p_p99 _ < <(run_wrk "http://127.0.0.1:$PORT/$PLAIN?sub1=x" "$c")
      settle; read -r r_rps r_p50 r_p99 _ < <(run_wrk "http://127.0.0.1:$PORT/$ROUTED?sub1=x" "$c")
    else
      settle; read -r r_rps r_p50 r_p99 _ < <(run_wrk "http://127.0.0.1:$PORT/$ROUTED?sub1=x" "$c")
      settle; read -r p_rps p_p50 p_p99 _ < <(run_wrk "http://127.0.0.1:$PORT/$PLAIN?sub1=x" "$c")
    fi
    ratio="$(python3 -c "print(f'{$r_rps/$p_rps:.2f}')")"
    RATIOS[$c]="${RATIOS[$c]:-} $ratio"
    echo "| $round | $c | $p_rps | $r_rps | $ratio | $p_p50 / $p_p99 | $r_p50 / $r_p99 |"
  done
done
echo
for c in "${CONNS[@]}"; do
  python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[2:]]; print(f'- median ratio at {sys.argv[1]} connections: {statistics.median(r):.2f} (rounds at or above 0.9: {sum(x >= 0.9 for x in r)} of {len(r)})')" "$c" ${RATIOS[$c]}
done

# Shares and stickiness over at least CLICKS routed clicks.
stored() { ch "SELECT count() FROM clicks WHERE link_id = '$ROUTED'"; }
sleep 3
while [ "$(stored)" -lt "$CLICKS" ]; do
  wrk -t2 -c64 -d10s -s "$WORK/visitors.lua" "http://127.0.0.1:$PORT/$ROUTED?sub1=x" >/dev/null
  sleep 3
done
echo
ch "SELECT variant, count() FROM clicks WHERE link_id = '$ROUTED' GROUP BY variant ORDER BY variant FORMAT TSV" |
  python3 -c '
import sys
rows = [l.split("\t") for l in sys.stdin.read().split("\n") if l]
total = sum(int(n) for _, n in rows)
weights = {"a": 50, "b": 30, "c": 20}
worst = 0.0
name = lambda v: v or "(none)"
print(f"- split shares over {total:,} clicks:", ", ".join(
    f"{name(v)} {int(n) / total:.2%} (weight {weights.get(v, 0)}%)" for v, n in rows))
for v, n in rows:
    worst = max(worst, abs(int(n) / total * 100 - weights.get(v, 0)))
print(f"- largest share off its weight: {worst:.2f} percentage points")
'
ch "SELECT count(), countIf(variants > 1), round(avg(clicks), 1) FROM (SELECT ip_hash, uniqExact(variant) AS variants, count() AS clicks FROM clicks WHERE link_id = '$ROUTED' GROUP BY ip_hash) FORMAT TSV" |
  awk -F'\t' '{printf "- stickiness: %d visitors (%s clicks each on average), %d saw more than one variant (%.2f%% kept theirs)\n", $1, $3, $2, ($1 - $2) * 100 / $1}'
}
OUT="$WORK/routing.md"
measure | tee "$OUT"
results_block routing "Routing: 10 rules and a 3-way split against a plain link — \`loadtest/routing.sh 3 10s\`" "$OUT"
