"""Sizing and execution-cost maths, with walk-the-book on the real BTCUSDT capture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stevie.quant import impact, sizing
from stevie.quant.errors import QuantInputError
from tests.helpers.capture import SAMPLES


@given(st.floats(0, 50), st.floats(0, 50))
def test_uncertainty_size_is_monotone_decreasing(w1, w2):
    lo, hi = sorted((w1, w2))
    assert sizing.uncertainty_size(1.0, hi, 2.0) <= sizing.uncertainty_size(1.0, lo, 2.0)
    assert sizing.uncertainty_size(1.0, 0.0, 2.0) == pytest.approx(0.5)


def test_vol_target_and_kelly():
    assert sizing.vol_target_notional(10_000, 0.01, 0.02) == pytest.approx(5_000)
    assert sizing.vol_target_notional(10_000, 0.04, 0.02, max_leverage=1.5) == pytest.approx(15_000)
    assert sizing.kelly_lite(0.001, 0.02, kappa=0.5, f_max=2.0) == pytest.approx(0.5 * 0.001 / 0.0004)
    assert sizing.kelly_lite(1.0, 0.01, f_max=0.3) == 0.3
    with pytest.raises(QuantInputError):
        sizing.vol_target_notional(1, 0.01, 0.0)


@pytest.fixture(scope="module")
def asks():
    snap = json.loads((next((SAMPLES / "binance/spot/btcusdt").glob("l2_*")) / "depth_snapshot.json").read_text())
    return [(float(p), float(q)) for p, q in snap["asks"]]


def test_walk_the_book_on_real_depth(asks):
    small = impact.walk_the_book(asks, asks[0][1] / 2)
    assert small.avg_price == pytest.approx(asks[0][0], rel=1e-15) and small.slippage_bps < 1e-9 and small.complete
    size = sum(q for _, q in asks[:10])
    f = impact.walk_the_book(asks, size)
    assert f.avg_price == pytest.approx(sum(p * q for p, q in asks[:10]) / size)
    assert asks[0][0] <= f.avg_price <= asks[9][0]


def test_impact_fit_recovers_known_curve_and_real_book_is_concave(asks):
    true = impact.ImpactModel(k=3.0, alpha=0.5)
    sizes = np.linspace(0.1, 10, 30)
    fit = impact.fit_impact(sizes, [true.cost_bps(s, 1.0) for s in sizes], 1.0)
    assert fit.k == pytest.approx(3.0) and fit.alpha == pytest.approx(0.5)
    sizes = np.geomspace(2, 100, 15)
    slip = np.array([impact.walk_the_book(asks, s).slippage_bps for s in sizes])
    assert np.all(np.diff(slip) >= 0)  # walking deeper never gets cheaper
    book_fit = impact.fit_impact(sizes, slip, 0.0)
    print(f"real BTCUSDT spot book, 2..100 BTC: slippage ≈ {book_fit.k:.3f}·size^{book_fit.alpha:.2f} bps")
    assert book_fit.alpha > 0


def test_planner_styles_and_slices_sum_to_size():
    m = impact.ImpactModel(1.0, 0.5)
    assert impact.plan_execution(0.1, 0.2, 5.0, 0.5, 1.0, m).style == "Immediate"
    twap = impact.plan_execution(20.0, 0.2, 5.0, 0.1, 0.1, m)
    assert twap.style == "TWAP" and sum(twap.slices) == pytest.approx(20.0)
    vwap = impact.plan_execution(20.0, 0.2, 5.0, 0.1, 0.1, m, volume_profile=[1, 2, 3, 4])
    assert vwap.style == "VWAP" and vwap.slices[3] == pytest.approx(8.0)
    pov = impact.plan_execution(20.0, 0.2, 5.0, 0.1, 0.1, m, volume_per_min=10.0)
    assert pov.style == "POV" and sum(pov.slices) == pytest.approx(20.0) and max(pov.slices) <= 1.0 + 1e-12
    with pytest.raises(QuantInputError):
        impact.plan_execution(1.0, 0.2, 5.0, 0.1, 1.5, m)
    # a calm book but a large vol forecast over the horizon: waiting is risky → Immediate
    calm = impact.plan_execution(4.0, 0.2, 5.0, 0.0, 0.1, m)
    stormy = impact.plan_execution(4.0, 0.2, 5.0, 0.0, 0.1, m, vol_forecast_bps=50.0)
    assert calm.style == "TWAP" and stormy.style == "Immediate"
