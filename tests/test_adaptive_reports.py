"""Alpha-PnL and risk reports on synthetic trades whose totals are computed by hand here."""

from __future__ import annotations

import math

import pytest

from stevie.quant.errors import QuantInputError
from stevie.services.adaptive.reports import (
    MidRow,
    TradeRow,
    alpha_pnl_report,
    parse_source,
    parse_window,
    risk_report,
)

S = 1_000_000_000
H = 30 * S

TRADES = [
    # BTC long: blend 0.5·1 + 0.2·(−1) = 0.3; filled 2 @ 100.05, fee 0.1
    TradeRow("t1", "v", "BTCUSDT", 0, 100.0, 1000.0, ("a", "b"), (1.0, -1.0), (0.5, 0.2), 1, 2.0, 100.05, 0.1),
    # ETH short: blend 0.5 + 0.8 = 1.3 → position clipped to 1; sold 4 @ 49.98, fee 0.2
    TradeRow("t2", "v", "ETHUSDT", 10 * S, 50.0, 1000.0, ("a", "b"), (1.0, 1.0), (0.5, 0.8), -1, 4.0, 49.98, 0.2),
    # BTC, not filled, and its horizon (t = 50 s) never closes in the data: left out
    TradeRow("t3", "v", "BTCUSDT", 20 * S, 100.5, 1000.0, ("a", "b"), (0.5, 0.0), (0.5, 0.2)),
]
MIDS = [
    MidRow("v", "BTCUSDT", 0, 100.0),
    MidRow("v", "BTCUSDT", 30 * S, 101.0),
    MidRow("v", "BTCUSDT", 45 * S, 101.2),
    MidRow("v", "ETHUSDT", 10 * S, 50.0),
    MidRow("v", "ETHUSDT", 39 * S, 49.5),  # before t2's horizon: not used
    MidRow("v", "ETHUSDT", 41 * S, 49.0),  # first mid at or after 40 s
]


def test_alpha_pnl_by_hand() -> None:
    r = alpha_pnl_report(TRADES, MIDS, H, "1d", "live")
    # t1: u = 1000·(101−100)/100 = 10, linear (no clip): φa = 5, φb = −2, blend PnL 3
    # t2: u = 1000·(49−50)/50 = −20, v(a) = −10, v(b) = −16, v(ab) = −20:
    #     φa = ½(−10 + (−20 + 16)) = −7, φb = ½(−16 + (−20 + 10)) = −13; LOO a = −4, b = −10
    assert r.trades == 2
    assert r.blendPnl == pytest.approx(3 - 20)
    by = {a.id: a for a in r.alphas}
    assert by["a"].shapleyPnl == pytest.approx(5 - 7)
    assert by["b"].shapleyPnl == pytest.approx(-2 - 13)
    assert by["a"].looPnl == pytest.approx(5 - 4)
    assert by["b"].looPnl == pytest.approx(-2 - 10)
    assert sum(a.shapleyPnl for a in r.alphas) == pytest.approx(r.blendPnl)  # efficiency
    # the fills: 1·2·(101 − 100.05) − 0.1 = 1.8 and −1·4·(49 − 49.98) − 0.2 = 3.72
    assert r.tradePnl == pytest.approx(1.8 + 3.72)
    assert [a.id for a in r.alphas] == ["a", "b"]  # best first
    assert r.fromTs == 0 and r.toTs == 10_000


def test_risk_by_hand() -> None:
    r = risk_report(TRADES, MIDS, H, "1d", "live")
    assert r.trades == 2 and r.fills == 2
    assert r.pnlQuote == pytest.approx(5.52)
    assert r.turnoverQuote == pytest.approx(2 * 100.05 + 4 * 49.98)
    assert r.turnoverPerDayQuote == pytest.approx(2 * 100.05 + 4 * 49.98)  # a one-day window
    assert r.feesQuote == pytest.approx(0.3)
    # slippage vs the arrival mid: (2·0.05 + 4·0.02) / (2·100 + 4·50) = 4.5 bps paid
    assert r.slippageBps == pytest.approx(4.5)
    r1, r2 = 1.8 / 200.1 * 1e4, 3.72 / 199.92 * 1e4
    assert r.realizedVolBps == pytest.approx(abs(r1 - r2) / math.sqrt(2))
    assert r.cvar95Bps is None  # fewer than 10 trades: no tail estimate
    assert r.bySymbol["ETHUSDT"]["pnlQuote"] == pytest.approx(3.72)


