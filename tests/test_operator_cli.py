"""``stevie status`` / ``tail`` / ``report`` (pure parts and the commands without a stack) and
the dashboard's PnL curve."""

from __future__ import annotations

import os
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from stevie.contracts import BookState, BookTopK, encode
from stevie.contracts.rpc import BudgetStatus, GuardsState, ProviderBudget
from stevie.runtime.cli import app
from stevie.services.gateway.api import (
    DbHealth,
    ExecHealth,
    HealthResponse,
    L2Response,
    NatsHealth,
    RouterHealth,
    ServiceHealth,
    WsHealth,
)
from stevie.services.gateway.cli import StatusView, describe_message, find_report, tables, tagged_types
from stevie.services.gateway.dashboard import AuditRow, pnl_curve

runner = CliRunner()


def test_find_report_latest_prefix_and_errors(tmp_path):
    for i, name in enumerate(["20240101-aaa", "20240102-bbb", "20240102-bbc"]):
        d = tmp_path / name
        d.mkdir()
        (d / "report.html").write_text("<html></html>")
        os.utime(d / "report.html", (time.time() + i, time.time() + i))
    (tmp_path / "no-report").mkdir()
    assert find_report(tmp_path, None).parent.name == "20240102-bbc"
    assert find_report(tmp_path, "20240101").parent.name == "20240101-aaa"
    assert find_report(tmp_path, "20240102-bbb").parent.name == "20240102-bbb"
    with pytest.raises(FileNotFoundError, match="more than one"):
        find_report(tmp_path, "20240102")
    with pytest.raises(FileNotFoundError, match="no run"):
        find_report(tmp_path, "nope")
    with pytest.raises(FileNotFoundError, match="no backtest reports"):
        find_report(tmp_path / "empty", None)
    r = runner.invoke(app, ["report", "--root", str(tmp_path)])
    assert r.exit_code == 0 and r.stdout.strip().endswith("20240102-bbc/report.html")
    assert runner.invoke(app, ["report", "x", "--root", str(tmp_path)]).exit_code == 1


def test_describe_message_decodes_by_tag():
    types = tagged_types()
    assert {"BookTopK", "Audit", "Heartbeat", "VenueScore"} <= set(types)
    top = BookTopK(
        venue="binance", symbol="BTCUSDT", seq=7, state=BookState.LIVE, bids=[(1.0, 2.0)], asks=[(1.5, 1.0)],
        ts_event_ns=1, ts_init_ns=2,
    )  # fmt: skip
    name, body = describe_message(encode(top), types)
    assert name == "BookTopK" and '"seq":7' in body
    assert describe_message(b'{"type":"BookTopK","venue":1}', types)[0] == "invalid BookTopK"
    assert describe_message(b'{"type":"Unknown","x":1}', types) == ("raw", '{"type":"Unknown","x":1}')
    assert describe_message(b"\xff not json", types)[0] == "undecodable"


def test_status_tables_render():
    health = HealthResponse(
        "degraded",
        {"gateway": ServiceHealth(True, 12.0, 42, "python"), "router": ServiceHealth(False, None, None, "")},
        DbHealth(1.5),
        NatsHealth(True),
        WsHealth(2),
        RouterHealth(3),
        ExecHealth(0),
        1_700_000_000_000,
    )
    view = StatusView(
        health,
        [
            L2Response("binance", "BTCUSDT", [(100.0, 1.0)], [(100.5, 2.0)], 9, 1, "LIVE"),
            L2Response("binance-usdm", "BTCUSDT", [], [], 3, 1, "SYNCING"),
        ],
        None,
        GuardsState({}, {}, {}, {"tripped": True}, True, {}),
        BudgetStatus([ProviderBudget("binance", 3, 10, 6000, 5990, 0.0, 0, 0, 0)]),
        None,
    )
    con = Console(record=True, width=200)
    for t in tables(view):
        con.print(t)
    text = con.export_text()
    for want in ("Stevie — degraded", "router", "down", "SYNCING", "100.50", "ON", "tripped", "5990"):
        assert want in text, want


def test_status_exits_1_when_the_gateway_is_not_there(tmp_path):
    r = runner.invoke(app, ["status", "--url", "http://127.0.0.1:9", "--state-dir", str(tmp_path)])
    assert r.exit_code == 1


def test_pnl_curve_by_hand():
    rows = [
        AuditRow("BTC", 3, 101.0, 1, 1.0, 100.5, 0.1),  # buy 1 @ 100.5 (fee 0.1), mark 101
        AuditRow("BTC", 1, 100.0),  # earlier decision without a fill: mark 100, PnL 0
        AuditRow("ETH", 4, 10.0, -1, 2.0, 10.0, 0.02),  # short 2 @ 10
        AuditRow("BTC", 5, 102.0),  # mark BTC 102
        AuditRow("ETH", 6, 9.0),  # mark ETH 9
    ]
    pts = pnl_curve(rows)
    assert [p.ts for p in pts] == [0, 0, 0, 0, 0]  # ns → ms
    want = [0.0, 101 - 100.5 - 0.1, 0.4 - 0.02, 0.38 + 1.0, 1.38 + 2.0]
    assert [p.pnlQuote for p in pts] == pytest.approx(want)
    assert pts[-1].fills == 2 and pts[-1].feesQuote == pytest.approx(0.12)
    many = [AuditRow("BTC", i, 100.0 + i) for i in range(2000)]
    assert len(pnl_curve(many, max_points=100)) == 100
