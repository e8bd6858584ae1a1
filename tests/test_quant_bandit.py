"""Thompson sampling: converges to the better policy; propensities are the exact win probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from stevie.quant import policies
from stevie.quant.bandit import LinearTS
from stevie.quant.errors import QuantInputError
from stevie.quant.propensity import win_probability


def test_converges_to_the_better_policy_on_a_synthetic_bandit():
    rng = np.random.default_rng(11)
    truth = {"a": np.array([0.0, 1.0]), "b": np.array([0.2, -1.0]), "c": np.array([-0.1, 0.0])}
    ts = LinearTS(list(truth), dim=2, v=0.3, mc=500)
    picks_late = []
    for t in range(1500):
        x = np.array([1.0, rng.uniform(-1, 1)])
        ch = ts.choose(x, rng)
        r = float(truth[ch.arm] @ x + 0.3 * rng.standard_normal())
        ts.update(ch.arm, r, x)
        best = max(truth, key=lambda a: truth[a] @ x)
        if t >= 1000:
            picks_late.append(ch.arm == best)
    assert np.mean(picks_late) > 0.85
    mu = ts.posteriors["a"].mean
    assert mu[1] == pytest.approx(1.0, abs=0.15)


def test_propensity_is_the_closed_form_win_probability_for_two_arms():
    rng = np.random.default_rng(3)
    ts = LinearTS(["x", "y"], dim=1, v=1.0, mc=20_000)
    for _ in range(50):
        ts.update("x", 1.0, [1.0])
    ch = ts.choose([1.0], rng)
    assert 0 < ch.propensity <= 1
    # two arms: the propensity has a closed form, P(s_x > s_y) = Φ((μx − μy)/sqrt(sx² + sy²))
    mx, sx = ts.posteriors["x"].mean[0], np.sqrt(ts.posteriors["x"].cov(1.0)[0, 0])
    sy = np.sqrt(ts.posteriors["y"].cov(1.0)[0, 0])
    px = norm.cdf(mx / np.hypot(sx, sy))
    want = px if ch.arm == "x" else 1 - px
    assert ch.propensity == pytest.approx(want, abs=1e-12)


def test_win_probability_matches_the_two_arm_closed_form_across_width_ratios():
    # widths 1e-4 … 10 (ratios up to 1e5): a plain Gauss–Hermite rule missed by > 0.002 here
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(4000):
        m = rng.normal(0, 1, 2) * 10 ** rng.uniform(-3, 1)
        s = 10 ** rng.uniform(-4, 1, 2)
        for i in (0, 1):
            want = norm.cdf((m[i] - m[1 - i]) / np.hypot(s[0], s[1]))
            worst = max(worst, abs(win_probability(m, s, i) - want))
    assert worst < 1e-12
    # the hard case by hand: a sharp arm (σ 1e-4) inside a wide one's range (σ 1)
    m, s = np.array([0.3, 0.0]), np.array([1e-4, 1.0])
    assert win_probability(m, s, 1) == pytest.approx(norm.sf(0.3 / np.hypot(1e-4, 1.0)), abs=1e-13)


def test_win_probability_matches_monte_carlo_and_sums_to_one_for_many_arms():
    rng = np.random.default_rng(5)
    draws = 400_000
    for widths in ([0.1, 0.1, 0.1, 0.1, 0.1], [1e-3, 0.2, 0.15, 0.05, 0.3], [1e-4, 1e-2, 1.0, 3e-3, 0.5]):
        s = np.array(widths)
        m = rng.normal(0, 0.05, s.size)
        p = np.array([win_probability(m, s, i) for i in range(s.size)])
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        z = m + s * rng.standard_normal((draws, s.size))
        mc = np.bincount(np.argmax(z, axis=1), minlength=s.size) / draws
        se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / draws)
        assert np.all(np.abs(p - mc) <= 5 * se + 1e-9), (widths, p, mc)
    same = np.array([win_probability(np.zeros(4), np.ones(4), i) for i in range(4)])
    np.testing.assert_allclose(same, 0.25, atol=1e-13)
    with pytest.raises(QuantInputError):
        win_probability(np.zeros(2), np.array([1.0, 0.0]), 0)


def test_sherman_morrison_updates_stay_equal_to_the_exact_posterior():
    rng = np.random.default_rng(2)
    ts = LinearTS(["a", "b"], dim=6)
    for _ in range(3000):
        x = np.clip(rng.normal(0, 2, 6), -5, 5)
        x[0] = 1.0
        ts.update("a", float(rng.normal()), x)
    p = ts.posteriors["a"]
    mu, inv = p._solved()
    np.testing.assert_allclose(inv, np.linalg.inv(p.B), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(mu, np.linalg.solve(p.B, p.f), rtol=1e-8, atol=1e-12)


def test_bad_context_and_arms():
    ts = LinearTS(["x"], dim=2)
    with pytest.raises(QuantInputError):
        ts.choose([1.0], np.random.default_rng(0))
    with pytest.raises(QuantInputError):
        ts.update("x", float("nan"), [1.0, 0.0])
    with pytest.raises(KeyError):
        ts.update("nope", 1.0, [1.0, 0.0])


def test_policies_signals():
    x = policies.PolicyInputs(obi=0.6, ti=0.2, micro_dev_bps=0.2, micro_vol_bps=1.0)
    assert policies.flat(x) == 0 and policies.obi_momentum(x) == 1 and policies.micro_reversion(x) == -1
    assert policies.obi_momentum(policies.PolicyInputs(0.6, -0.9, 0, 0)) == 0
    assert policies.micro_price(100, 1, 101, 3) == pytest.approx(100.25)
