#!/usr/bin/env python3
"""The link catalog at an ad network's size (run through loadtest/catalog.sh, which starts the
stack and builds the release binary).

  scale N   N links created through POST /v1/links/bulk on node A: the time, Redis memory,
            node A's RSS per link (beyond the destination strings), then a second node's
            cold start (process start → /readyz 200) and its RSS per link.
  churn     with the catalog loaded: wrk on one redirect of node A for 20 s without link
            changes, then 20 s with 100 changes/s through node A's API; each change's
            propagation to node B (its redirect answers the new destination), and Redis
            CPU per change in a quiet run.

Nodes A and B stay up between the two (state in var/loadtest/catalog/); `stop` ends them.
"""
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "var/loadtest/catalog")
BIN = os.path.join(ROOT, "target/release/sluice")
PREFIX = "catalog_bench"
DB = "sluice_catalog"
PORTS = {"a": 18301, "b": 18302}


def env(node):
    e = dict(os.environ)
    e.update({
        "SLUICE_LISTEN": f"127.0.0.1:{PORTS[node]}",
        "SLUICE_DATA_DIR": os.path.join(WORK, node),
        "SLUICE_REDIS_PREFIX": PREFIX,
        "SLUICE_CLICKHOUSE_DATABASE": DB,
        "SLUICE_LIMIT_LINKS": "20000000",
        "SLUICE_RATE_LIMIT_TENANT": "1000000",
        "SLUICE_RATE_LIMIT_KEY": "1000000",
        "RUST_LOG": "warn",
    })
    return e


def redis(*args):
    url = os.environ["SLUICE_REDIS_URL"]
    port = re.search(r":(\d+)", url.split("//")[1]).group(1)
    return subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, check=True).stdout


def redis_info(field):
    return int(re.search(rf"^{field}:(\d+)", redis("INFO"), re.M).group(1))


def redis_cpu():
    info = redis("INFO", "cpu")
    return sum(float(re.search(rf"^{f}:([\d.]+)", info, re.M).group(1)) for f in ("used_cpu_user", "used_cpu_sys"))


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def request(node, method, path, body=None, key=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORTS[node], timeout=120)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def start(node):
    os.makedirs(os.path.join(WORK, node), exist_ok=True)
    log = open(os.path.join(WORK, f"{node}.log"), "a")
    started = time.monotonic()
    proc = subprocess.Popen([BIN, "serve"], env=env(node), stdout=log, stderr=log)
    while True:
        try:
            if request(node, "GET", "/readyz")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"node {node} exited; see {WORK}/{node}.log")
        time.sleep(0.05)
    with open(os.path.join(WORK, f"{node}.pid"), "w") as f:
        f.write(str(proc.pid))
    return proc.pid, time.monotonic() - started


def pid_of(node):
    with open(os.path.join(WORK, f"{node}.pid")) as f:
        return int(f.read())


def stop(node):
    try:
        os.kill(pid_of(node), signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError):
        pass


def metric(node, name):
    text = request(node, "GET", "/metrics")[1].decode()
    m = re.search(rf"^{name} ([\d.e+]+)", text, re.M)
    return float(m.group(1)) if m else 0.0


def destination(n):
    return f"https://shop{n % 1000}.example/p/{n}?c={{click_id}}&s={{sub1}}"


def scale(n):
    stop("a")
    stop("b")
    time.sleep(1)
    subprocess.run(["curl", "-fsS", os.environ["SLUICE_CLICKHOUSE_URL"] + "/", "--data-binary", f"DROP DATABASE IF EXISTS {DB}"], check=True)
    for key in redis("--scan", "--pattern", f"{PREFIX}:*").split():
        redis("UNLINK", key)
    pid_a, _ = start("a")
    tenant = json.loads(subprocess.run([BIN, "tenant", "create", "--name", "catalog"], env=env("a"), capture_output=True, text=True, check=True).stdout)
    with open(os.path.join(WORK, "tenant.json"), "w") as f:
        json.dump(tenant, f)
    time.sleep(1)
    base_rss, base_redis = rss_bytes(pid_a), redis_info("used_memory")
    chunks = range(0, n, 10_000)

    def post(first):
        links = [{"id": f"l{i:08d}", "destination": destination(i), "campaign": f"campaign{i % 1000}",
                  "source": f"source{i % 50}", "medium": "cpc"} for i in range(first, min(first + 10_000, n))]
        status, data = request("a", "POST", "/v1/links/bulk", json.dumps({"links": links}), tenant["secret_key"])
        assert status == 200 and json.loads(data)["created"] == len(links), data[:300]

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        for i, _ in enumerate(pool.map(post, chunks)):
            if i % 100 == 99:
                print(f"  {(i + 1) * 10_000:,} links after {time.monotonic() - started:.0f} s", flush=True)
    took = time.monotonic() - started
    while metric("a", "sluice_link_table_links") < n:
        time.sleep(0.2)
    dest_bytes = sum(len(destination(i)) - len("{click_id}{sub1}") for i in range(n))
    rss_a, redis_mem = rss_bytes(pid_a), redis_info("used_memory")
    print(f"created {n:,} links through the bulk API in {took:.1f} s ({n / took:,.0f} links/s)")
    print(f"Redis used_memory +{(redis_mem - base_redis) / 2**20:,.0f} MiB ({(redis_mem - base_redis) / n:.0f} B/link)")
    print(f"node A RSS {base_rss / 2**20:.0f} → {rss_a / 2**20:,.0f} MiB: {(rss_a - base_rss) / n:.0f} B/link, "
          f"{(rss_a - base_rss - dest_bytes) / n:.0f} B/link beyond the destination text ({dest_bytes / n:.0f} B/link)")
    pid_b, cold = start("b")
    rss_b = rss_bytes(pid_b)
    print(f"node B cold start with {n:,} links: {cold:.1f} s to /readyz; RSS {rss_b / 2**20:,.0f} MiB "
          f"({(rss_b - base_rss - dest_bytes) / n:.0f} B/link beyond the destination text, against node A's empty RSS)")


