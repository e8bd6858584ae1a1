"""stevie backtest → PostgreSQL: one transaction per run (re-run replaces; a failure writes nothing)."""

from __future__ import annotations

import asyncio

import asyncpg
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from stevie.runtime.cli import app
from tests.helpers.capture import SAMPLES

ARGS = ["backtest", "--symbols", "ETHUSDT", "--start", "2025-05-06", "--end", "2025-05-08", "--workers", "1"]
ARGS += [
    "--data",
    str(SAMPLES / "binance/usdm/klines_1m"),
    "--funding",
    str(SAMPLES / "binance/usdm/funding_rate_8h.csv.gz"),
]


async def counts(url: str, run_id: str) -> tuple[int, int, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        runs = await conn.fetchval("SELECT count(*) FROM backtest_runs WHERE run_id = $1", run_id)
        n = await conn.fetchval("SELECT count(*) FROM backtest_decisions WHERE run_id = $1", run_id)
        pols = await conn.fetch("SELECT DISTINCT policy_id FROM backtest_decisions WHERE run_id = $1", run_id)
        return runs, n, sorted(r["policy_id"] for r in pols)
    finally:
        await conn.close()


@pytest.mark.integration
def test_run_and_decisions_land_in_one_transaction(pg_server, tmp_path):
    url = pg_server.url
    r = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "a"), "--database-url", url])
    assert r.exit_code == 0, r.output
    import json

    rid = json.loads((tmp_path / "a" / "summary.json").read_text())["runId"]
    rows = pq.read_table(tmp_path / "a" / "decisions.parquet").num_rows
    runs, n, pols = asyncio.run(counts(url, rid))
    assert runs == 1 and n == rows and pols
    r = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "b"), "--database-url", url])
    assert r.exit_code == 0 and asyncio.run(counts(url, rid))[:2] == (1, rows)  # replaced, not doubled


def test_unreachable_database_writes_nothing(tmp_path):
    bad = "postgresql://nobody@127.0.0.1:1/none"
    r = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "a"), "--database-url", bad])
    assert r.exit_code == 1 and "database" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a").exists()
