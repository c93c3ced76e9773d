#!/usr/bin/env bash
# Side-by-side redirect benchmark: nginx `return 302` vs Sluice's redirect with the whole
# pipeline running (ring → flusher → ClickHouse on this machine), same wrk, interleaved rounds.
#
# Usage: loadtest/compare.sh [ROUNDS] [DURATION]      (defaults: 3 rounds, 10s per run)
#        SERVER_CORES=1 loadtest/compare.sh …          (nginx and Sluice pinned to core 0 with
#                                                       one worker each, load tools on core 1)
#        WARMUP=0 loadtest/compare.sh …                (no unrecorded 5 s of wrk against each
#                                                       server before the rounds)
#        CATALOG=1000000 loadtest/compare.sh …         (that many other links in the catalog,
#                                                       imported before Sluice starts; results
#                                                       go under their own markers)
#        CLICKHOUSE_IDLE=1 loadtest/compare.sh …       (ClickHouse under SCHED_IDLE for the run:
#                                                       it runs when the cores would otherwise
#                                                       idle, so redirects and the load tools
#                                                       preempt it; what it cannot take in time
#                                                       goes through the spill)
# Every run starts once ClickHouse is idle again (no merges), so neither server is billed for
# the other's storing.
# Prints, and writes into loadtest/RESULTS.md between its compare markers: a markdown table
# (req/s, p50/p99 per run), the median Sluice/nginx ratio per connection count (and how many
# rounds reached 1.0), a fixed-rate run of both at half nginx's median peak (p50/p99/p99.9
# from when each request was due and as sent, by pace, then oha -q latency-corrected), the CPU
# each request cost in pace's runs (nginx; Sluice per thread; ClickHouse and Redis), and
# Sluice's peak RSS. Installs wrk, nginx-light and oha when missing, and builds pace. Seven
# rounds (`compare.sh 7 10s`, ~9 minutes) give a steadier median than three on this noisy box.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
ROUNDS="${1:-3}"
DURATION="${2:-10s}"
CONNS=(64 256)
SLUICE_PORT=18080
NGINX_PORT=18081
UA='Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'

SERVER_CORES="${SERVER_CORES:-all}"
CLICKHOUSE_IDLE="${CLICKHOUSE_IDLE:-0}"
CATALOG="${CATALOG:-0}"
PIN_SERVER=(); PIN_LOAD=(); WORKERS=auto
if [ "$SERVER_CORES" = 1 ]; then
  PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c 1); WORKERS=1; export SLUICE_HTTP_THREADS=1
fi
need oha wrk nginx pace
stack_up
CH_PID="$(cat "$ROOT/var/clickhouse/pid")"
[ "$CLICKHOUSE_IDLE" = 1 ] && chrt --idle -a -p 0 "$CH_PID"

# nginx: the constant-302 baseline, one worker per core like Sluice's runtime.
cat > "$WORK/nginx.conf" <<NGINX
daemon off;
worker_processes $WORKERS;
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
"${PIN_SERVER[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX_PID=$!

# A fresh database each run: merges of the rows earlier runs left would bill this one. The
# run drops its own at the end too: deleting thousands of part files makes creating new ones
# slow for minutes on some filesystems (journal-less ext4), which would bill the next run.
drop_database sluice_loadtest
export SLUICE_LISTEN="127.0.0.1:$SLUICE_PORT"
export SLUICE_CLICKHOUSE_DATABASE=sluice_loadtest
export SLUICE_REDIS_PREFIX=sluice_loadtest
export SLUICE_DATA_DIR="$WORK/sluice"
export RUST_LOG=warn
# A large catalog lives under a prefix of its own, removed before and after the run.
clear_catalog() { clear_redis_prefix sluice_loadtest_catalog; }
if [ "$CATALOG" -gt 0 ]; then
  export SLUICE_REDIS_PREFIX=sluice_loadtest_catalog
  clear_catalog
  TENANT="$(./target/release/sluice tenant create --name catalog | python3 -c 'import json,sys; print(json.load(sys.stdin)["tenant_id"])')"
  python3 - "$CATALOG" > "$WORK/catalog.csv" <<'PY'
