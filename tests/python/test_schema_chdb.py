"""Every ClickHouse migration loads on a current engine (chdb-core, ClickHouse 26.x in-process),
as it does on Debian's 18.16 (which the Rust integration tests run against), on one server and
in its cluster form; a click row round-trips through the table; and every statement Sluice sent
to 18.16 during the Rust suites runs on 26."""
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.request

import chdb.session
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "clickhouse").glob("[0-9][0-9][0-9][0-9]_*.sql"))


def statements(sql: str, on_cluster: str = "") -> list[str]:
    """The same splitting as src/store/clickhouse.rs `statements`."""
    text = "\n".join(l for l in sql.splitlines() if not l.lstrip().startswith("--"))
    parts = [p.strip().rstrip(";").strip() for p in text.split(";\n")]
    return [p.replace("{on_cluster}", on_cluster) for p in parts if p]


def migrated(tmp_path):
    """A chdb session with every migration applied to database `sluice`."""
    s = chdb.session.Session(str(tmp_path / "chdb"))
    s.query("CREATE DATABASE IF NOT EXISTS sluice")
    s.query("USE sluice")
    for path in MIGRATIONS:
        for stmt in statements(path.read_text()):
            s.query(stmt)
    return s


def test_every_migration_is_embedded_in_the_binary():
    source = (ROOT / "src/store/clickhouse.rs").read_text()
    embedded = re.findall(r'include_str!\("\.\./\.\./clickhouse/([^"]+)"\)', source)
    assert embedded == [m.name for m in MIGRATIONS]


def test_migrations_load_and_clicks_round_trip(tmp_path):
    assert MIGRATIONS, "no migrations found"
    s = migrated(tmp_path)
    s.query(
        "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, ip_hash, country, is_bot, batch_id) "
        "VALUES ('2026-11-22', 1795305600123, unhex('0190a1b2c3d47e5f8a9b0c1d2e3f4a5b'), 't_1', 'promo', 'spring', 42, 'GB', 0, 7)"
    )
    out = str(s.query(
        "SELECT link_id, campaign, country, hex(click_id), count() FROM clicks "
        "WHERE date >= toDate('2026-11-01') AND batch_id = 7 GROUP BY link_id, campaign, country, click_id",
        "TSV",
    ))
    assert out.strip() == "promo\tspring\tGB\t0190A1B2C3D47E5F8A9B0C1D2E3F4A5B\t1"
    s.close()


def test_the_flushers_native_block_inserts(tmp_path):
    """The Native block Sluice sends for clicks (written by the Rust unit test
    `columns_make_a_native_block`, which deploy/test.sh runs first) inserts into the clicks
    table of a current server, with its materialized view."""
    block = ROOT / "var/test/clicks.native"
    assert block.exists(), "run `cargo test --lib columns_make_a_native_block` first"
    s = migrated(tmp_path)
    s.query(f"INSERT INTO clicks SELECT * FROM file('{block}', Native)")
    out = str(s.query(
        "SELECT toString(date), hex(click_id), campaign, sub1, sub5, country, length(referrer), "
        "is_preview, batch_id FROM clicks ORDER BY ts_ms",
        "TSV",
    ))
    assert out.strip().splitlines() == [
        "1970-01-04\t01010101010101010101010101010101\tspring\ta\te\tGB\t0\t1\t7",
        "2026-11-22\tABABABABABABABABABABABABABABABAB\tspring\ta\te\tGB\t200\t0\t7",
    ]
    stats = str(s.query("SELECT sumMerge(clicks), sumMerge(preview_clicks) FROM stats_clicks", "TSV"))
    assert stats.strip() == "1\t1"
    s.close()


