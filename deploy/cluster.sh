#!/usr/bin/env bash
# A local cluster for Sluice on one box: a Redis Cluster of 3 masters and 3 replicas on
# project-local ports, data under var/cluster/. (ClickHouse shards and replicas with
# ZooKeeper, and Sluice nodes behind HAProxy, are issue 30's next steps.)
# Usage: deploy/cluster.sh up|down|status|env   (idempotent; installs packages with apt when missing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${SLUICE_VAR:-$ROOT/var}/cluster"
REDIS_BASE="${SLUICE_CLUSTER_REDIS_PORT:-17001}"
REDIS_PORTS=($(seq "$REDIS_BASE" $((REDIS_BASE + 5))))

log() { echo "cluster: $*" >&2; }

need_install() {
  command -v redis-server >/dev/null && return
  log "installing redis-server with apt-get"
  local SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q redis-server >/dev/null
}

redis_up() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = "PONG" ]; }
cluster_ok() { redis-cli -p "$REDIS_BASE" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
# Three replicas whose link to their master is up.
replicated() {
  local port n=0
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$port" info replication 2>/dev/null | grep -q '^master_link_status:up' && n=$((n + 1))
  done
  [ "$n" -ge 3 ]
}

start_redis() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis_up "$port" && continue
    mkdir -p "$VAR/redis-$port"
    # cluster-node-timeout: how long a master may be unreachable before its replica takes
    # over; the failover time clients see is about this plus the election.
    redis-server "$ROOT/redis/redis.conf" --port "$port" --dir "$VAR/redis-$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --daemonize yes --pidfile "$VAR/redis-$port/pid" --logfile "$VAR/redis-$port/redis.log"
  done
  for port in "${REDIS_PORTS[@]}"; do
    for _ in $(seq 1 80); do redis_up "$port" && break; sleep 0.25; done
    redis_up "$port" || { log "redis on $port did not come up; see $VAR/redis-$port/redis.log"; exit 1; }
  done
  if ! cluster_ok; then
    if [ "$(redis-cli -p "$REDIS_BASE" cluster info | awk -F: '/^cluster_known_nodes/ {print $2+0}')" -le 1 ]; then
      log "creating the Redis Cluster on ports ${REDIS_PORTS[*]}"
      redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") \
        --cluster-replicas 1 --cluster-yes >/dev/null
    fi
    for _ in $(seq 1 120); do cluster_ok && break; sleep 0.25; done
    cluster_ok || { log "the Redis Cluster did not become ok"; exit 1; }
  fi
  # Ready once every master has a replica in sync: before that, a master lost is lost.
  for _ in $(seq 1 120); do replicated && break; sleep 0.25; done
  replicated || { log "the Redis Cluster's replicas did not come in sync"; exit 1; }
  log "redis cluster: ok (masters and replicas on ${REDIS_PORTS[*]})"
}

stop_redis() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
}

redis_urls() { printf 'redis://127.0.0.1:%s,' "${REDIS_PORTS[@]}" | sed 's/,$//'; }

case "${1:-up}" in
  up) need_install; start_redis ;;
  # down forgets the cluster's data: the next up creates it anew.
  down) stop_redis; rm -rf "$VAR" ;;
  status) cluster_ok && echo "redis cluster: ok" || echo "redis cluster: down" ;;
  env) echo "export SLUICE_REDIS_URL=$(redis_urls)" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
