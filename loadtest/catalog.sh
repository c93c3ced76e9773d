#!/usr/bin/env bash
# The link catalog at scale (loadtest/catalog.py): LINKS links (default 1,000,000) created
# through the bulk API, a second node's cold start, then redirect throughput with and without
# 100 link changes/s, propagation to the second node and Redis CPU per change.
# Usage: loadtest/catalog.sh [LINKS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source loadtest/lib.sh
need wrk
stack_up
# Stop both nodes and drop the catalog from Redis (gigabytes at 10M links).
trap 'python3 loadtest/catalog.py stop; clear_redis_prefix catalog_bench' EXIT
python3 loadtest/catalog.py scale "${1:-1000000}"
python3 loadtest/catalog.py churn
