#!/usr/bin/env bash
# A local cluster for Sluice on one box, on project-local ports, data under var/cluster/:
# a Redis Cluster of 3 masters and 3 replicas, and ClickHouse 18.16 as 2 shards x 2 replicas
# (cluster `sluice`) with one ZooKeeper 3.8. (Sluice nodes behind HAProxy, and Sluice's
# schema on the ClickHouse cluster, are issue 30's next steps.)
# Usage: deploy/cluster.sh up|down|status|env   (idempotent; installs packages with apt when missing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/deploy/lib.sh"
VAR="${SLUICE_VAR:-$ROOT/var}/cluster"
REDIS_BASE="${SLUICE_CLUSTER_REDIS_PORT:-17001}"
REDIS_PORTS=($(seq "$REDIS_BASE" $((REDIS_BASE + 5))))
ZK_PORT="${SLUICE_CLUSTER_ZK_PORT:-12181}"
CH_HTTP_BASE="${SLUICE_CLUSTER_CH_HTTP_PORT:-18201}"   # node n (1-4): HTTP base+n-1,
CH_TCP_BASE=$((CH_HTTP_BASE + 1000))                    # native base+1000+n-1,
CH_INTERSERVER_BASE=$((CH_HTTP_BASE + 1100))            # replication base+1100+n-1

log() { echo "cluster: $*" >&2; }

need_install() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server clickhouse-client)
  [ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing ${missing[*]} with apt-get"
  apt_install "${missing[@]}"
}

zk_up() { (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && echo ruok >&3 && [ "$(head -c 4 <&3)" = imok ]) 2>/dev/null; }

start_zookeeper() {
  zk_up && return
  mkdir -p "$VAR/zookeeper/data"
  cat > "$VAR/zookeeper/zoo.cfg" <<ZK
tickTime=500
dataDir=$VAR/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
ZK
  # Debian's package, run standalone without its service (the classpath its zkEnv.sh builds).
  nohup java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/*" -Dzookeeper.log.dir="$VAR/zookeeper" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$VAR/zookeeper/zoo.cfg" \
    > "$VAR/zookeeper/zookeeper.log" 2>&1 &
  echo $! > "$VAR/zookeeper/pid"
  for _ in $(seq 1 120); do zk_up && return; sleep 0.25; done
  log "zookeeper did not come up; see $VAR/zookeeper/zookeeper.log"; exit 1
}

ch_up() { curl -fsS "http://127.0.0.1:$((CH_HTTP_BASE + $1 - 1))/ping" >/dev/null 2>&1; }

# The cluster's topology, the same file on every node: shard s has nodes 2s-1 and 2s.
ch_cluster_xml() {
  local n=$1
  echo "<yandex>"
  echo "  <remote_servers><sluice>"
  for shard in 1 2; do
    echo "    <shard><internal_replication>true</internal_replication>"
    for node in $((2 * shard - 1)) $((2 * shard)); do
      echo "      <replica><host>127.0.0.1</host><port>$((CH_TCP_BASE + node - 1))</port></replica>"
    done
    echo "    </shard>"
  done
  echo "  </sluice></remote_servers>"
  echo "  <zookeeper><node><host>127.0.0.1</host><port>$ZK_PORT</port></node></zookeeper>"
  echo "  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
  # The replicated tables' paths and replica names come from these.
  echo "  <macros><shard>$(( (n + 1) / 2 ))</shard><replica>node$n</replica></macros>"
  echo "  <interserver_http_host>127.0.0.1</interserver_http_host>"
  echo "  <interserver_http_port>$((CH_INTERSERVER_BASE + n - 1))</interserver_http_port>"
  echo "</yandex>"
}

start_clickhouse() {
  local n dir
  for n in 1 2 3 4; do
    ch_up "$n" && continue
    dir="$VAR/ch-$n"
    mkdir -p "$dir/clickhouse/log" "$dir/clickhouse/data" "$dir/clickhouse/tmp" "$dir/config.d"
    sed -e "s#@VAR@#$dir#g" -e "s#@HTTP_PORT@#$((CH_HTTP_BASE + n - 1))#g" \
      -e "s#@TCP_PORT@#$((CH_TCP_BASE + n - 1))#g" "$ROOT/deploy/clickhouse-config.xml" > "$dir/config.xml"
    cp "$ROOT/deploy/clickhouse-users.xml" "$dir/clickhouse/users.xml"
    ch_cluster_xml "$n" > "$dir/config.d/cluster.xml"
    nohup clickhouse-server --config-file="$dir/config.xml" > "$dir/clickhouse/log/stdout.log" 2>&1 &
    echo $! > "$dir/pid"
  done
  for n in 1 2 3 4; do
    for _ in $(seq 1 120); do ch_up "$n" && break; sleep 0.5; done
    ch_up "$n" || { log "clickhouse node $n did not come up; see $VAR/ch-$n/clickhouse/log/"; exit 1; }
  done
  log "clickhouse cluster: 2 shards x 2 replicas on HTTP ports $CH_HTTP_BASE-$((CH_HTTP_BASE + 3))"
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
  up) need_install; start_redis; start_zookeeper; start_clickhouse ;;
  # down forgets the cluster's data: the next up creates it anew.
  down) stop_redis
        for n in 1 2 3 4; do stop_pidfile "$VAR/ch-$n/pid"; done
        stop_pidfile "$VAR/zookeeper/pid"; rm -rf "$VAR" ;;
  status) cluster_ok && echo "redis cluster: ok" || echo "redis cluster: down"
          zk_up && echo "zookeeper: up (:$ZK_PORT)" || echo "zookeeper: down"
          for n in 1 2 3 4; do ch_up "$n" && echo "clickhouse node $n: up" || echo "clickhouse node $n: down"; done ;;
  env) echo "export SLUICE_REDIS_URL=$(redis_urls)"
       echo "export SLUICE_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_BASE"
       echo "export SLUICE_CLICKHOUSE_CLUSTER=sluice" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
