#!/usr/bin/env bash
# One Sluice node against three, on the local cluster (deploy/cluster.sh: Redis Cluster 3+3,
# ClickHouse 2 shards x 2 replicas with ZooKeeper, HAProxy): the same redirects through HAProxy
# to one node (the other two stopped) and to three. For each: the peak (oha, 256 connections)
# and a fixed rate (pace), with the CPU each component spent per click at that rate — the
# Sluice nodes, HAProxy, ClickHouse, Redis, ZooKeeper — from /proc, over the run and the
# flushes after it. On one 2-core box three nodes cannot beat one; the per-click costs are
# what the capacity model in RESULTS.md is built from.
#
# Usage: loadtest/cluster.sh [RATE] [DURATION]    (defaults: 10000 clicks/s, 20s)
# Writes its table into loadtest/RESULTS.md between the cluster markers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
RATE="${1:-10000}"
DURATION="${2:-20s}"
LB=18300
VAR="${SLUICE_VAR:-$ROOT/var}/cluster"
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'
need oha pace
mkdir -p "$WORK"

"$ROOT/deploy/cluster.sh" stores
eval "$("$ROOT/deploy/cluster.sh" env)"
export SLUICE_CLICKHOUSE_DATABASE=sluice_cluster_load SLUICE_REDIS_PREFIX=sluice_cluster_load
cargo build --release --quiet
"$ROOT/deploy/cluster.sh" stop-nodes
"$ROOT/deploy/cluster.sh" nodes
CODE="$(new_link cluster "$LB" "https://example.com/?c={click_id}")"
for n in 1 2 3; do
  for _ in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((LB + n))/$CODE")" = 302 ] && break
    sleep 0.1
  done
done

stored() {
  curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$SLUICE_CLICKHOUSE_DATABASE" --data-binary "SELECT count() FROM clicks"
}

# "component ticks" for every process of the cluster.
cpu_snapshot() {
  local f name
  for f in "$VAR"/sluice-*/pid "$VAR"/haproxy.pid "$VAR"/ch-*/pid "$VAR"/redis-*/pid "$VAR"/zookeeper/pid; do
    [ -f "$f" ] && [ -d "/proc/$(cat "$f")" ] || continue
    case "$f" in
      */sluice-*) name=sluice ;; *haproxy*) name=haproxy ;; */ch-*) name=clickhouse ;;
      */redis-*) name=redis ;; *) name=zookeeper ;;
    esac
    echo "$name $(awk '{print $14+$15}' "/proc/$(cat "$f")/stat")"
  done
}

# Prints "component=µs …" per click between two snapshots.
cpu_cost() {
  python3 - "$1" "$2" "$3" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
before, after, clicks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def total(text):
    t = collections.Counter()
    for line in text.splitlines():
        name, ticks = line.split()
        t[name] += int(ticks)
    return t
b, a = total(before), total(after)
order = ["sluice", "haproxy", "clickhouse", "redis", "zookeeper"]
cost = {k: (a[k] - b[k]) / hz * 1e6 / clicks for k in order}
print(" | ".join(f"{cost[k]:.1f}" for k in order) + f" | {sum(cost.values()):.1f}")
PY
}

OUT="$WORK/cluster.md"
{
echo "Measured $(date -u +%Y-%m-%d) with \`loadtest/cluster.sh $RATE $DURATION\` ($(nproc) cores; every process below, oha and pace on the same machine)."
echo
echo "| nodes | peak req/s (oha, 256 conn, through HAProxy) | at $RATE/s: p50 / p99 ms (pace) | CPU µs per click: Sluice | HAProxy | ClickHouse (4) | Redis (6) | ZooKeeper | all |"
echo "|---|---|---|---|---|---|---|---|---|"
} > "$OUT"
for nodes in 1 3; do
  if [ "$nodes" = 1 ]; then
    for n in 2 3; do kill -TERM "$(cat "$VAR/sluice-$n/pid")"; done
    sleep 3   # drained, and out of HAProxy's rotation
  else
    "$ROOT/deploy/cluster.sh" nodes
    sleep 3   # back in rotation
  fi
  peak="$("$OHA" -z 10s -c 256 --redirect 0 --no-tui --output-format json -H "User-Agent: $UA" \
    "http://127.0.0.1:$LB/$CODE" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))')"
  sleep 5   # the peak's clicks stored before the measured run
  before_rows="$(stored)"
  snap_before="$(cpu_snapshot)"
  "$PACE" -R "$RATE" -c 64 -d "$DURATION" --json -H "User-Agent: $UA" "http://127.0.0.1:$LB/$CODE" > "$WORK/pace.json"
  sleep 5   # the run's last flushes and their merges
  snap_after="$(cpu_snapshot)"
  read -r answered p50 p99 < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=r["corrected_ms"]; print(r["answered"], "%.2f" % c["p50"], "%.2f" % c["p99"])' "$WORK/pace.json")
  echo "| $nodes | $peak | $p50 / $p99 | $(cpu_cost "$snap_before" "$snap_after" "$answered") |" >> "$OUT"
  echo "cluster.sh: $nodes node(s): $answered answered at $RATE/s, $(( $(stored) - before_rows )) stored" >&2
done
"$ROOT/deploy/cluster.sh" stop-nodes
echo >> "$OUT"
echo "- click rows stored, all runs: $(stored)" >> "$OUT"
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $SLUICE_CLICKHOUSE_DATABASE ON CLUSTER sluice" >/dev/null
cat "$OUT"

python3 - "$ROOT/loadtest/RESULTS.md" "$OUT" <<'PY'
import sys
path, out = sys.argv[1], sys.argv[2]
start, end = "<!-- cluster:start -->", "<!-- cluster:end -->"
text, table = open(path).read(), open(out).read().strip()
block = f"{start}\n{table}\n{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + f"\n\n## One node against three on the local cluster (`cluster.sh`)\n\n{block}\n"
open(path, "w").write(text)
PY
