#!/usr/bin/env bash
# Runs every property-based fuzz target (`fuzz_*`: query parsing, macro expansion,
# X-Forwarded-For, user agents, link JSON bodies, the spill record decoder) for many more
# cases than the regular test run. Usage: loadtest/fuzz.sh [CASES]   (default 200000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROPTEST_CASES="${1:-200000}" cargo test --release --lib fuzz_ -- --test-threads 2
