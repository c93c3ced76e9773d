"""The click-id lookup of loadtest/click_lookup.sh on ClickHouse 26 (chdb-core, in-process):
N clicks of one tenant in one day (default 33,600,000) inserted through the migrations'
materialized view, then random clicks looked up 20 times each way — by key in click_facts
(what Sluice issues; 1, 10 and 100 ids a query) and by scanning the tenant's day in clicks
(before; 1 id).
Usage: python3 loadtest/click_lookup_chdb.py [CLICKS]   (pip install chdb-core)"""
import pathlib
import random
import sys
import tempfile
import time

import chdb.session

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/python"))
from test_schema_chdb import MIGRATIONS, statements  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 33_600_000
DAY_MS = 1_796_342_400_000  # 2026-12-04

with tempfile.TemporaryDirectory() as tmp:
    s = chdb.session.Session(tmp)
    s.query("CREATE DATABASE sluice")
    s.query("USE sluice")
    for path in MIGRATIONS:
        for stmt in statements(path.read_text()):
            s.query(stmt)
    started = time.time()
    for part in range(10):
        s.query(
            "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview) "
            f"SELECT toDate('2026-12-04'), {DAY_MS} + intDiv(number * 86400000, {N}) AS ts, "
            "unhex(concat(substring(hex(ts + 281474976710656), 3, 12), '7', substring(hex(sipHash128(toString(number))), 1, 19))), "
            "'t_lookup', concat('link', toString(number % 1000)), 'c', 's', 'm', cityHash64(number), 0, 0 "
            f"FROM numbers({part * N // 10}, {N // 10})"
        )
    print(f"inserted {N} clicks in {time.time() - started:.0f} s (ClickHouse {str(s.query('SELECT version()', 'TSV')).strip()})")
    s.query("OPTIMIZE TABLE click_facts FINAL")  # as click_lookup.sh does on 18.16
    by_key = "SELECT hex(click_id), facts FROM click_facts WHERE click_id IN (IDS) SETTINGS max_threads = 1, max_read_buffer_size = 65536"
    scan = (
        "SELECT hex(click_id), ts_ms, link_id, campaign, source, medium, partner_click_id, sub1, sub2, sub3, sub4, sub5, country "
        "FROM clicks WHERE tenant_id = 't_lookup' AND date IN (toDate('2026-12-04')) AND click_id IN (IDS) "
        "AND is_bot = 0 AND is_preview = 0 LIMIT 1 BY click_id"
    )
    for name, sql, n in [("click_facts", by_key, 1), ("click_facts", by_key, 10), ("click_facts", by_key, 100), ("clicks", scan, 1)]:
        times = []
        for _ in range(20):
            ids = str(s.query(f"SELECT hex(click_id) FROM clicks ORDER BY rand() LIMIT {n}", "TSV")).split()
            t = time.perf_counter()
            out = str(s.query(sql.replace("IDS", ",".join(f"unhex('{i}')" for i in ids)), "TSV"))
            times.append((time.perf_counter() - t) * 1000)
            assert out.count("\n") == n, (n, out[:200])
        times.sort()
        print(f"{name}, {n} ids a query: median {times[len(times) // 2]:.1f} ms, max {times[-1]:.1f} ms over {len(times)} queries")
    s.close()
