"""Calibration: Brier and reliability equal scikit-learn's; ECE by hand; nudges reduce the
ECE of an over-confident stream and never leave their bounds (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from stevie.quant import calibration as cal
from stevie.quant.errors import QuantInputError


def test_brier_and_reliability_equal_sklearn():
    rng = np.random.default_rng(0)
    for n_bins in (5, 10, 15):
        p = rng.uniform(0, 1, 1000)
        p[:10] = [0.0, 1.0, 0.1, 0.2, 0.5, 0.3, 0.7, 0.9, 0.6, 0.4]  # bin edges exactly
        y = (rng.uniform(0, 1, 1000) < p**1.5).astype(float)
        assert cal.brier(p, y) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        mean_p, freq, count = cal.reliability(p, y, n_bins)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        np.testing.assert_allclose(freq, prob_true, atol=1e-12)
        np.testing.assert_allclose(mean_p, prob_pred, atol=1e-12)
        assert count.sum() == 1000
        # ECE from sklearn's curve and our counts
        assert cal.ece(p, y, n_bins) == pytest.approx(float(np.sum(count * np.abs(prob_pred - prob_true)) / 1000))


def test_ece_by_hand():
    # bins of width 0.5: {0.2, 0.4} → mean 0.3, freq 0.5; {0.8} → 0.8 vs 1 → ECE = (2·0.2 + 1·0.2)/3
    assert cal.ece([0.2, 0.4, 0.8], [0, 1, 1], n_bins=2) == pytest.approx(0.2)
    assert cal.ece([0.5] * 4, [0, 1, 0, 1], n_bins=10) == pytest.approx(0.0)


def _overconfident(rng: np.random.Generator, n: int, temp: float = 2.5):
    """Scores z; the truth is P(y = 1) = Φ(z/temp): a forecast Φ(z) is over-confident."""
    z = 2.0 * rng.standard_normal(n)
    y = (rng.uniform(0, 1, n) < norm.cdf(z / temp)).astype(float)
    return z, y


def test_applying_nudges_reduces_ece_on_an_overconfident_stream():
    rng = np.random.default_rng(1)
    z, y = _overconfident(rng, 4000)
    bounds = cal.NudgeBounds(prior=0.5, sizing=0.25)
    before = cal.ece(norm.cdf(z), y)
    n = cal.nudges(z, y, bounds)
    assert n.routerPriorDelta > 0  # widen: over-confident
    assert n.sizingCapDelta < 0  # worse than the ECE target: shrink the sizing cap
    # applying the prior nudge scales the width by (1 + δ): forecasts become Φ(z/(1 + δ)).
    z_next, y_next = _overconfident(rng, 4000)  # the stream that follows
    after = cal.ece(norm.cdf(z_next / (1 + n.routerPriorDelta)), y_next)
    assert after < before
    # repeated nudges converge to the true temperature and a small ECE
    scale = 1.0
    for _ in range(6):
        zz, yy = _overconfident(rng, 4000)
        scale *= 1 + cal.nudges(zz / scale, yy, bounds).routerPriorDelta
    assert scale == pytest.approx(2.5, rel=0.15)
    zz, yy = _overconfident(rng, 4000)
    assert cal.ece(norm.cdf(zz / scale), yy) < 0.03


def test_fit_temperature_recovers_the_truth():
    rng = np.random.default_rng(2)
    z, y = _overconfident(rng, 20_000, temp=1.7)
    assert cal.fit_temperature(z, y) == pytest.approx(1.7, rel=0.08)


@settings(max_examples=200, deadline=None)
@given(
    z=st.lists(st.floats(-50, 50), min_size=1, max_size=60),
    ybits=st.lists(st.booleans(), min_size=60, max_size=60),
    prior=st.floats(0.0, 0.9),
    sizing=st.floats(0.0, 0.9),
    target=st.floats(0.0, 1.0),
    gain=st.floats(0.0, 100.0),
)
def test_nudges_never_exceed_their_bounds(z, ybits, prior, sizing, target, gain):
    y = [float(b) for b in ybits[: len(z)]]
    n = cal.nudges(z, y, cal.NudgeBounds(prior, sizing, target, gain))
    assert -prior - 1e-12 <= n.routerPriorDelta <= prior + 1e-12
    assert -sizing - 1e-12 <= n.sizingCapDelta <= sizing + 1e-12
    assert 0.0 <= n.ece <= 1.0


def test_win_probability_and_bad_inputs():
    assert cal.win_probability([0.0, 1.0], [1.0, 1.0]) == pytest.approx([0.5, norm.cdf(1.0)])
    with pytest.raises(QuantInputError):
        cal.brier([0.5, 1.2], [0, 1])
    with pytest.raises(QuantInputError):
        cal.ece([0.5], [2])
    with pytest.raises(QuantInputError):
        cal.reliability([0.5], [1], n_bins=0)
    with pytest.raises(QuantInputError):
        cal.win_probability([1.0], [0.0])
    with pytest.raises(QuantInputError):
        cal.NudgeBounds(prior=1.5)
