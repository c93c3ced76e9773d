#!/usr/bin/env bash
# Schemathesis (PyPI) fuzzes a real Sluice on the local stack with its own OpenAPI document
# (GET /v1/openapi.json): every operation, positive and negative cases. Fails on any 5xx,
# a status or content type the document does not list, a body that does not match its schema
# (every 4xx included: the JSON error shape), or invalid input accepted.
# Schemathesis learns ids from answers and uses them: it revokes the keys it lists, its own
# among them. So key revocation is fuzzed in a second run, after everything else.
# One worker: Python 3.11's ast module is not thread-safe (CPython gh-106905) and Hypothesis
# parses lambdas while describing cases, which failed a run with "AST constructor recursion
# depth mismatch" under --workers 1.
# Usage: tests/openapi/run.sh [EXAMPLES]   (deploy/test.sh runs it; the stack must be up)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
EXAMPLES="${1:-200}"
python3 -c 'import schemathesis' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5'
source "$ROOT/tests/support/sluice.sh"
start_sluice openapi
SK="$(tenant_field secret_key)"
curl -fsS -X POST "$BASE/v1/links" -H "Authorization: Bearer $SK" \
  -d '{"id":"fuzzed","destination":"https://shop.example/{sub1}"}' >/dev/null
fuzz() {
  st --config-file "$ROOT/tests/openapi/schemathesis.toml" run "$BASE/v1/openapi.json" \
    --header "Authorization: Bearer $SK" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --mode all --max-examples "$EXAMPLES" --max-redirects 0 --workers 1 \
    --generation-with-security-parameters false --generation-database none \
    --phases examples,coverage,fuzzing --seed "${SCHEMATHESIS_SEED:-20261204}" \
    --report junit --report-dir "$WORK/report" --no-color "$@"
}
fuzz --exclude-path '/v1/keys/{id}'
fuzz --include-path '/v1/keys/{id}'
# The process is still up: no input took it down.
kill -0 $PID
