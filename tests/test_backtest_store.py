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


@pytest.mark.integration
def test_quarantined_candles_land_with_the_run(pg_server, tmp_path):
    """A spiked candle (strict mode) is a ``quarantine`` row with source ``backtest`` in the
    run's transaction: its reason, the robust z in the detail, the candle and its replacement;
    a re-run replaces it (one row, not two)."""
    import json

    import numpy as np

    from stevie.backtest.data import discover, load_klines

    url = pg_server.url
    k = load_klines(discover(SAMPLES / "binance/usdm/klines_1m"), ["ETHUSDT"], 1746489600000, 1746662400000)["ETHUSDT"]
    c = k.close.copy()
    c[2000] *= 1.08  # ≫ 25 robust σ of a 1-minute ETH return, and back at the next close
    h = np.maximum(k.high, c)
    rows = ["open_time_ms,open,high,low,close,volume"]
    rows += [
        f"{t},{a!r},{b!r},{d!r},{e!r},{f!r}"
        for t, a, b, d, e, f in zip(
            k.open_time_ms.tolist(),
            k.open.tolist(),
            h.tolist(),
            k.low.tolist(),
            c.tolist(),
            k.volume.tolist(),
            strict=True,
        )
    ]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ETHUSDT.csv").write_text("\n".join(rows) + "\n")
    args = ["backtest", "--data", str(tmp_path / "d"), "--workers", "1", "--database-url", url]

    async def quarantined(rid: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(
                "SELECT reason, detail, item, replaced, replacement FROM quarantine WHERE source = 'backtest'"
                " AND detail LIKE $1",
                f"run {rid}: %",
            )
        finally:
            await conn.close()

    for out in ("a", "b"):
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / out)])
        assert r.exit_code == 0, r.output
        rid = json.loads((tmp_path / out / "summary.json").read_text())["runId"]
        (row,) = asyncio.run(quarantined(rid))
        assert row["reason"] == "spike" and "robust z of the return in +" in row["detail"] and row["replaced"]
        assert json.loads(row["item"])["close"] == c[2000] and json.loads(row["replacement"])["close"] == c[1999]


def test_records_carry_each_decisions_venue_and_forecast():
    """An L2 run's ``venue`` column lands in ``backtest_decisions.venue`` (009; a bar run has
    none: ''), ``score`` − ``exploration_bonus`` in ``mean_bps`` and ``width`` in ``width_bps``."""
    from stevie.backtest import store

    one = {k: [1.0] for k in store._FIXED} | {"symbol": ["BTCUSDT"], "policy_id": ["p_flat"], "reason": ["ok"]}
    one |= {"ts_event_ns": [5_000_000_000], "blocked": [False], "ctx_obi": [0.1], "shadow_p_flat": [0]}

    def row(cols: dict) -> dict:
        (rec,) = store.records("r", cols)
        assert len(rec) == len(store.COLUMNS)
        return dict(zip(store.COLUMNS, rec, strict=True))

    assert (row(one)["venue"], row(one)["mean_bps"], row(one)["width_bps"]) == ("", None, None)
    full = row(one | {"venue": ["binance-usdm"], "score": [3.0], "exploration_bonus": [0.5], "width": [2.0]})
    assert (full["venue"], full["mean_bps"], full["width_bps"]) == ("binance-usdm", 2.5, 2.0)


@pytest.mark.integration
def test_evidence_reads_a_stored_runs_forecasts_and_calibrates_them(pg_server, tmp_path):
    """A stored bar run carries the router's posterior mean and width per decision (009), read
    back at the run's horizon; the calibration over them has forecasts (n > 0), which it could
    not have before (width 0 for every row)."""
    from stevie.quant.calibration import NudgeBounds
    from stevie.services.evidence import core
    from stevie.store import evidence as repo

    url = pg_server.url
    r = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "a"), "--database-url", url])
    assert r.exit_code == 0, r.output
    table = pq.read_table(tmp_path / "a" / "decisions.parquet").to_pydict()

    async def read():
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            return await repo.backtest_decisions(pool, None, 100_000)
        finally:
            await pool.close()

    got = asyncio.run(read())
    assert got is not None
    _, horizon_s, rows = got
    assert horizon_s == 5 * 60.0  # the bar run's decision interval
    assert len(rows) == len(table["score"]) and all(d.venue == "" for d in rows)
    want = [s - b for s, b in zip(table["score"], table["exploration_bonus"], strict=True)]
    assert [d.mean_bps for d in rows] == pytest.approx(want)
    assert [d.width_bps for d in rows] == pytest.approx(table["width"])
    logged = core.backtest_outcomes(rows, horizon_s)
    cal = core.calibration_report(logged, 30 * 86_400.0, NudgeBounds(), 10, 10)
    assert cal.n > 0 and cal.ece is not None and sum(b.count for b in cal.bins) == cal.n
