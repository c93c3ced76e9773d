#!/usr/bin/env bash
# Local stack for Sluice: ClickHouse and Redis on project-local ports, data under var/.
# Usage: deploy/stack.sh up|down|status|env     (idempotent; installs packages with apt when missing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/deploy/lib.sh"
VAR="${SLUICE_VAR:-$ROOT/var}"
CH_HTTP_PORT="${SLUICE_STACK_CH_HTTP_PORT:-18123}"
CH_TCP_PORT="${SLUICE_STACK_CH_TCP_PORT:-19000}"
REDIS_PORT="${SLUICE_STACK_REDIS_PORT:-16379}"

log() { echo "stack: $*" >&2; }

need_install() {
  local missing=()
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server clickhouse-client)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    apt_install "${missing[@]}"
  fi
}

ch_up() { curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/ping" >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }  # not while loading its AOF

start_clickhouse() {
  if ch_up; then return; fi
  mkdir -p "$VAR/clickhouse/log" "$VAR/clickhouse/data" "$VAR/clickhouse/tmp"
  sed -e "s#@VAR@#$VAR#g" -e "s#@HTTP_PORT@#$CH_HTTP_PORT#g" -e "s#@TCP_PORT@#$CH_TCP_PORT#g" \
    "$ROOT/deploy/clickhouse-config.xml" > "$VAR/clickhouse/config.xml"
  cp "$ROOT/deploy/clickhouse-users.xml" "$VAR/clickhouse/users.xml"
  log "starting clickhouse on 127.0.0.1:$CH_HTTP_PORT"
  # Its allocator (Debian's jemalloc) keeps freed pages instead of handing them back to the
  # kernel and faulting them in again for the next insert: 9% less ClickHouse CPU a click
  # under Sluice's inserts, ~100 MiB more resident (loadtest/RESULTS.md). Set
  # SLUICE_STACK_CH_MALLOC_CONF empty for jemalloc's defaults.
  MALLOC_CONF="${SLUICE_STACK_CH_MALLOC_CONF-dirty_decay_ms:-1,muzzy_decay_ms:-1}" \
  nohup clickhouse-server --config-file="$VAR/clickhouse/config.xml" \
    >"$VAR/clickhouse/log/stdout.log" 2>&1 &
  echo $! > "$VAR/clickhouse/pid"
  for _ in $(seq 1 120); do ch_up && return; sleep 0.5; done
  log "clickhouse did not come up; see $VAR/clickhouse/log/"; tail -20 "$VAR/clickhouse/log/server.err.log" >&2 || true
  exit 1
}

start_redis() {
  if redis_up; then return; fi
  mkdir -p "$VAR/redis"
  log "starting redis on 127.0.0.1:$REDIS_PORT (AOF on)"
  redis-server "$ROOT/redis/redis.conf" --port "$REDIS_PORT" --dir "$VAR/redis" \
    --daemonize yes --pidfile "$VAR/redis/pid" --logfile "$VAR/redis/redis.log"
  for _ in $(seq 1 480); do redis_up && return; sleep 0.25; done
  log "redis did not come up; see $VAR/redis/redis.log"; exit 1
}

case "${1:-up}" in
  up) need_install; start_clickhouse; start_redis ;;
  down) stop_pidfile "$VAR/clickhouse/pid"; redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true ;;
  status) ch_up && echo "clickhouse: up (:$CH_HTTP_PORT)" || echo "clickhouse: down"
          redis_up && echo "redis: up (:$REDIS_PORT)" || echo "redis: down" ;;
  env) echo "export SLUICE_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT"
       echo "export SLUICE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