# The shapes of the stats queries in src/stats/query.rs (keys, scope, re-aggregation), with
# the tenant and link bound the way the Rust client binds them.
SCOPE = "tenant_id = 't_1' AND date >= toDate('2026-11-01') AND date <= toDate('2026-11-30')"
GROUPINGS = {
    "total": ("'' AS k1, '' AS k2", ""),
    "campaign": ("campaign AS k1, '' AS k2", "k1, k2, "),
    "source": ("source AS k1, medium AS k2", "k1, k2, "),
    "day": ("toString(date) AS k1, '' AS k2", "k1, k2, "),
}


def stats_queries(keys: str, group_by: str, scope: str) -> list[str]:
    clicks_group = f"GROUP BY {group_by.rstrip(', ')}" if group_by else ""
    return [
        f"SELECT {keys}, sumMerge(clicks) AS clicks, uniqHLL12IfMerge(unique_clicks) AS unique_clicks, "
        f"sumMerge(bot_clicks) AS bot_clicks, sumMerge(preview_clicks) AS preview_clicks "
        f"FROM stats_clicks WHERE {scope} {clicks_group}",
        f"SELECT {keys}, match_type AS name, sum(installs) AS n FROM stats_installs "
        f"WHERE {scope} GROUP BY {group_by}match_type",
        f"SELECT {keys}, event_name AS name, sum(events) AS n FROM stats_events "
        f"WHERE {scope} GROUP BY {group_by}event_name",
        f"SELECT {keys}, type AS kind, currency, sum(conversions) AS n, sum(sum_cents) AS sum_cents "
        f"FROM stats_conversions WHERE {scope} GROUP BY {group_by}type, currency",
    ]


def test_views_feed_every_stats_query(tmp_path):
    s = migrated(tmp_path)
    # Two inserts, so the aggregates sit in separate parts and must be merged by the query.
    for ip in (1, 2):
        s.query(
            "INSERT INTO clicks (date, ts_ms, tenant_id, link_id, campaign, source, medium, ip_hash, is_bot, is_preview) VALUES "
            f"('2026-11-22', 1, 't_1', 'l1', 'spring', 'fb', 'cpc', {ip}, 0, 0), "
            f"('2026-11-22', 2, 't_1', 'l1', 'spring', 'fb', 'cpc', {ip}, 0, 0), "
            "('2026-11-22', 3, 't_1', 'l1', 'spring', 'fb', 'cpc', 9, 1, 0), "
            "('2026-11-21', 4, 't_2', 'l9', 'other', 'fb', 'cpc', 9, 0, 0)"
        )
    s.query(
        "INSERT INTO installs (date, ts_ms, tenant_id, install_id, match_type, link_id, campaign, source, medium) VALUES "
        "('2026-11-22', 1, 't_1', 'i1', 'click_id', 'l1', 'spring', 'fb', 'cpc'), "
        "('2026-11-22', 1, 't_1', 'i2', 'organic', '', '', '', '')"
    )
    s.query(
        "INSERT INTO conversions (date, ts_ms, tenant_id, type, amount_cents, currency, attributed, link_id, campaign) VALUES "
        "('2026-11-22', 1, 't_1', 'purchase', 1000, 'USD', 1, 'l1', 'spring'), "
        "('2026-11-22', 1, 't_1', 'purchase', -300, 'USD', 1, 'l1', 'spring'), "
        "('2026-11-22', 1, 't_1', 'purchase', 999, 'USD', 0, '', '')"
    )
    s.query(
        "INSERT INTO events (date, ts_ms, tenant_id, event_name, link_id, campaign) VALUES "
        "('2026-11-22', 1, 't_1', 'level_up', 'l1', 'spring')"
    )
    for name, (keys, group_by) in GROUPINGS.items():
        out = [str(s.query(q, "TSV")).strip("\n") for q in stats_queries(keys, group_by, SCOPE)]
        key = {"total": "\t", "campaign": "spring\t", "source": "fb\tcpc", "day": "2026-11-22\t"}[name]
        assert out[0] == f"{key}\t4\t2\t2\t0", (name, out[0])
        assert sorted(out[1].splitlines()) == sorted(
            [f"{key}\tclick_id\t1"] + ([f"\t\torganic\t1"] if name in ("campaign", "source") else [f"{key}\torganic\t1"])
        ), (name, out[1])
        # Events and conversions here carry no source/medium.
        conv_key = key if name != "source" else "\t"
        assert out[2] == f"{conv_key}\tlevel_up\t1", (name, out[2])
        assert out[3] == f"{conv_key}\tpurchase\tUSD\t2\t700", (name, out[3])
    # The per-link scope.
    link = [str(s.query(q, "TSV")).strip("\n") for q in stats_queries("'' AS k1, '' AS k2", "", SCOPE + " AND link_id = 'l1'")]
    assert link[0] == "\t\t4\t2\t2\t0"
    s.close()


