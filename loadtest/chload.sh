#!/usr/bin/env bash
# ClickHouse's share of the box, without Sluice: inserts clicks the way Sluice's pipeline does
# (100k-row Native blocks, sorted by the table's key, into the real schema with its
# materialized views) at RATE rows/s for SECONDS, so that any server (nginx, say) can be
# measured beside it with pace. What it shows: the latency ClickHouse on the same cores adds
# to a server that does no work of its own for the clicks (loadtest/RESULTS.md).
# Usage: loadtest/chload.sh [RATE] [SECONDS]     (defaults: 40000, 30)
#        CLICKHOUSE_IDLE=1 loadtest/chload.sh …    (ClickHouse under SCHED_IDLE meanwhile)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
RATE="${1:-40000}"
SECONDS_TOTAL="${2:-30}"
ROWS=100000
DB=sluice_chload
stack_up
CH_PID="$(cat "$ROOT/var/clickhouse/pid")"
ch() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$DB" --data-binary "$1"; }

drop_database "$DB"
SLUICE_CLICKHOUSE_DATABASE=$DB RUST_LOG=warn ./target/release/sluice migrate >/dev/null
# One block, generated once (ClickHouse's own CPU for it is spent before the clock starts):
# one tenant, five links, a click every 10 ms, the fields the load scripts' clicks fill.
ch "SELECT toDate(now()) AS date, toUInt64(toUnixTimestamp(now())) * 1000 + number * 10 AS ts_ms,
      toFixedString(reinterpretAsString(sipHash128(toString(number))), 16) AS click_id,
      'chload' AS tenant_id, concat('link', toString(intDiv(number, 20000))) AS link_id,
      'summer-sale' AS campaign, 'facebook' AS source, 'cpc' AS medium,
      concat('partner-', toString(number)) AS partner_click_id, 'banner' AS sub1,
      concat('b', toString(number % 7)) AS sub2, '' AS sub3, '' AS sub4, '' AS sub5,
      sipHash64(number % 50000) AS ip_hash, 'GB' AS country, 'England' AS region,
      'Willesden' AS city, 'Mobile Safari' AS browser, 'iOS' AS os, '17.1' AS os_version,
      'mobile' AS device, 'ios' AS platform, '' AS referrer, toUInt8(number % 50 = 0) AS is_bot,
      toUInt8(0) AS is_preview, toUInt64(1) AS batch_id
    FROM numbers($ROWS)
    ORDER BY tenant_id, date, link_id, ts_ms FORMAT Native" > "$WORK/chload.native"

[ "${CLICKHOUSE_IDLE:-0}" = 1 ] && chrt --idle -a -p 0 "$CH_PID"
cleanup() {
  [ "${CLICKHOUSE_IDLE:-0}" = 1 ] && chrt --other -a -p 0 "$CH_PID"
  drop_database "$DB"
}
trap cleanup EXIT
now_ns() { date +%s%N; }
ticks0="$(awk '{print $14+$15}' "/proc/$CH_PID/stat")"
start=$(now_ns)
end=$((start + SECONDS_TOTAL * 1000000000))
inserted=0
while [ "$(now_ns)" -lt "$end" ]; do
  curl -fsS --data-binary @"$WORK/chload.native" \
    "$SLUICE_CLICKHOUSE_URL/?query=INSERT%20INTO%20$DB.clicks%20FORMAT%20Native"
  inserted=$((inserted + ROWS))
  # The next block is due ROWS / RATE seconds after the last one was, as the flusher seals them.
  wait_ns=$((start + inserted * 1000000000 / RATE - $(now_ns)))
  [ "$wait_ns" -gt 0 ] && sleep "$((wait_ns / 1000000000)).$(printf %09d $((wait_ns % 1000000000)))"
done
ticks1="$(awk '{print $14+$15}' "/proc/$CH_PID/stat")"
echo "chload: $inserted rows in ${SECONDS_TOTAL} s; ClickHouse CPU" \
  "$(( (ticks1 - ticks0) * 1000000000 / $(getconf CLK_TCK) / inserted ))" "ns a row"
