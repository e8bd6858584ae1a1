"""Alpha registry and attribution (stevie.quant.alpha): exact Shapley values against an
independent average over all n! orderings, closed forms (additive and glove games), the
efficiency axiom on the blend game, and a known contribution order coming out in order."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from stevie.quant.alpha import (
    DEFAULT_ALPHAS,
    MAX_SHAPLEY_PLAYERS,
    Alpha,
    AlphaInputs,
    AlphaRegistry,
    attribute_trade,
    blend,
    blend_game,
    blend_shapley_batch,
    leave_one_out,
    shapley,
)
from stevie.quant.errors import QuantInputError


def _by_orderings(v, n: int) -> list[float]:
    """Shapley as the mean marginal contribution over every ordering of the players."""
    phi = [0.0] * n
    perms = list(itertools.permutations(range(n)))
    for order in perms:
        mask = 0
        for i in order:
            phi[i] += v(mask | 1 << i) - v(mask)
            mask |= 1 << i
    return [p / len(perms) for p in phi]


def test_shapley_equals_the_average_over_all_orderings() -> None:
    rng = np.random.default_rng(0)
    n = 6
    table = {m: float(rng.normal()) for m in range(1 << n)}
    table[0] = 0.0
    ref = _by_orderings(table.__getitem__, n)
    np.testing.assert_allclose(shapley(table, n), ref, atol=1e-12)
    as_sets = {frozenset(i for i in range(n) if m >> i & 1): v for m, v in table.items()}
    np.testing.assert_allclose(shapley(as_sets, n), ref, atol=1e-12)
    np.testing.assert_allclose(shapley(table.__getitem__, n), ref, atol=1e-12)


def test_closed_forms_additive_and_glove_games() -> None:
    c = [0.5, -0.2, 0.1, 0.0]
    additive = blend_game([1.0] * 4, c, 1.0, g=lambda b: b)
    np.testing.assert_allclose(shapley(additive, 4), c, atol=1e-15)
    np.testing.assert_allclose(leave_one_out(additive, 4), c, atol=1e-15)
    # glove game: player 0 holds a left glove, players 1 and 2 a right glove; a pair is worth 1.
    # Shapley: (2/3, 1/6, 1/6); leave-one-out: (1, 0, 0).
    glove = lambda m: float(bool(m & 1) and bool(m & 6))  # noqa: E731
    np.testing.assert_allclose(shapley(glove, 3), [2 / 3, 1 / 6, 1 / 6], atol=1e-15)
    assert leave_one_out(glove, 3) == [1.0, 0.0, 0.0]


def test_known_contribution_order_and_efficiency_on_the_clipped_blend() -> None:
    ids = ["a", "b", "c", "d", "e"]
    signals = [1.0, 0.8, -0.6, 0.5, -0.5]
    weights = [0.6, 0.5, -0.5, 0.2, 0.1]  # contributions w·s = 0.6, 0.4, 0.3, 0.1, -0.05
    u = 250.0  # realised PnL of one unit of position (quote)
    b = blend(signals, weights)
    assert b == pytest.approx(1.35)
    att = attribute_trade(ids, signals, weights, u)
    phi = [a.shapley for a in att]
    assert sum(phi) == pytest.approx(u * 1.0, abs=1e-9)  # efficiency: the blend's total (clipped at 1)
    assert [a.id for a in sorted(att, key=lambda a: -a.shapley)] == ids  # the known order
    assert phi[-1] < 0  # the alpha that pushed the other way is charged
    # leave-one-out under clipping: dropping d or e leaves the position at the cap
    loo = {a.id: a.loo for a in att}
    assert loo["d"] == pytest.approx(0.0) and loo["e"] == pytest.approx(0.0)
    assert loo["a"] == pytest.approx(u * (1.0 - 0.75))


def test_efficiency_holds_for_random_trades() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 9))
        s, w, u = rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n), float(rng.normal(0, 100))
        phi = shapley(blend_game(list(s), list(w), u), n)
        assert sum(phi) == pytest.approx(u * float(np.clip(np.dot(w, s), -1, 1)), abs=1e-9)


def test_registry_signals_and_bad_input() -> None:
    reg = AlphaRegistry()
    assert len(reg.alphas) == len(DEFAULT_ALPHAS) <= MAX_SHAPLEY_PLAYERS
    x = AlphaInputs(
        obi=0.7,
        ti=-0.2,
        micro_dev_bps=0.3,
        spread_bps=0.2,
        sigma_garch=0.004,
        sigma_har=0.002,
        rr25=0.03,
        funding=2e-4,
        mids=tuple(100 + 0.01 * k for k in range(40)),
    )
    sig = dict(zip([a.id for a in reg.alphas], reg.signals(x), strict=True))
    assert all(-1.0 <= v <= 1.0 for v in sig.values())
    assert sig["a_obi"] == 0.7 and sig["a_ti"] == -0.2
    assert sig["a_sma_trend"] > 0 and sig["a_breakout"] == 1.0  # a steady rise
    assert sig["a_funding_carry"] < 0 and sig["a_rr25_skew"] > 0 and sig["a_vol_regime"] < 0
    assert reg.signals(AlphaInputs()) == [0.0] * len(reg.alphas)  # neutral context, neutral signals
    with pytest.raises(QuantInputError):
        reg.register(Alpha("a_obi", "dup", lambda _: 0.0, 0.1))
    with pytest.raises(QuantInputError):
        shapley(lambda m: 0.0, MAX_SHAPLEY_PLAYERS + 1)
    with pytest.raises(QuantInputError):
        shapley({0: 0.0, 1: 1.0}, 2)  # coalitions missing
    with pytest.raises(QuantInputError):
        attribute_trade(["a"], [1.0, 2.0], [1.0], 1.0)
    with pytest.raises(QuantInputError):
        attribute_trade(["a"], [1.0], [1.0], math.nan)


def test_batch_shapley_equals_the_per_trade_enumeration() -> None:
    rng = np.random.default_rng(2)
    c, u = rng.uniform(-0.6, 0.6, (30, 7)), rng.normal(0, 50, 30)
    phi, loo = blend_shapley_batch(c, u)
    for t in range(30):
        game = blend_game([1.0] * 7, list(c[t]), float(u[t]))
        np.testing.assert_allclose(phi[t], shapley(game, 7), atol=1e-10)
        np.testing.assert_allclose(loo[t], leave_one_out(game, 7), atol=1e-10)