def test_click_facts_is_filled_on_migration_and_by_inserts(tmp_path):
    """0006 and 0007: clicks stored before either are copied once (through clicks_by_id, which
    0007 drops); later inserts follow through the materialized view; bots and previews are left
    out; the lookup Sluice issues finds a click by key, with its tenant and facts in their
    order."""
    s = chdb.session.Session(str(tmp_path / "chdb"))
    s.query("CREATE DATABASE IF NOT EXISTS sluice")
    s.query("USE sluice")
    insert = (
        "INSERT INTO clicks (date, ts_ms, click_id, tenant_id, link_id, campaign, sub5, country, is_bot, is_preview) "
        "VALUES ('2026-11-22', 1795305600123, unhex('{id}'), 't_1', 'promo', 'spring', 's5', 'GB', {bot}, {preview})"
    )

    def apply(migrations):
        for path in migrations:
            for stmt in statements(path.read_text()):
                s.query(stmt)

    apply([m for m in MIGRATIONS if m.name < "0006"])
    s.query(insert.format(id="01" * 16, bot=0, preview=0))
    s.query(insert.format(id="02" * 16, bot=1, preview=0))
    apply([m for m in MIGRATIONS if "0006" <= m.name < "0007"])
    s.query(insert.format(id="05" * 16, bot=0, preview=0))
    apply([m for m in MIGRATIONS if m.name >= "0007"])
    s.query(insert.format(id="03" * 16, bot=0, preview=0))
    s.query(insert.format(id="04" * 16, bot=0, preview=1))
    out = str(s.query("SELECT hex(click_id) FROM click_facts ORDER BY click_id", "TSV")).split()
    assert out == ["01" * 16, "03" * 16, "05" * 16]
    assert "clicks_by_id" not in str(s.query("SHOW TABLES", "TSV")).split()
    # As src/store/clickhouse.rs `click_facts` issues it; the facts string is the tenant and
    # the facts, each length-prefixed (what its `length_prefixed` reads).
    found = str(s.query(
        f"SELECT hex(click_id), facts FROM click_facts WHERE click_id IN (unhex('{'01' * 16}'), unhex('{'04' * 16}'))",
        "TSV",
    )).strip()
    assert found == f"{'01' * 16}\t3:t_15:promo6:spring0:0:0:0:0:0:0:2:s52:GB"
    s.close()


# Every statement Sluice sent to the local servers, replayed on ClickHouse 26. The schema
# comes from the binary itself (`sluice migrate --print`, in each mode); the rest from the
# query logs of the single server and of the cluster's first node, where the Rust suites
# (run first by deploy/test.sh) sent their stats, results, click lookups and retention.
BIN = ROOT / "target/debug/sluice"
LOCAL_CLUSTER = """<clickhouse><tcp_port>19999</tcp_port><remote_servers><sluice><shard>
<replica><host>localhost</host><port>19999</port></replica></shard></sluice></remote_servers></clickhouse>"""


