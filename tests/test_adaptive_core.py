"""adaptive core: regime from bars (seed, gaps, BOCPD flag), attribution of an audit once its
horizon has closed (efficiency, unknown tradeId), gating samples, and audit rows for reports."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.contracts import Bar, MicroFeatures
from stevie.contracts.adaptive import AlphaSignal
from stevie.contracts.rpc import Audit, Choice, FillView, GuardDecision, RouterContext, SizingSnapshot
from stevie.quant.alpha import AlphaRegistry
from stevie.services.adaptive.core import AdaptiveCore
from stevie.services.adaptive.reports import rows_from_audits
from stevie.services.adaptive.settings import AdaptiveSettings

S = 1_000_000_000
MIN = 60 * S


def _bar(sym: str, k: int, close: float, venue: str = "binance-usdm") -> Bar:
    return Bar(
        venue=venue,
        symbol=sym,
        interval_ns=MIN,
        open_time_ns=k * MIN,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1.0,
        trades=1,
        ts_event_ns=(k + 1) * MIN,
        ts_init_ns=0,
    )


def _feat(ts: int, mid: float, venue: str = "binance", sym: str = "BTCUSDT") -> MicroFeatures:
    return MicroFeatures(
        venue=venue,
        symbol=sym,
        obi=0.1,
        ti=0.0,
        spread_bps=0.1,
        micro_vol_bps=1.0,
        cancel_rate=0.0,
        mid=mid,
        ts_event_ns=ts,
        ts_init_ns=0,
    )


def _audit(event_id: str, ts: int, mid: float, alphas: list[AlphaSignal], fill: FillView | None = None) -> Audit:
    choice = Choice("p_flat", 0.0, 0.0, 1.0, 0.0, {}, [])
    sizing = SizingSnapshot("BTCUSDT", 1000.0, 0.0, 1.0, 0.0, 0.0, "none", 0.0, 0.0, 0, 0.0, ts // 1_000_000)
    window = [[(ts - (9 - i) * 100_000_000) / 1e9, 0.1, 0.0, 0.1, 1.0, 0.0, mid] for i in range(10)]
    return Audit(
        event_id=event_id,
        ts_event_ns=ts,
        ts_init_ns=0,
        venue="binance",
        symbol="BTCUSDT",
        policy_id="p_flat",
        feature_window=window,
        context=RouterContext(symbol="BTCUSDT", regime="chop"),
        choice=choice,
        sizing=sizing,
        guard=GuardDecision(False, ""),
        fill=fill,
        position_after=0.0,
        provenance="0" * 64,
        alphas=alphas,
    )


def test_regime_from_seed_and_bars_and_the_flag() -> None:
    core = AdaptiveCore(AdaptiveSettings(symbols=["BTCUSDT"], seed_bars=500))
    rng = np.random.default_rng(0)
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 400))))
    assert core.seed("BTCUSDT", [k * 60_000 for k in range(400)], closes) == 400
    st = core.state("BTCUSDT", 0)
    assert st is not None and st.label in ("chop", "bull", "bear", "high_vol") and st.bars == 400
    # a duplicate bar is ignored; a bar after a gap does not make a return across the gap
    assert core.on_bar(_bar("BTCUSDT", 399, closes[-1]), 0) is None
    before = core.regimes["BTCUSDT"].returns.t
    core.on_bar(_bar("BTCUSDT", 500, closes[-1] * 2), 0)  # gap + a price level far away
    assert core.regimes["BTCUSDT"].returns.t == before  # no return was fed
    core.on_bar(_bar("BTCUSDT", 501, closes[-1] * 2), 0)
    assert core.regimes["BTCUSDT"].returns.t == before + 1
    assert core.on_bar(_bar("BTCUSDT", 502, 1.0, venue="binance"), 0) is None  # not the bar venue
    core.enabled = False
    assert core.label("BTCUSDT") == "unknown" and core.regime_states().symbols["BTCUSDT"].label == "unknown"
    core.enabled = True
    assert core.label("BTCUSDT") == st.label or core.label("BTCUSDT") in ("chop", "bull", "bear", "high_vol")
    assert core.label("DOGEUSDT") == "unknown"


def test_attribution_after_the_horizon_only() -> None:
    core = AdaptiveCore(AdaptiveSettings(symbols=["BTCUSDT"], horizon_s=30.0))
    alphas = [AlphaSignal("a_obi", 1.0, 0.5), AlphaSignal("a_ti", -1.0, 0.2)]
    fill = FillView(1, 2.0, 2.0, 100.05, 0.1, 0.5)
    core.on_audit(_audit("t1", 10 * S, 100.0, alphas, fill))
    _, done = core.on_features(_feat(39 * S, 100.5), 0)
    assert done == []
    with pytest.raises(KeyError):
        core.attribution("latest")
    _, done = core.on_features(_feat(40 * S, 101.0), 0)
    assert [a.tradeId for a in done] == ["t1"]
    att = core.attribution("latest")
    assert att is core.attribution("t1")
    assert att.pnlPerUnit == pytest.approx(1000 * 0.01) and att.blend == pytest.approx(0.3)
    assert sum(a.shapley for a in att.alphas) == pytest.approx(att.blendPnl) == pytest.approx(3.0)
    assert att.tradePnl == pytest.approx(2 * (101.0 - 100.05) - 0.1)
    assert att.regime == "chop"
    with pytest.raises(KeyError):
        core.attribution("no-such-trade")
    reg = {a.id: a for a in core.registry_view().alphas}
    assert reg["a_obi"].trades == 1 and reg["a_obi"].shapleyPnl == pytest.approx(5.0)


def test_gating_samples_every_interval_and_resets_on_a_session_restart() -> None:
    core = AdaptiveCore(AdaptiveSettings(symbols=["BTCUSDT"], sample_interval_s=10.0, horizon_s=30.0))
    for k in range(0, 100):
        core.on_features(_feat(k * S, 100.0 + k * 0.01), 0)  # every second: 10 samples, 7 pairs closed
    ranking = {f.feature: f for f in core.ranking().features}
    assert ranking["obi"].pairs == 7 and ranking["obi"].reason == "warming up"
    core.on_features(_feat(5 * S, 100.0), 0)  # the replay looped: event time restarted
    core.on_features(_feat(200 * S, 100.0), 0)
    # only the new session's sample closed: the old session's open samples (70, 80, 90 s) were
    # dropped, not paired with a price of the new session
    assert {f.feature: f for f in core.ranking().features}["obi"].pairs == 8
    core.on_features(_feat(1 * S, 100.0, venue="bybit"), 0)  # a venue the gate does not follow: ignored


def test_report_rows_from_audits_window_and_logged_alphas() -> None:
    alphas = [AlphaSignal("a_obi", 0.4, 0.3)]
    audits = [_audit(f"t{i}", i * 10 * S, 100.0 + i, alphas) for i in range(10)]
    trades, mids = rows_from_audits(audits, 30 * S, AlphaRegistry())
    assert [t.event_id for t in trades] == ["t6", "t7", "t8", "t9"]  # the last 30 s of event time
    assert trades[0].alpha_ids == ("a_obi",) and trades[0].mid == 106.0 and trades[0].s_max_quote == 1000.0
    assert len(mids) == 100 and mids[0].ts_ns == -900_000_000
    # an audit without logged alphas gets the registry's signals recomputed from its context
    old = _audit("old", 0, 100.0, [])
    trades, _ = rows_from_audits([old], 30 * S, AlphaRegistry())
    assert len(trades[0].alpha_ids) == len(AlphaRegistry().alphas)
