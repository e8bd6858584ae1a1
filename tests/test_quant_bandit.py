"""Thompson sampling: converges to the better policy; propensities are probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.quant import policies
from stevie.quant.bandit import LinearTS
from stevie.quant.errors import QuantInputError


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


def test_propensity_is_the_monte_carlo_win_probability():
    rng = np.random.default_rng(3)
    ts = LinearTS(["x", "y"], dim=1, v=1.0, mc=20_000)
    for _ in range(50):
        ts.update("x", 1.0, [1.0])
    ch = ts.choose([1.0], rng)
    assert 0 < ch.propensity <= 1
    # two arms: the propensity has a closed form, P(s_x > s_y) = Φ((μx − μy)/sqrt(sx² + sy²))
    from scipy.stats import norm

    mx, sx = ts.posteriors["x"].mean[0], np.sqrt(ts.posteriors["x"].cov(1.0)[0, 0])
    sy = np.sqrt(ts.posteriors["y"].cov(1.0)[0, 0])
    px = norm.cdf(mx / np.hypot(sx, sy))
    want = px if ch.arm == "x" else 1 - px
    assert ch.propensity == pytest.approx(want, abs=0.01)


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