import csv, sys
w = csv.writer(sys.stdout)
w.writerow(["id", "destination", "campaign", "source", "medium"])
for i in range(int(sys.argv[1])):
    w.writerow([f"c{i:08d}", f"https://example.com/p/{i}?cid={{click_id}}&s={{sub1}}", f"campaign{i % 1000}", f"source{i % 50}", "cpc"])
PY
  ./target/release/sluice links import "$WORK/catalog.csv" --tenant "$TENANT" >/dev/null
fi
"${PIN_SERVER[@]}" ./target/release/sluice serve &
SLUICE_PID=$!
cleanup() {
  kill -TERM "$SLUICE_PID" 2>/dev/null || true; kill "$NGINX_PID" 2>/dev/null || true
  wait "$SLUICE_PID" "$NGINX_PID" 2>/dev/null || true
  [ "$CLICKHOUSE_IDLE" = 1 ] && chrt --other -a -p 0 "$CH_PID" || true
  [ "$CATALOG" -gt 0 ] && clear_catalog || true
}
trap cleanup EXIT
wait_healthy "$SLUICE_PORT"
until [ "$(curl -fsS "http://127.0.0.1:$SLUICE_PORT/metrics" | awk '/^sluice_link_table_links/ {print $2}')" -ge "$CATALOG" ]; do sleep 0.5; done
CODE="$(new_link loadtest "$SLUICE_PORT" 'https://example.com/landing?cid={click_id}&s1={sub1}')"
sleep 0.5
BEFORE="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_loadtest" --data-binary "SELECT count() FROM clicks")"

# Runs wrk; prints "req/s p50_ms p99_ms".
run_wrk() {
  local url="$1" conns="$2"
  "${PIN_LOAD[@]}" wrk -t2 -c"$conns" -d"$DURATION" --latency -H "User-Agent: $UA" "$url" > "$WORK/wrk.out"
  wrk_summary "$WORK/wrk.out"
}

# Warm-up, not recorded (WARMUP=0 skips it): each server's first seconds under load are not
# its steady state. Sluice faults in its buffers and ClickHouse writes the first parts of a
# table just created (round 1 was the lowest ratio at 64 connections in three runs in a row
# without it); nginx gets the same.
if [ "${WARMUP:-5s}" != 0 ]; then
  for port in "$NGINX_PORT" "$SLUICE_PORT"; do
    "${PIN_LOAD[@]}" wrk -t2 -c64 -d"${WARMUP:-5s}" -H "User-Agent: $UA" \
      "http://127.0.0.1:$port/$CODE?sub1=x" >/dev/null
  done
fi

OUT="$WORK/compare.md"
exec > >(tee "$OUT")
IDLE_NOTE=""
[ "$CLICKHOUSE_IDLE" = 1 ] && IDLE_NOTE="CLICKHOUSE_IDLE=1 "
[ "$CATALOG" -gt 0 ] && IDLE_NOTE="${IDLE_NOTE}CATALOG=$CATALOG "
echo "Measured $(date -u +%Y-%m-%d) with \`${IDLE_NOTE}SERVER_CORES=$SERVER_CORES loadtest/compare.sh $ROUNDS $DURATION\` ($(nproc) cores; wrk, oha, ClickHouse and Redis on the same machine)."
echo
echo "| round | conns | nginx req/s | sluice req/s | ratio | nginx p50/p99 ms | sluice p50/p99 ms |"
echo "|---|---|---|---|---|---|---|"
declare -a NGINX64
declare -A RATIOS
ANSWERED=0
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONNS[@]}"; do
    settle
    read -r n_rps n_p50 n_p99 _ < <(run_wrk "http://127.0.0.1:$NGINX_PORT/$CODE?sub1=x" "$c")
    [ "$c" = 64 ] && NGINX64+=("$n_rps")
    settle
    read -r s_rps s_p50 s_p99 s_ok < <(run_wrk "http://127.0.0.1:$SLUICE_PORT/$CODE?sub1=x" "$c")
    ANSWERED=$((ANSWERED + s_ok))
    ratio="$(python3 -c "print(f'{$s_rps/$n_rps:.2f}')")"
    RATIOS[$c]="${RATIOS[$c]:-} $ratio"
    echo "| $round | $c | $n_rps | $s_rps | $ratio | $n_p50 / $n_p99 | $s_p50 / $s_p99 |"
  done
