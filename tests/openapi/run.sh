#!/usr/bin/env bash
# Schemathesis (PyPI) fuzzes a real Sluice on the local stack with its own OpenAPI document
# (GET /v1/openapi.json): every operation, positive and negative cases. Fails on any 5xx,
# a status or content type the document does not list, a body that does not match its schema
# (every 4xx included: the JSON error shape), or invalid input accepted.
# Schemathesis learns ids from answers and uses them: it revokes the keys it lists, its own
# among them. So key revocation is fuzzed in a second run, after everything else.
# Usage: tests/openapi/run.sh [EXAMPLES]   (deploy/test.sh runs it; the stack must be up)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
EXAMPLES="${1:-200}"
python3 -c 'import schemathesis' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5'
eval "$("$ROOT/deploy/stack.sh" env)"
cargo build --quiet
RUN="openapi_$(date +%s)_$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK="$ROOT/var/test/openapi"
rm -rf "$WORK"; mkdir -p "$WORK"
export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE="$RUN" SLUICE_REDIS_PREFIX="$RUN" \
  SLUICE_DATA_DIR="$WORK/data" SLUICE_FLUSH_PERIOD_MS=200 RUST_LOG=warn
./target/debug/sluice serve > "$WORK/sluice.log" 2>&1 &
PID=$!
cleanup() {
  kill -TERM $PID 2>/dev/null || true
  wait $PID 2>/dev/null || true
  curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $RUN" >/dev/null || true
}
trap cleanup EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 200); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
SK="$(./target/debug/sluice tenant create --name openapi | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SK" \
  -d '{"id":"fuzzed","destination":"https://shop.example/{sub1}"}' >/dev/null
fuzz() {
  st run "$BASE/v1/openapi.json" \
    --header "Authorization: Bearer $SK" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --mode all --max-examples "$EXAMPLES" --max-redirects 0 --workers 2 \
    --generation-with-security-parameters false --generation-database none \
    --phases examples,coverage,fuzzing --seed "${SCHEMATHESIS_SEED:-20261204}" \
    --report junit --report-dir "$WORK/report" --no-color "$@"
}
fuzz --exclude-path '/v1/keys/{id}'
fuzz --include-path '/v1/keys/{id}'
# The process is still up: no input took it down.
kill -0 $PID
