"""``stevie backtest --l2`` on one capture (spot BTCUSDT, 2024-08-08): the live cores from the
book to the fill produce decisions, every fill lies inside the book it walked, and two runs
write byte-identical ``decisions.parquet`` (and identical summary metrics)."""

from __future__ import annotations

import hashlib
import json
import math

import pyarrow.parquet as pq
from rich.console import Console

from stevie.backtest.l2 import L2Command, run_l2_command
from tests.helpers.capture import SAMPLES


def _run(tmp, name: str) -> tuple[str, dict]:
    cmd = L2Command(SAMPLES, ["BTCUSDT"], ["binance"], 7, tmp / name, "", decision_interval_s=5.0)
    run_l2_command(cmd, Console(quiet=True))
    out = tmp / name
    assert {p.name for p in out.iterdir()} == {"decisions.parquet", "summary.json", "report.html"}
    return hashlib.sha256((out / "decisions.parquet").read_bytes()).hexdigest(), json.loads(
        (out / "summary.json").read_text()
    )


def test_l2_one_capture_decides_fills_in_the_book_and_is_deterministic(tmp_path):
    h1, s1 = _run(tmp_path, "a")
    h2, s2 = _run(tmp_path, "b")
    assert h1 == h2 and s1["metrics"] == s2["metrics"] and s1["runId"] == s2["runId"]
    assert s1["mode"] == "l2" and list(s1["data"]["captures"]) == ["binance:BTCUSDT:l2_2024-08-08T2354Z"]
    t = pq.read_table(tmp_path / "a" / "decisions.parquet").to_pydict()
    n = len(t["ts_event_ns"])
    assert n > 50 and s1["metrics"]["decisions"] == n
    for c in ("ts_event_ns", "symbol", "policy_id", "propensity", "signal", "target_size", "fill_price", "cost_bps"):
        assert c in t
    assert {"ctx_obi", "ctx_ti", "ctx_spread_bps", "ctx_micro_vol"} <= set(t)
    assert {"shadow_p_flat", "shadow_p_obi_momentum", "shadow_p_micro_reversion"} <= set(t)
    assert t["ts_event_ns"] == sorted(t["ts_event_ns"])
    # decisions every 5 s of event time at least (the clock is the features' event time)
    gaps = [b - a for a, b in zip(t["ts_event_ns"], t["ts_event_ns"][1:], strict=False)]
    assert min(gaps) >= 5e9
    fills = [i for i in range(n) if t["fill_price"][i] is not None and math.isfinite(t["fill_price"][i])]
    assert len(fills) >= 5
    for i in fills:
        px, best_bid, best_ask, last = (
            t["fill_price"][i],
            t["book_best_bid"][i],
            t["book_best_ask"][i],
            t["book_last_level"][i],
        )
        assert best_bid < best_ask
        if t["order_size"][i] > 0:  # a buy walks the asks: best ask ≤ average price ≤ deepest ask walked
            assert best_ask - 1e-9 <= px <= last + 1e-9
        else:
            assert last - 1e-9 <= px <= best_bid + 1e-9
        assert t["cost_bps"][i] >= -1e-9  # a taker fill never beats the mid
    # rewards were fed back to the router (the bandit learned from the run)
    assert s1["metrics"]["router_updates"] > 0
    assert sum(1 for r in t["reward"] if r is not None and math.isfinite(r)) == s1["metrics"]["router_updates"]


def test_l2_cli_bad_selection_is_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from stevie.runtime.cli import app

    r = CliRunner().invoke(app, ["backtest", "--l2", "--symbols", "NOPEUSDT", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2, r.output
    assert "no L2 capture" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