done
echo
for c in "${CONNS[@]}"; do
  python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[2:]]; print(f'- median ratio at {sys.argv[1]} connections: {statistics.median(r):.2f} (rounds at or above 1.0: {sum(x >= 1 for x in r)} of {len(r)})')" "$c" ${RATIOS[$c]}
done

# Fixed rate: half of nginx's median peak at 64 connections, measured by pace
# (loadtest/pace): each request's latency counted from when it was due (as wrk2 does), and
# as sent, and how late pace itself sent. Then oha -q the same way: it runs later than pace on
# the two shared cores, and its correction bills that lateness to the server.
RATE="$(python3 -c "import statistics,sys; print(int(statistics.median(float(x) for x in sys.argv[1:]) / 2))" "${NGINX64[@]}")"
# paced URL: prints "req/s answered" and the p50 p99 p99.9 (ms) from when due, as sent, and
# of pace's own lateness.
paced() {
  "${PIN_LOAD[@]}" "$PACE" -R "$RATE" -c 64 -d "$DURATION" --json -H "User-Agent: $UA" "$1" > "$WORK/pace.json"
  python3 - "$WORK/pace.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
q = lambda k: " ".join(f"{r[k][p]:.2f}" for p in ("p50", "p99", "p99.9"))
print(f"{r['req_per_sec']:.0f} {r['answered']} {q('corrected_ms')} {q('as_sent_ms')} {q('late_send_ms')}")
PY
}
# oha URL: prints "req/s p50_ms p99_ms p99.9_ms" (latency-corrected).
oha_fixed() {
  "${PIN_LOAD[@]}" "$OHA" -z "$DURATION" -c 64 -q "$RATE" --latency-correction --redirect 0 --no-tui \
    --output-format json -H "User-Agent: $UA" "$1" > "$WORK/oha.json"
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latencyPercentiles"]
print(f"{r['summary']['requestsPerSec']:.0f} {p['p50']*1000:.2f} {p['p99']*1000:.2f} {p['p99.9']*1000:.2f}")
PY
}
# CPU time (user + system, clock ticks) of every process and Sluice thread that serves a
# redirect: where each request's cost goes, the profile behind the ratio.
REDIS_PID="$(cat "$ROOT/var/redis/pid")"
cpu_snapshot() {
  for t in /proc/"$SLUICE_PID"/task/*; do echo "sluice:$(cat "$t/comm" | sed 's/-[0-9]*$//') $(awk '{print $14+$15}' "$t/stat")"; done
  for p in $(pgrep -f "nginx: worker process" || true); do echo "nginx $(awk '{print $14+$15}' "/proc/$p/stat")"; done
  echo "clickhouse $(awk '{print $14+$15}' "/proc/$CH_PID/stat")"
  echo "redis $(awk '{print $14+$15}' "/proc/$REDIS_PID/stat")"
}
# Prints "component=µs ..." per request answered between two snapshots.
cpu_cost() {
  python3 - "$1" "$2" "$3" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
def load(path):
    d = collections.Counter()
    for line in open(path):
        name, ticks = line.rsplit(" ", 1)
        d[name] += int(ticks)
    return d
a, b, n, tck = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cost = {k: (b[k] - a[k]) * 1e6 / tck / n for k in b if b[k] > a[k]}
print(" ".join(f"{k}={v:.2f}" for k, v in sorted(cost.items(), key=lambda kv: -kv[1])), f"total={sum(cost.values()):.2f}")
PY
}
# Each fixed-rate window runs until ClickHouse has settled after it, so it bills all the
# storing (flush, insert, merges) its own requests caused and none of an earlier run's.
settle
cpu_snapshot > "$WORK/cpu0"
read -r pn_rps pn_n pn_due50 pn_due99 pn_due999 pn_sent50 pn_sent99 pn_sent999 _ pn_late99 pn_late999 \
  < <(paced "http://127.0.0.1:$NGINX_PORT/$CODE?sub1=x")
settle
cpu_snapshot > "$WORK/cpu1"
read -r ps_rps ps_n ps_due50 ps_due99 ps_due999 ps_sent50 ps_sent99 ps_sent999 _ ps_late99 ps_late999 \
  < <(paced "http://127.0.0.1:$SLUICE_PORT/$CODE?sub1=x")
settle
cpu_snapshot > "$WORK/cpu2"
read -r on_rps on_p50 on_p99 on_p999 < <(oha_fixed "http://127.0.0.1:$NGINX_PORT/$CODE?sub1=x")
settle
read -r os_rps os_p50 os_p99 os_p999 < <(oha_fixed "http://127.0.0.1:$SLUICE_PORT/$CODE?sub1=x")
echo
echo "| fixed rate ($RATE req/s, 64 conns) | req/s | p50 ms | p99 ms | p99.9 ms |"
echo "|---|---|---|---|---|"
echo "| nginx, pace, from when due | $pn_rps | $pn_due50 | $pn_due99 | $pn_due999 |"
echo "| sluice, pace, from when due | $ps_rps | $ps_due50 | $ps_due99 | $ps_due999 |"
echo "| nginx, pace, as sent | $pn_rps | $pn_sent50 | $pn_sent99 | $pn_sent999 |"
echo "| sluice, pace, as sent | $ps_rps | $ps_sent50 | $ps_sent99 | $ps_sent999 |"
echo "| nginx, oha, corrected | $on_rps | $on_p50 | $on_p99 | $on_p999 |"
echo "| sluice, oha, corrected | $os_rps | $os_p50 | $os_p99 | $os_p999 |"
echo
echo "pace's own lateness (from when a request was due to when it was written), p99 / p99.9: $pn_late99 / $pn_late999 ms in the nginx run, $ps_late99 / $ps_late999 ms in Sluice's."
echo
echo "CPU µs per request in the fixed-rate runs (user + system, per process; Sluice per thread):"
echo
echo "- nginx run: $(cpu_cost "$WORK/cpu0" "$WORK/cpu1" "$pn_n")"
echo "- sluice run: $(cpu_cost "$WORK/cpu1" "$WORK/cpu2" "$ps_n")"
PEAK_RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$SLUICE_PID/status")"
echo
echo "- Sluice peak RSS: $((PEAK_RSS_KB / 1024)) MiB"

# Every redirect answered during the runs must be in ClickHouse (SIGTERM drains the ring).
METRICS="$(curl -fsS "http://127.0.0.1:$SLUICE_PORT/metrics")"
DROPPED="$(awk '/^sluice_clicks_dropped_total/ {s+=$2} END {print s+0}' <<<"$METRICS")"
SPILLED="$(awk '/^sluice_clicks_spilled_total/ {s+=$2} END {print s+0}' <<<"$METRICS")"
kill -TERM "$SLUICE_PID"; wait "$SLUICE_PID" || true
AFTER="$(curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=sluice_loadtest" --data-binary "SELECT count() FROM clicks")"
echo "- redirects answered by sluice in the wrk rounds: $ANSWERED; click rows stored (all runs): $((AFTER - BEFORE)); dropped (ring full): $DROPPED; through the spill (ClickHouse too slow to take them): $SPILLED"
drop_database sluice_loadtest
sleep 1 # let tee write the last lines
# Into RESULTS.md, between the markers for this core count (and catalog size).
MARKER="$SERVER_CORES"
[ "$CATALOG" -gt 0 ] && MARKER="$SERVER_CORES:links-$CATALOG"
results_block "compare:$MARKER" "Latest \`compare.sh\` run (server cores: $MARKER)" "$OUT"
