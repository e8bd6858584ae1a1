"""Promotion maths: PSR/DSR against Bailey & López de Prado's worked example and an
independent implementation; SPA equals arch's and has power/size where it should."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from stevie.quant import promotion as pr
from stevie.quant.errors import QuantInputError


def test_dsr_worked_example_of_the_paper():
    """Bailey & López de Prado (2014), §5 numerical example: N = 100 trials with
    V[SR_n] = 1/2 (annualised), the best has SR = 2.5 annualised over T = 1250 daily
    returns with γ₃ = −3, γ₄ = 10. The paper reports SR₀ ≈ 0.1132 (daily) and DSR ≈ 0.9004."""
    sr0 = pr.expected_max_sharpe(100, math.sqrt(0.5 / 250))
    assert sr0 == pytest.approx(0.1132, abs=5e-4)
    dsr = pr.psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=1e-3)
    # not enough for the 0.95 bar
    assert not pr.decide(0.01, dsr).promote


def _independent_dsr(r: np.ndarray, trials: np.ndarray) -> float:
    """DSR written from the paper's formulas with raw moments (no scipy.stats moments)."""
    t = r.size
    mu = r.sum() / t
    sd = math.sqrt(((r - mu) ** 2).sum() / (t - 1))
    sr = mu / sd
    m2 = ((r - mu) ** 2).mean()
    g3 = ((r - mu) ** 3).mean() / m2**1.5
    g4 = ((r - mu) ** 4).mean() / m2**2
    n = trials.size
    tm = trials.mean()
    v = ((trials - tm) ** 2).sum() / (n - 1)
    e = 0.5772156649015329
    sr0 = math.sqrt(v) * ((1 - e) * norm.ppf(1 - 1 / n) + e * norm.ppf(1 - 1 / (n * math.e)))
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)
    return float(norm.cdf(z))


def test_dsr_equals_an_independent_implementation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = 0.001 + 0.01 * rng.standard_t(5, size=500)
        trials = rng.normal(0.0, 0.05, size=int(rng.integers(2, 200)))
        assert pr.deflated_sharpe(r, trials) == pytest.approx(_independent_dsr(r, trials), abs=1e-12)


def test_psr_behaves():
    rng = np.random.default_rng(1)
    good = 0.002 + 0.01 * rng.standard_normal(2000)
    assert pr.psr(good) > 0.99
    assert pr.psr(-good) < 0.01
    # one trial: no deflation
    assert pr.deflated_sharpe(good, [0.1]) == pytest.approx(pr.psr(good))
    # more trials with more dispersion deflate more
    assert pr.deflated_sharpe(good, rng.normal(0, 0.05, 1000)) < pr.deflated_sharpe(good, rng.normal(0, 0.05, 10))
    assert pr.expected_max_sharpe(1, 0.3) == 0.0
    assert pr.expected_max_sharpe(1000, 0.1) > pr.expected_max_sharpe(10, 0.1) > 0


def test_spa_wraps_arch_and_has_power():
    from arch.bootstrap import SPA

    rng = np.random.default_rng(2)
    t = 500
    bench = rng.standard_normal(t) + 0.3  # losses
    better = rng.standard_normal((t, 2)) + np.array([0.3, 0.0])  # model 2 has lower loss
    res = pr.spa(bench, better, reps=500, block_size=10, seed=3)
    ref = SPA(bench, better, block_size=10, reps=500, bootstrap="stationary", seed=3)
    ref.compute()
    assert res.consistent == pytest.approx(float(ref.pvalues["consistent"]))
    assert res.lower == pytest.approx(float(ref.pvalues["lower"]))
    assert res.upper == pytest.approx(float(ref.pvalues["upper"]))
    assert res.consistent < 0.05
    assert res.lower <= res.consistent <= res.upper
    assert pr.spa(bench, better, reps=500, block_size=10, seed=3) == res  # seeded


def test_spa_size_no_better_model():
    rng = np.random.default_rng(4)
    t = 400
    bench = rng.standard_normal(t)
    worse = rng.standard_normal((t, 3)) + 0.2
    assert pr.spa(bench, worse, reps=300, block_size=5, seed=0).consistent > 0.2


def test_decide_names_the_failing_test():
    assert pr.decide(0.01, 0.97).promote
    d = pr.decide(0.2, 0.97)
    assert not d.promote and "SPA" in d.reason and "DSR" not in d.reason
    d = pr.decide(0.01, 0.5)
    assert not d.promote and "DSR" in d.reason and "SPA" not in d.reason
    d = pr.decide(None, None)
    assert not d.promote and "SPA not computed" in d.reason


def test_bad_inputs():
    with pytest.raises(QuantInputError):
        pr.sharpe([1.0, 1.0, 1.0])
    with pytest.raises(QuantInputError):
        pr.psr([1.0, float("nan"), 2.0])
    with pytest.raises(QuantInputError):
        pr.spa(np.zeros(5), np.zeros((5, 1)), 100, 2, 0)
    with pytest.raises(QuantInputError):
        pr.expected_max_sharpe(0, 0.1)


def test_psr_dsr_and_expected_max_equal_skfolio():
    """skfolio.measures (a maintained implementation of Bailey & López de Prado's formulas)."""
    from skfolio import measures

    rng = np.random.default_rng(5)
    for _ in range(10):
        r = 0.0005 + 0.01 * rng.standard_t(4, size=int(rng.integers(50, 2000)))
        trials = rng.normal(0.0, 0.05, size=int(rng.integers(2, 300)))
        assert pr.psr(r) == pytest.approx(measures.probabilistic_sharpe_ratio(r), abs=1e-12)
        assert pr.psr(r, 0.02) == pytest.approx(measures.probabilistic_sharpe_ratio(r, 0.02), abs=1e-12)
        assert pr.deflated_sharpe(r, trials) == pytest.approx(measures.deflated_sharpe_ratio(r, trials), abs=1e-12)
        sd = float(np.std(trials, ddof=1))
        assert pr.expected_max_sharpe(trials.size, sd) == pytest.approx(
            measures.expected_max_sharpe_ratio(trials.size, sd), abs=1e-12
        )