def test_cvar_with_enough_trades_and_empty_input() -> None:
    trades = [
        TradeRow(f"t{i}", "v", "X", i * S, 100.0, 1000.0, ("a",), (1.0,), (1.0,), 1, 1.0, 100.0, 0.0) for i in range(20)
    ]
    mids = [MidRow("v", "X", i * S, 100.0) for i in range(20)] + [
        MidRow("v", "X", (i + 30) * S, 100.0 + (i - 10) * 0.1) for i in range(20)
    ]
    r = risk_report(trades, mids, H, "7d", "live")
    rets = sorted((i - 10) * 0.1 / 100 * 1e4 for i in range(20))  # bps per trade
    # 95 % historical VaR of the loss −r (inverted CDF: the 19th of 20 losses), CVaR = mean tail
    losses = sorted(-x for x in rets)
    assert r.var95Bps == pytest.approx(losses[18])
    assert r.cvar95Bps == pytest.approx(losses[18] + (losses[19] - losses[18]) / (20 * 0.05))
    empty = risk_report([], [], H, "7d", "live")
    assert empty.trades == 0 and empty.realizedVolBps is None
    assert alpha_pnl_report([], [], H, "7d", "live").alphas == []


def test_window_and_source_parsing() -> None:
    assert parse_window("7d") == 7 * 86_400 * S
    assert parse_window("90m") == 90 * 60 * S
    assert parse_source("live") == ("live", "")
    assert parse_source("backtest:run-42") == ("backtest", "run-42")
    for bad in ("", "7", "d", "0d", "-1d", "7x", "1.5h"):
        with pytest.raises(QuantInputError):
            parse_window(bad)
    for bad in ("paper", "backtest:", "backtest:a b"):
        with pytest.raises(QuantInputError):
            parse_source(bad)


def test_backtest_decisions_become_trades_causally() -> None:
    from stevie.quant.alpha import AlphaRegistry
    from stevie.services.adaptive.reports import BacktestDecision, rows_from_backtest

    m = 60 * S

    def run(prices: list[float]) -> tuple[list[TradeRow], list[MidRow]]:
        ds = [
            BacktestDecision(
                k,
                k * 5 * m,
                "BTCUSDT",
                p,
                0.5 if k == 12 else 0.0,
                p * 1.0001 if k == 12 else None,
                0.02 if k == 12 else 0.0,
                {"sigmaGARCH": 0.004, "sigmaHAR": 0.002, "funding": 1e-4},
            )
            for k, p in enumerate(prices)
        ]
        return rows_from_backtest(ds, 10**18, AlphaRegistry(), 20_000.0, "run1")

    prices = [100.0 + 0.1 * k for k in range(20)]
    trades, mids = run(prices)
    assert len(trades) == 20 and len(mids) == 20 and trades[12].event_id == "run1:12"
    assert trades[12].side == 1 and trades[12].qty == 0.5 and trades[12].price == pytest.approx(101.2 * 1.0001)
    ids = trades[0].alpha_ids
    assert trades[15].signals[ids.index("a_sma_trend")] > 0  # the rising prices of the run
    # causal: changing the last price changes no earlier decision's signals
    later, _ = run([*prices[:-1], 50.0])
    assert [t.signals for t in later[:-1]] == [t.signals for t in trades[:-1]]
    r = risk_report(trades, mids, 5 * m, "7d", "backtest:run1")
    # the fill at 12 closes at the next decision's price (horizon = the decision interval)
    pnl = 0.5 * (101.3 - 101.2 * 1.0001) - 0.02
    assert r.fills == 1 and r.pnlQuote == pytest.approx(pnl)


def test_an_l2_runs_books_stay_apart_at_its_own_horizon() -> None:
    """Spot and USD-M decisions of one symbol: each trade closes on its own venue's later mid,
    and the horizon is the run's ``horizon_s`` (a bar run: its decision interval)."""
    from stevie.quant.alpha import AlphaRegistry
    from stevie.services.adaptive.reports import BacktestDecision, rows_from_backtest
    from stevie.store.evidence import run_horizon_s

    assert run_horizon_s({"horizon_s": 30.0, "decision_interval_s": 10.0}) == 30.0  # an L2 run
    assert run_horizon_s({"decision_interval_min": 15}) == 15 * 60.0  # a bar run
    assert run_horizon_s({}) == 5 * 60.0
    ctx = {"sigmaGARCH": 0.004}
    ds = [
        BacktestDecision(0, 0, "BTCUSDT", 100.0, 0.5, 100.0, 0.0, ctx, "binance"),
        BacktestDecision(1, 0, "BTCUSDT", 110.0, 0.0, None, 0.0, ctx, "binance-usdm"),
        BacktestDecision(2, 30 * S, "BTCUSDT", 111.0, 0.0, None, 0.0, ctx, "binance-usdm"),
        BacktestDecision(3, 30 * S, "BTCUSDT", 101.0, 0.0, None, 0.0, ctx, "binance"),
    ]
    trades, mids = rows_from_backtest(ds, 10**18, AlphaRegistry(), 20_000.0, "l2run")
    assert [t.venue for t in trades] == ["binance", "binance-usdm", "binance-usdm", "binance"]
    assert {(m.venue, m.mid) for m in mids} >= {("binance", 101.0), ("binance-usdm", 111.0)}
    r = risk_report(trades, mids, 30 * S, "7d", "backtest:l2run")
    assert r.fills == 1 and r.pnlQuote == pytest.approx(0.5 * (101.0 - 100.0))  # binance's mid, not usdm's
