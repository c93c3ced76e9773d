#!/usr/bin/env bash
# The click-id lookup an install makes, at an ad network's scale: N clicks of one tenant in
# one day (default 33,600,000) written straight into ClickHouse (the materialized view fills
# click_facts as the pipeline's inserts do), then lookups of random clicks by id timed as the
# code issues them (click_facts, by key; 1, 10 and 100 ids a query, as batched installs share
# one) and as a lookup was issued before (clicks, the tenant's day scanned). Prints the median
# and max of 20 queries each way.
# Usage: loadtest/click_lookup.sh [CLICKS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
N="${1:-33600000}"
stack_up
DB="sluice_lookup"
drop_database "$DB"
SLUICE_CLICKHOUSE_DATABASE="$DB" ./target/release/sluice migrate >/dev/null
q() { curl -fsS "$SLUICE_CLICKHOUSE_URL/?database=$DB" --data-binary "$1"; }
DAY="$(date -u +%F)"
DAY_MS="$(( $(date -u -d "$DAY" +%s) * 1000 ))"
echo "inserting $N clicks of one tenant on $DAY…"
started=$(date +%s.%N)
# Ids as the redirect makes them (UUIDv7: 48-bit ms time first; 2^48 added so hex() keeps the
# leading zeros 18.16 has no lpad for), 1,000 links, 8 other tenants around the one measured.
for part in $(seq 0 9); do
  q "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview)
     SELECT toDate('$DAY'), $DAY_MS + intDiv(number * 86400000, $N) AS ts,
       unhex(concat(substring(hex(ts + 281474976710656), 3, 12), '7', substring(hex(sipHash128(toString(number))), 1, 19))),
       't_lookup', concat('link', toString(number % 1000)), 'c', 's', 'm', cityHash64(number), 0, 0
     FROM numbers($(( part * N / 10 )), $(( N / 10 )))" >/dev/null
done
q "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, ip_hash, is_bot, is_preview)
   SELECT toDate('$DAY'), $DAY_MS + number, sipHash128(concat('other', toString(number))), concat('t_other', toString(number % 8)), 'l', number, 0, 0
   FROM numbers(1000000)" >/dev/null
printf 'inserted in %.0f s; clicks %s rows, click_facts %s rows\n' "$(echo "$(date +%s.%N) - $started" | bc)" \
  "$(q 'SELECT count() FROM clicks')" "$(q 'SELECT count() FROM click_facts')"
q "OPTIMIZE TABLE click_facts FINAL" >/dev/null || true

time_lookups() { # $1: ids a query, $2: the query, IDS standing for the id list, $3: settings
  local times=() i ids
  for i in $(seq 20); do
    ids="$(q "SELECT hex(click_id) FROM clicks WHERE tenant_id = 't_lookup' ORDER BY rand() LIMIT $1" | sed "s/.*/unhex('&')/" | paste -sd,)"
    times+=("$(curl -fsS -o /dev/null -w '%{time_total}' "$SLUICE_CLICKHOUSE_URL/?database=$DB${3:-}" --data-binary "${2//IDS/$ids}")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms, max %.1f ms over %d queries\n", a[int((NR+1)/2)]*1000, a[NR]*1000, NR}'
}
for n in 1 10 100; do
  echo "click_facts, $n ids a query (by key, as Sluice looks up now): $(time_lookups $n \
    "SELECT click_id, facts FROM click_facts WHERE click_id IN (IDS)" "&max_threads=1&max_read_buffer_size=65536")"
done
echo "clicks, 1 id (the tenant's day scanned, as before): $(time_lookups 1 \
  "SELECT hex(click_id), ts_ms, link_id, campaign, source, medium, partner_click_id, sub1, sub2, sub3, sub4, sub5, country
   FROM clicks WHERE tenant_id = 't_lookup' AND date IN (toDate('$DAY')) AND click_id IN (IDS) AND is_bot = 0 AND is_preview = 0 LIMIT 1 BY click_id")"
echo "ClickHouse $(q 'SELECT version()'); on-disk: $(q "SELECT table, formatReadableSize(sum(bytes_on_disk)) FROM system.parts WHERE database = '$DB' AND active GROUP BY table ORDER BY table FORMAT TSV" | tr '\n' ' ')"
drop_database "$DB"
