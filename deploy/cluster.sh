#!/usr/bin/env bash
# A local cluster for Sluice on one box, on project-local ports, data under var/cluster/:
# a Redis Cluster of 3 masters and 3 replicas, ClickHouse 18.16 as 2 shards x 2 replicas
# (cluster `sluice`) with one ZooKeeper 3.8, and 3 Sluice nodes behind HAProxy 2.6.
# Usage: deploy/cluster.sh up|stores|nodes|stop-nodes|down|status|env
#   up          the stores, then the nodes (a release build of Sluice)
#   stores      the Redis Cluster, ZooKeeper and ClickHouse only (what the tests start)
#   nodes       any node not running, and HAProxy, with the SLUICE_* settings in the
#               environment on top of the cluster's (SLUICE_BIN: the binary to run)
#   stop-nodes  the nodes (SIGTERM: each drains its clicks) and HAProxy
# Idempotent; installs packages with apt when missing.
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
LB_PORT="${SLUICE_CLUSTER_PORT:-18300}"                 # HAProxy; Sluice node n on LB_PORT+n
NODES=(1 2 3)

log() { echo "cluster: $*" >&2; }

need_install() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server clickhouse-client)
  [ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
  command -v haproxy >/dev/null || missing+=(haproxy)
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
  # A test run queues thousands of distributed DDL tasks (a database per test). Past
  # max_tasks_in_queue (1,000 by default) every node starts deleting old tasks while others may
  # still process them, a race 18.16's DDL worker dies of: keep every task of a run instead.
  echo "  <distributed_ddl><path>/clickhouse/task_queue/ddl</path><max_tasks_in_queue>1000000</max_tasks_in_queue><task_max_lifetime>604800</task_max_lifetime></distributed_ddl>"
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

node_ready() { curl -fsS "http://127.0.0.1:$((LB_PORT + $1))/readyz" >/dev/null 2>&1; }
lb_up() { curl -fsS "http://127.0.0.1:$LB_PORT/healthz" >/dev/null 2>&1; }

# Round robin over the nodes ready on /readyz (checked every 500 ms: out after 2 failures, back
# after 2 successes). /readyz fails on every node at once while ClickHouse or Redis is away,
# and redirects do not need either: then the nodes merely alive (/healthz) take the traffic.
# A request whose connection failed is retried on another node; one a node may have seen is
# not (it may have recorded it).
haproxy_cfg() {
  cat <<CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 3
  retry-on conn-failure
  option redispatch 1
  default-server inter 500ms fall 2 rise 2
frontend sluice
  bind 127.0.0.1:$LB_PORT
  option forwardfor
  use_backend ready if { nbsrv(ready) gt 0 }
  default_backend alive
CFG
  local backend check
  for backend in ready alive; do
    check=/readyz; [ "$backend" = alive ] && check=/healthz
    echo "backend $backend"
    echo "  balance roundrobin"
    echo "  option httpchk GET $check"
    echo "  http-check expect status 200"
    for n in "${NODES[@]}"; do
      echo "  server node$n 127.0.0.1:$((LB_PORT + n)) check"
    done
  done
}

start_nodes() {
  local bin="${SLUICE_BIN:-}" n
  if [ -z "$bin" ]; then
    log "building sluice (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    bin="$ROOT/target/release/sluice"
  fi
  # The cluster's stores, unless the environment names others; HAProxy is the proxy whose
  # X-Forwarded-For the nodes believe.
  export SLUICE_REDIS_URL="${SLUICE_REDIS_URL:-$(redis_urls)}"
  export SLUICE_CLICKHOUSE_URL="${SLUICE_CLICKHOUSE_URL:-http://127.0.0.1:$CH_HTTP_BASE}"
  export SLUICE_CLICKHOUSE_CLUSTER="${SLUICE_CLICKHOUSE_CLUSTER-sluice}"
  export SLUICE_TRUSTED_PROXIES="${SLUICE_TRUSTED_PROXIES:-127.0.0.1}"
  # Once, before the nodes: each would otherwise race the others through the migrations.
  RUST_LOG=warn "$bin" migrate >/dev/null
  for n in "${NODES[@]}"; do
    node_ready "$n" && continue
    mkdir -p "$VAR/sluice-$n"
    # Each node its own data directory: its spill and write-ahead log are its own.
    SLUICE_LISTEN="127.0.0.1:$((LB_PORT + n))" SLUICE_DATA_DIR="$VAR/sluice-$n/data" \
      nohup "$bin" serve >> "$VAR/sluice-$n/sluice.log" 2>&1 &
    echo $! > "$VAR/sluice-$n/pid"
  done
  for n in "${NODES[@]}"; do
    for _ in $(seq 1 200); do node_ready "$n" && break; sleep 0.1; done
    node_ready "$n" || { log "sluice node $n did not become ready; see $VAR/sluice-$n/sluice.log"; exit 1; }
  done
  if ! lb_up; then
    haproxy_cfg > "$VAR/haproxy.cfg"
    haproxy -D -f "$VAR/haproxy.cfg" -p "$VAR/haproxy.pid"
  fi
  # HAProxy starts with every server up, then checks them.
  for _ in $(seq 1 50); do lb_up && break; sleep 0.1; done
  lb_up || { log "haproxy did not come up on $LB_PORT"; exit 1; }
  log "sluice: nodes on $((LB_PORT + 1))-$((LB_PORT + ${#NODES[@]})) behind HAProxy on http://127.0.0.1:$LB_PORT"
}

stop_nodes() {
  local n
  stop_pidfile "$VAR/haproxy.pid"
  for n in "${NODES[@]}"; do stop_pidfile "$VAR/sluice-$n/pid"; done
}

case "${1:-up}" in
  up) need_install; start_redis; start_zookeeper; start_clickhouse; start_nodes ;;
  stores) need_install; start_redis; start_zookeeper; start_clickhouse ;;
  nodes) need_install; start_nodes ;;
  stop-nodes) stop_nodes ;;
  # down forgets the cluster's data: the next up creates it anew.
  down) stop_nodes; stop_redis
        for n in 1 2 3 4; do stop_pidfile "$VAR/ch-$n/pid"; done
        stop_pidfile "$VAR/zookeeper/pid"; rm -rf "$VAR" ;;
  status) cluster_ok && echo "redis cluster: ok" || echo "redis cluster: down"
          zk_up && echo "zookeeper: up (:$ZK_PORT)" || echo "zookeeper: down"
          for n in 1 2 3 4; do ch_up "$n" && echo "clickhouse node $n: up" || echo "clickhouse node $n: down"; done
          for n in "${NODES[@]}"; do node_ready "$n" && echo "sluice node $n: ready" || echo "sluice node $n: down"; done
          lb_up && echo "haproxy: up (http://127.0.0.1:$LB_PORT)" || echo "haproxy: down" ;;
  env) echo "export SLUICE_REDIS_URL=$(redis_urls)"
       echo "export SLUICE_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_BASE"
       echo "export SLUICE_CLICKHOUSE_CLUSTER=sluice"
       echo "# Sluice, behind HAProxy: http://127.0.0.1:$LB_PORT" ;;
  *) echo "usage: $0 up|stores|nodes|stop-nodes|down|status|env" >&2; exit 2 ;;
esac