def wrk(seconds):
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{PORTS['a']}/l00000001"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def churn():
    with open(os.path.join(WORK, "tenant.json")) as f:
        key = json.load(f)["secret_key"]
    n = int(metric("a", "sluice_link_table_links"))
    print(f"catalog: {n:,} links")

    def changes(rate, seconds, probe, change=True):
        """`rate` changes a second through node A for `seconds`; with `probe`, each change's
        delay until node B redirects to its new destination (polled every 50 ms). With
        `change` false, the same API traffic without changes: a GET of the link on node A
        and three polls of node B 50 ms apart, for the run to compare against."""
        delays, lock = [], threading.Lock()
        started = time.monotonic()

        def one(i):
            time.sleep(max(0, started + i / rate - time.monotonic()))
            code = f"l{random.randrange(2, n):08d}"
            target = f"https://changed.example/{i}"  # no macros: the Location is exactly this
            if change:
                status, _ = request("a", "PATCH", f"/v1/links/{code}", json.dumps({"destination": target}), key)
            else:
                status, _ = request("a", "GET", f"/v1/links/{code}", None, key)
            assert status == 200
            t0 = time.monotonic()
            if not probe:
                return
            conn = http.client.HTTPConnection("127.0.0.1", PORTS["b"], timeout=10)
            for poll in range(200):
                conn.request("GET", f"/{code}")
                resp = conn.getresponse()
                resp.read()
                # This change or a later one to the same link: B has caught up past it.
                location = resp.getheader("location") or ""
                seen = location.startswith("https://changed.example/") and int(location.rsplit("/", 1)[1]) >= i
                if seen or (not change and poll == 2):
                    break
                time.sleep(0.05)
            with lock:
                delays.append(time.monotonic() - t0)

        with ThreadPoolExecutor(64) as pool:
            list(pool.map(one, range(int(rate * seconds))))
        return sorted(delays)

    def wrk_during(change):
        t = threading.Thread(target=lambda: result.update(delays=changes(100, 20, True, change)))
        t.start()
        rate = wrk(20)
        t.join()
        return rate

    result = {}
    quiet = wrk_during(False)
    busy = wrk_during(True)
    d = result["delays"]
    pct = lambda p: d[min(len(d) - 1, int(p * len(d)))] * 1000
    print(f"wrk -t1 -c64 on node A, with 100 API calls/s on A and polls of node B: {quiet:,.0f} req/s "
          f"when the calls read links, {busy:,.0f} req/s when each changes one ({busy / quiet:.2f}×)")
    print(f"propagation to node B over {len(d)} changes (polled every 50 ms): p50 {pct(0.5):.0f} ms, "
          f"p99 {pct(0.99):.0f} ms, max {d[-1] * 1000:.0f} ms")
    cpu0 = redis_cpu()
    time.sleep(10)
    idle = redis_cpu() - cpu0
    redis("CONFIG", "RESETSTAT")
    cpu0 = redis_cpu()
    changes(100, 10, False)
    busy_cpu = redis_cpu() - cpu0
    stats = redis("INFO", "commandstats")
    calls = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", stats)}
    top = sorted(calls.items(), key=lambda kv: -kv[1][1])[:8]
    print(f"Redis CPU per change (1,000 changes in 10 s, idle 10 s subtracted): {(busy_cpu - idle) / 1000 * 1e6:.0f} µs; "
          "commands by time: " + ", ".join(f"{c} {u / 1000:.1f} µs/change ({k / 1000:.1f} calls)" for c, (k, u) in top))


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    match sys.argv[1:]:
        case ["scale", n]:
            scale(int(n))
        case ["churn"]:
            churn()
        case ["stop"]:
            stop("a")
            stop("b")
        case _:
            sys.exit(__doc__)
