"""Portfolio CVaR optimiser against an LP reference (scipy linprog) on real daily returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize

from stevie.quant import portfolio
from stevie.quant.errors import QuantInputError
from tests.helpers.klines import closes

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT"]


@pytest.fixture(scope="module")
def daily():
    cols = []
    n = min(closes(s).size for s in SYMBOLS)
    for s in SYMBOLS:
        c = closes(s)[:n]
        d = c[::240]  # 4-hour closes
        cols.append(d[1:] / d[:-1] - 1)
    return np.column_stack(cols)


def test_cvar_matches_sorted_tail_definition():
    rng = np.random.default_rng(1)
    r = rng.standard_normal(1000) * 0.01
    var, cvar = portfolio.var_cvar(r, 0.95)
    losses = np.sort(-r)
    assert var[0] == losses[949]  # inverted-cdf quantile: the 950th smallest loss
    assert cvar[0] == pytest.approx(var[0] + np.mean(np.maximum(-r - var[0], 0)) / 0.05)
    assert cvar[0] >= np.mean(losses[950:]) - 1e-12


@pytest.mark.parametrize("budget", [0.005, 0.02, 0.05])
def test_lp_optimum_equals_linprog(daily, budget):
    ours = portfolio.optimize(daily, budget, vol_target=None)
    mu = daily.mean(axis=0)
    ref = linprog(
        -mu,
        A_ub=np.vstack([ours.cvar, np.ones_like(mu)]),
        b_ub=[budget, 1.0],
        bounds=[(0, 1)] * mu.size,
        method="highs",
    )
    assert ref.status == 0
    print(f"B={budget}: objective ours {ours.expected_return:.8f} linprog {-ref.fun:.8f}")
    assert ours.expected_return == pytest.approx(-ref.fun, abs=1e-4 * max(1e-3, abs(ref.fun)))
    assert ours.cvar @ ours.weights <= budget + 1e-9


def test_vol_target_binds_and_matches_slsqp(daily):
    loose = portfolio.optimize(daily, 1.0)
    target = 0.5 * loose.portfolio_vol
    ours = portfolio.optimize(daily, 1.0, vol_target=target)
    assert ours.portfolio_vol <= target * (1 + 1e-6)
    mu = daily.mean(axis=0)
    cov = np.cov(daily, rowvar=False)
    ref = minimize(
        lambda w: -mu @ w,
        np.full(mu.size, 0.01),
        method="SLSQP",
        bounds=[(0, 1)] * mu.size,
        constraints=[
            {"type": "ineq", "fun": lambda w: 1 - w.sum()},
            {"type": "ineq", "fun": lambda w: target**2 - w @ cov @ w},
        ],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert ours.expected_return == pytest.approx(-ref.fun, rel=1e-4, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 0.2), st.floats(0.001, 0.2))
def test_budget_is_never_violated(budget, vol_target):
    rng = np.random.default_rng(3)
    r = rng.standard_normal((200, 4)) * 0.02 + np.array([0.002, 0.001, -0.001, 0.003])
    a = portfolio.optimize(r, budget, vol_target)
    assert a.cvar @ a.weights <= budget + 1e-7
    assert a.weights.sum() <= 1 + 1e-7 and np.all(a.weights >= -1e-9)
    assert a.portfolio_vol <= vol_target + 1e-7


@pytest.mark.parametrize("bad", [np.full((20, 2), np.nan), np.zeros((3, 2)), "abc"])
def test_bad_input_raises(bad):
    with pytest.raises(QuantInputError):
        portfolio.optimize(bad, 0.05, 0.02)
