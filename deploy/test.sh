#!/usr/bin/env bash
# Runs every test: unit tests, integration tests against the real local stack (ClickHouse
# 18.16 and Redis, started here if not running), the same suites and the kill tests on a
# Redis Cluster and a ClickHouse cluster (deploy/cluster.sh), the schema test on a current ClickHouse
# (chdb-core), the JavaScript SDK's unit tests, Schemathesis fuzzing the API with its OpenAPI
# document, and the dashboard and SDK in a real browser (Debian's Chromium). Installs what
# it needs: apt packages (stack.sh, chromium), Python packages via pip, npm packages from
# package-lock.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/deploy/stack.sh" up
"$ROOT/deploy/cluster.sh" stores

python3 - <<'PY' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check mmdb-writer chdb-core pytest netaddr
import chdb, mmdb_writer, pytest, netaddr
PY

mkdir -p var/test
python3 tests/support/make_geo_db.py var/test/geo.mmdb
export SLUICE_TEST_GEOIP="$ROOT/var/test/geo.mmdb"
python3 tests/support/make_anonymous_db.py var/test/anonymous.mmdb
export SLUICE_TEST_ANONYMOUS_IP="$ROOT/var/test/anonymous.mmdb"
export SLUICE_TEST_CLICKHOUSE_URL="${SLUICE_TEST_CLICKHOUSE_URL:-http://127.0.0.1:18123}"
export SLUICE_TEST_REDIS_URL="${SLUICE_TEST_REDIS_URL:-redis://127.0.0.1:16379}"
SLUICE_TEST_CLUSTER_REDIS_URL="$("$ROOT/deploy/cluster.sh" env | sed -n 's/^export SLUICE_REDIS_URL=//p')"
SLUICE_TEST_CLUSTER_CLICKHOUSE_URL="$("$ROOT/deploy/cluster.sh" env | sed -n 's/^export SLUICE_CLICKHOUSE_URL=//p')"
export SLUICE_TEST_CLUSTER_REDIS_URL SLUICE_TEST_CLUSTER_CLICKHOUSE_URL

# The schema test replays every statement Sluice sent from here on (the servers' query logs).
export SLUICE_TEST_SINCE="$(date +%s)"

echo "== cargo tests (unit, integration, benches in test mode, tests/cluster on the local cluster)"
cargo test --all-targets "$@"

echo "== the flows again, on the Redis Cluster and the ClickHouse cluster"
# One test at a time: each first start runs every migration as distributed DDL, and 18.16's
# DDL worker can die of a race between the two replicas of a shard when ALTERs of several
# databases are queued at once (see ARCHITECTURE.md, "Known limits").
SLUICE_TEST_REDIS_URL="$SLUICE_TEST_CLUSTER_REDIS_URL" \
SLUICE_TEST_CLICKHOUSE_URL="$SLUICE_TEST_CLUSTER_CLICKHOUSE_URL" SLUICE_TEST_CLICKHOUSE_CLUSTER=sluice \
  cargo test "$@" --test attribution --test events --test conversions --test delivery --test keys \
  --test link_catalog --test stats --test retention --test routing --test fraud --test skan \
  -- --test-threads=1

echo "== pace, the fixed-rate load tool of loadtest/compare.sh"
cargo test --release --manifest-path loadtest/pace/Cargo.toml

echo "== schema (both modes), the clicks Native block and every statement sent, on a current ClickHouse (chdb-core)"
python3 -m pytest -q tests/python

echo "== JavaScript SDK (node's test runner)"
(cd sdk/js && npm ci --no-audit --no-fund --silent && npm test)

echo "== the API fuzzed with its own OpenAPI document (Schemathesis)"
bash tests/openapi/run.sh

echo "== dashboard and SDK in Chromium"
bash tests/browser/run.sh

echo "== Prometheus scraping Sluice under load"
bash tests/prometheus/run.sh