def schema(cluster: str) -> list[str]:
    assert BIN.exists(), "build sluice first (`cargo build`; deploy/test.sh runs cargo test first)"
    env = dict(os.environ, SLUICE_CLICKHOUSE_DATABASE="sluice", SLUICE_CLICKHOUSE_CLUSTER=cluster)
    out = subprocess.run([BIN, "migrate", "--print"], env=env, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def local_form(statement: str) -> str:
    """A cluster-form statement as chdb can run it: one process has no ZooKeeper and no
    distributed DDL, so replication and ON CLUSTER go; the Distributed tables and the views
    between `_local` tables stay, over a one-shard cluster of this process. Replication
    itself is tested on 18.16 with ZooKeeper (tests/cluster)."""
    statement = statement.replace(" ON CLUSTER sluice", "")
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(, )?", r"\1(", statement)


def sent(url: str, since: int, schema: list[str]) -> list[str]:
    """One statement of each shape Sluice sent to `url` since `since` (unix time) and the
    server ran, its test database renamed `sluice`, other than the schema's own."""
    def post(sql: str) -> str:
        request = urllib.request.Request(url, sql.encode(), {"Content-Type": "text/plain"})
        with urllib.request.urlopen(request) as r:
            return r.read().decode()
    post("SYSTEM FLUSH LOGS")
    rows = post(
        "SELECT query FROM system.query_log WHERE type = 2 AND is_initial_query "
        f"AND http_user_agent LIKE 'clickhouse-rs%' AND event_time >= toDateTime({since}) "
        "FORMAT JSONEachRow"
    )
    shapes = {}
    for line in rows.splitlines():
        query = re.sub(r"sluice_test_\w+", "sluice", json.loads(line)["query"])
        if query.startswith(("CREATE ", "DROP ")) or query in schema:
            continue  # the schema, run from the binary's own
        shape = re.sub(r"'(?:[^'\\]|\\.)*'|\b\d+\b", "?", query)
        shape = re.sub(r"\(\?(?:, \?)*\)", "(?)", shape)
        shapes.setdefault(shape, query)
    return list(shapes.values())


def runnable(query: str) -> str:
    """An insert whose rows travel in the body (RowBinary, Native, VALUES) as a check of its
    columns."""
    m = re.fullmatch(r"INSERT INTO (\S+) \(([^)]*)\) (?:FORMAT \w+|VALUES)", query.strip())
    return f"SELECT {m[2]} FROM {m[1]} LIMIT 0" if m else query


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_every_statement_sluice_sent_runs_on_26(tmp_path, mode):
    since = int(os.environ.get("SLUICE_TEST_SINCE", time.time() - 3600))
    if mode == "single":
        url = os.environ.get("SLUICE_TEST_CLICKHOUSE_URL", "http://127.0.0.1:18123")
        issued = schema("")
        statements, path = issued, str(tmp_path / "chdb")
    else:
        url = os.environ.get("SLUICE_TEST_CLUSTER_CLICKHOUSE_URL", "http://127.0.0.1:18201")
        issued = schema("sluice")
        statements = [local_form(s) for s in issued]
        (tmp_path / "config.xml").write_text(LOCAL_CLUSTER)
        path = f"{tmp_path / 'chdb'}?config-file={tmp_path / 'config.xml'}"
    queries = sent(url, since, issued)
    run = queries if mode == "single" else [local_form(q) for q in queries]
    # The families the issue names, each seen at least once.
    for family in ("FROM stats_clicks", "FROM installs", "FROM click_facts", r"system\W+parts", "ALTER TABLE"):
        assert any(re.search(family, q) for q in queries), f"no statement with {family!r} in the {mode} log"
    s = chdb.session.Session(path)
    s.query("CREATE DATABASE IF NOT EXISTS sluice")
    s.query("USE sluice")
    for statement in statements:
        s.query(statement)
    failed = []
    for query in run:
        try:
            s.query(runnable(query))
        except Exception as e:  # collect them all, then fail with the list
            failed.append(f"{query[:300]}\n  -> {str(e)[:300]}")
    s.close()
    assert not failed, f"{len(failed)} of {len(queries)} statements fail on 26:\n" + "\n".join(failed)
    print(f"{mode}: {len(statements)} schema statements and {len(queries)} statement shapes ran on 26")
