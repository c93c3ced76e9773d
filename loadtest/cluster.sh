#!/usr/bin/env bash
# One Sluice node against three, on the local cluster (deploy/cluster.sh: Redis Cluster 3+3,
# ClickHouse 2 shards x 2 replicas with ZooKeeper, HAProxy): the same redirects through HAProxy
# to one node (the other two stopped) and to three. For each: the peak (oha, 256 connections)
# and a fixed rate (pace), with the CPU each component spent per click at that rate — the
# Sluice nodes, HAProxy, ClickHouse, Redis, ZooKeeper — from /proc, over the run and the
# flushes after it, net of what each spends in 10 s without load (a replicated ClickHouse
# and a Redis Cluster are never idle: reported apart). On one 2-core box three nodes cannot beat one; the per-click costs are
# what the capacity model in RESULTS.md is built from.
#
# Usage: loadtest/cluster.sh [RATE] [DURATION]    (defaults: 10000 clicks/s, 20s)
#        SLUICE_FLUSH_PERIOD_MS=5000 loadtest/cluster.sh …   (larger batches; any SLUICE_*
#                                                             setting reaches the nodes)
# Writes its table into loadtest/RESULTS.md between the cluster markers (one pair per flush
# period).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
RATE="${1:-10000}"
DURATION="${2:-20s}"
LB=18300
IDLE_S=10
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

# Prints the CPU µs per click of each component between two snapshots (run), net of what it
# spends idle (idle_before, idle_after: IDLE_S seconds without load), then all of them, then
# the cores each spends idle.
cpu_cost() {
  python3 - "$1" "$2" "$3" "$4" "$5" "$6" "$IDLE_S" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
ib, ia, rb, ra = sys.argv[1:5]
clicks, run_s, idle_s, hz = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
def total(text):
    t = collections.Counter()
    for line in text.splitlines():
        name, ticks = line.split()
        t[name] += int(ticks)
    return t
order = ["sluice", "haproxy", "clickhouse", "redis", "zookeeper"]
idle = {k: (total(ia)[k] - total(ib)[k]) / hz / idle_s for k in order}   # cores
run = {k: (total(ra)[k] - total(rb)[k]) / hz for k in order}             # CPU seconds
cost = {k: max(run[k] - idle[k] * run_s, 0) * 1e6 / clicks for k in order}
print(" | ".join(f"{cost[k]:.1f}" for k in order) + f" | {sum(cost.values()):.1f} | "
      + " / ".join(f"{idle[k]:.2f}" for k in order))
PY
}

OUT="$WORK/cluster.md"
{
FLUSH="${SLUICE_FLUSH_PERIOD_MS:-1000}"
echo "Measured $(date -u +%Y-%m-%d) with \`SLUICE_FLUSH_PERIOD_MS=$FLUSH loadtest/cluster.sh $RATE $DURATION\` ($(nproc) cores; every process below, oha and pace on the same machine)."
echo
echo "| nodes | peak req/s (oha, 256 conn, through HAProxy) | at $RATE/s: p50 / p99 ms (pace) | CPU µs per click, net of idle: Sluice | HAProxy | ClickHouse (4) | Redis (6) | ZooKeeper | all | cores idle: Sluice / HAProxy / ClickHouse / Redis / ZooKeeper |"
echo "|---|---|---|---|---|---|---|---|---|---|"
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
  idle_before="$(cpu_snapshot)"; sleep "$IDLE_S"; idle_after="$(cpu_snapshot)"
  before_rows="$(stored)"
  snap_before="$(cpu_snapshot)"
  started=$(date +%s.%N)
  "$PACE" -R "$RATE" -c 64 -d "$DURATION" --json -H "User-Agent: $UA" "http://127.0.0.1:$LB/$CODE" > "$WORK/pace.json"
  sleep 5   # the run's last flushes and their merges
  snap_after="$(cpu_snapshot)"
  run_s="$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(date +%s.%N)")"
  read -r answered p50 p99 < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=r["corrected_ms"]; print(r["answered"], "%.2f" % c["p50"], "%.2f" % c["p99"])' "$WORK/pace.json")
  echo "| $nodes | $peak | $p50 / $p99 | $(cpu_cost "$idle_before" "$idle_after" "$snap_before" "$snap_after" "$answered" "$run_s") |" >> "$OUT"
  echo "cluster.sh: $nodes node(s): $answered answered at $RATE/s, $(( $(stored) - before_rows )) stored" >&2
done
"$ROOT/deploy/cluster.sh" stop-nodes
echo >> "$OUT"
echo "- click rows stored, all runs: $(stored)" >> "$OUT"
curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $SLUICE_CLICKHOUSE_DATABASE ON CLUSTER sluice" >/dev/null
cat "$OUT"

python3 - "$ROOT/loadtest/RESULTS.md" "$OUT" "$FLUSH" <<'PY'
import sys
path, out, flush = sys.argv[1], sys.argv[2], sys.argv[3]
start, end = f"<!-- cluster:flush-{flush}:start -->", f"<!-- cluster:flush-{flush}:end -->"
text, table = open(path).read(), open(out).read().strip()
block = f"{start}\n{table}\n{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + f"\n\n### `cluster.sh`, batches every {flush} ms\n\n{block}\n"
open(path, "w").write(text)
PY
