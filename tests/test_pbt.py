"""PBT (Jaderberg et al. 2017): exploit/explore rules, lineage, determinism, and that it
finds a good region of a known objective."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stevie.quant import pbt
from stevie.quant.errors import QuantInputError

SPACE = [pbt.Param("threshold", 0.01, 1.0), pbt.Param("window", 2, 50, integer=True)]


def _score(p: dict[str, float], w0: int, w1: int) -> float:
    """A known objective with its optimum at threshold 0.3, window 20, plus window noise."""
    noise = 0.01 * math.sin(7 * w0 + p["threshold"])
    return -((p["threshold"] - 0.3) ** 2) - ((p["window"] - 20) / 50) ** 2 + noise


def test_lineage_shape_and_rules():
    cfg = pbt.PBTConfig(population=8, generations=3, windows_per_generation=2, seed=1, space=SPACE)
    seen: list[pbt.Version] = []
    lineage = pbt.run_pbt(cfg, _score, seen.append)
    assert seen == lineage and len(lineage) == 24
    by_id = {v.id: v for v in lineage}
    for v in lineage:
        assert v.windows == (2 * v.generation, 2 * v.generation + 2)  # walk-forward, disjoint
        assert 0.01 <= v.params["threshold"] <= 1.0 and v.params["window"] == round(v.params["window"])
        if v.generation == 0:
            assert v.parent is None and not v.exploited
            continue
        parent = by_id[v.parent]
        assert parent.generation == v.generation - 1
        prev = [u for u in lineage if u.generation == v.generation - 1]
        ranked = sorted(prev, key=lambda u: (-u.score, u.member))
        if v.exploited:  # bottom quartile copied a top-quartile member, then explored
            assert parent.id in {u.id for u in ranked[:2]}
            assert by_id[f"m{v.member:02d}g{v.generation - 1}"].id in {u.id for u in ranked[-2:]}
        else:  # kept its own parameters
            assert parent.member == v.member and parent.params == v.params
    assert sum(v.exploited for v in lineage) == 2 * 2  # 2 per generation after the first


def test_explore_perturbs_by_the_factors_or_resamples():
    cfg = pbt.PBTConfig(resample_p=0.0, space=[pbt.Param("a", 0.0, 100.0)])
    rng = np.random.default_rng(0)
    outs = {pbt.explore({"a": 10.0}, cfg.space, cfg, rng)["a"] for _ in range(50)}
    assert outs == {8.0, 12.0}
    cfg2 = pbt.PBTConfig(resample_p=1.0, space=[pbt.Param("a", 0.0, 100.0)])
    assert len({pbt.explore({"a": 10.0}, cfg2.space, cfg2, rng)["a"] for _ in range(20)}) > 10


def test_deterministic_and_improves():
    cfg = pbt.PBTConfig(population=12, generations=8, seed=5, space=SPACE)
    a = pbt.run_pbt(cfg, _score)
    assert a == pbt.run_pbt(cfg, _score)
    first = np.mean([v.score for v in a if v.generation == 0])
    last = np.mean([v.score for v in a if v.generation == 7])
    assert last > first
    b = pbt.best(a)
    assert b.generation == 7 and abs(b.params["threshold"] - 0.3) < 0.15


def test_non_finite_scores_rank_last():
    def score(p, w0, w1):
        return float("nan") if p["threshold"] > 0.5 else -p["threshold"]

    cfg = pbt.PBTConfig(population=4, generations=2, seed=0, space=SPACE)
    lineage = pbt.run_pbt(cfg, score)
    g0 = [v for v in lineage if v.generation == 0]
    nan_members = {v.member for v in g0 if not math.isfinite(v.score)}
    assert nan_members and len(nan_members) < 4
    worst = next(v for v in lineage if v.generation == 1 and v.exploited)
    assert worst.member in nan_members
    assert math.isfinite(lineage[[v.id for v in lineage].index(worst.parent)].score)


def test_bad_config():
    with pytest.raises(QuantInputError):
        pbt.PBTConfig(population=1, space=SPACE)
    with pytest.raises(QuantInputError):
        pbt.PBTConfig(space=[])
    with pytest.raises(QuantInputError):
        pbt.Param("x", 1.0, 0.0)
    with pytest.raises(QuantInputError):
        pbt.best([])


def test_walk_forward_scoring_on_bars_has_no_look_ahead_and_finds_a_trend():
    from stevie.services.evidence import tuning

    rng = np.random.default_rng(0)
    n = 6000
    trend = np.cumsum(0.0004 + 0.001 * rng.standard_normal(n))  # persistent up-drift
    close = 100 * np.exp(trend)
    s = tuning.Series("X", np.arange(n) * 60_000, close)
    space = tuning.space_of("p_sma")
    assert [p.name for p in space] == ["fast", "slow"] and all(p.integer for p in space)
    walk = tuning.default_walk(space, 5, 1000, 0.0)
    assert walk.start > max(p.high for p in space)
    params = {"fast": 10.0, "slow": 100.0}
    pnl = tuning.decision_pnl("p_sma", params, s, walk, 0, 1)
    assert pnl.size == 200  # one decision every 5 bars in a 1000-bar window
    assert tuning.score("p_sma", params, [s], walk, 0, 1) > 0.05  # trend following earns on a trend
    # no look-ahead: changing closes after window 0 (beyond its last horizon) leaves its score unchanged
    end = walk.start + walk.window_bars + walk.interval
    later = close.copy()
    later[end:] *= rng.uniform(0.5, 1.5, n - end)
    s2 = tuning.Series("X", s.open_time_ms, later)
    assert tuning.score("p_sma", params, [s2], walk, 0, 1) == tuning.score("p_sma", params, [s], walk, 0, 1)
    # the fee is paid on every change of position
    fee = tuning.Walk(walk.interval, walk.window_bars, walk.start, walk.lookback, 10.0)
    assert tuning.decision_pnl("p_sma", params, s, fee, 0, 1).sum() < pnl.sum()
    with pytest.raises(KeyError):
        tuning.space_of("p_flat")
