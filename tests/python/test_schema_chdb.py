"""Every ClickHouse migration loads on a current engine (chdb-core, ClickHouse 26.x in-process),
as it does on Debian's 18.16 (which the Rust integration tests run against), and a click row
round-trips through the table."""
import pathlib
import re

import chdb.session

ROOT = pathlib.Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "clickhouse").glob("[0-9][0-9][0-9][0-9]_*.sql"))


def statements(sql: str, on_cluster: str = "") -> list[str]:
    """The same splitting as src/store/clickhouse.rs `statements`."""
    text = "\n".join(l for l in sql.splitlines() if not l.lstrip().startswith("--"))
    parts = [p.strip().rstrip(";").strip() for p in text.split(";\n")]
    return [p.replace("{on_cluster}", on_cluster) for p in parts if p]


def test_every_migration_is_embedded_in_the_binary():
    source = (ROOT / "src/store/clickhouse.rs").read_text()
    embedded = re.findall(r'include_str!\("\.\./\.\./clickhouse/([^"]+)"\)', source)
    assert embedded == [m.name for m in MIGRATIONS]


def test_migrations_load_and_clicks_round_trip(tmp_path):
    s = chdb.session.Session(str(tmp_path / "chdb"))
    s.query("CREATE DATABASE IF NOT EXISTS sluice")
    s.query("USE sluice")
    assert MIGRATIONS, "no migrations found"
    for path in MIGRATIONS:
        for stmt in statements(path.read_text()):
            s.query(stmt)
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
