# Sourced by the script tests that need a running Sluice (browser/, openapi/, prometheus/).
#   start_sluice NAME [VAR=VALUE …]
# builds Sluice, starts `sluice serve` on a free port with its own ClickHouse database and
# Redis prefix on the local stack (which must be up) and the extra settings given, waits for
# it, and sets RUN, PORT, WORK (var/test/NAME), BASE, PID and TENANT (a new tenant's JSON;
# `tenant_field secret_key` reads it). On exit it stops Sluice and whatever else the caller
# added to PIDS, and drops the database.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stop_sluice() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $RUN" >/dev/null || true
}

start_sluice() {
  local name="$1"; shift
  eval "$("$ROOT/deploy/stack.sh" env)"
  cargo build --quiet
  RUN="${name}_$(date +%s)_$$"
  PORT=$(free_port)
  WORK="$ROOT/var/test/$name"
  rm -rf "$WORK"; mkdir -p "$WORK"
  export SLUICE_LISTEN="127.0.0.1:$PORT" SLUICE_CLICKHOUSE_DATABASE="$RUN" SLUICE_REDIS_PREFIX="$RUN" \
    SLUICE_DATA_DIR="$WORK/data" SLUICE_FLUSH_PERIOD_MS=200 RUST_LOG=warn "$@"
  "$ROOT/target/debug/sluice" serve > "$WORK/sluice.log" 2>&1 &
  PID=$!
  PIDS=("$PID")
  trap stop_sluice EXIT
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 1 200); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  TENANT="$("$ROOT/target/debug/sluice" tenant create --name "$name")"
}

tenant_field() {
  echo "$TENANT" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}
