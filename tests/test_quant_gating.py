"""Feature gating (stevie.quant.gating) against scipy.stats.spearmanr, an independent HSIC
written here with explicit Gram matrices (Gretton et al. 2005 biased; the U-statistic over
distinct index quadruples for Song et al. 2012's unbiased estimator), river.drift.PageHinkley,
and the acceptance: a feature replaced by noise is disabled within one schedule period, and a
feature that leaks the future is caught by the look-ahead check rather than ranked first."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from river.drift import PageHinkley as RiverPageHinkley
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata, spearmanr

from stevie.quant.errors import QuantInputError
from stevie.quant.gating import (
    FeatureGate,
    PageHinkley,
    ewma_ic,
    hsic,
    leaks_future,
    median_bandwidth,
    normalized_hsic,
)

# -- IC ----------------------------------------------------------------------------------


def test_ewma_ic_equal_weights_is_spearmanr_with_ties() -> None:
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=300), 1)  # ties
    y = 0.3 * x + rng.normal(size=300)
    assert abs(ewma_ic(x, y) - spearmanr(x, y).statistic) < 1e-12


def test_ewma_ic_weighted_equals_numpy_weighted_correlation_of_ranks() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    y = np.where(np.arange(500) < 250, -x, x) + rng.normal(size=500)  # sign flips half way
    hl = 50.0
    w = 0.5 ** ((499 - np.arange(500)) / hl)
    c = np.cov(rankdata(x), rankdata(y), aweights=w)
    ref = c[0, 1] / math.sqrt(c[0, 0] * c[1, 1])
    got = ewma_ic(x, y, hl)
    assert abs(got - ref) < 1e-12
    assert got > 0.4 > -0.1 > ewma_ic(x[:250], y[:250], hl)  # recent pairs dominate
    assert math.isnan(ewma_ic(np.ones(10), np.arange(10.0)))


# -- HSIC --------------------------------------------------------------------------------


def _gram(v: np.ndarray, sigma: float) -> np.ndarray:
    d = squareform(pdist(v.reshape(len(v), -1), "euclidean"))
    return np.exp(-(d**2) / (2 * sigma**2))


def test_median_bandwidth_is_the_median_pairwise_distance() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    assert abs(median_bandwidth(x) - float(np.median(pdist(x)))) < 1e-12


def test_biased_hsic_equals_explicit_trace_formula() -> None:
    rng = np.random.default_rng(3)
    m = 60
    x = rng.normal(size=m)
    y = np.sin(2 * x) + 0.3 * rng.normal(size=m)
    sx, sy = float(np.median(pdist(x[:, None]))), float(np.median(pdist(y[:, None])))
    k, lg = _gram(x, sx), _gram(y, sy)
    h = np.eye(m) - np.ones((m, m)) / m
    ref = np.trace(k @ h @ lg @ h) / (m - 1) ** 2
    assert abs(hsic(x, y) - ref) < 1e-12
    assert abs(hsic(x, y, bandwidth=(sx, sy)) - ref) < 1e-12
    assert abs(hsic(x, y, bandwidth=0.7) - np.trace(_gram(x, 0.7) @ h @ _gram(y, 0.7) @ h) / (m - 1) ** 2) < 1e-12


def test_unbiased_hsic_equals_the_u_statistic_over_distinct_quadruples() -> None:
    rng = np.random.default_rng(4)
    m = 9
    x = rng.normal(size=m)
    y = x**2 + 0.2 * rng.normal(size=m)
    k, lg = _gram(x, 1.1), _gram(y, 0.8)
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(m), 4):
        total += k[i, j] * lg[i, j] + k[i, j] * lg[q, r] - 2 * k[i, j] * lg[i, q]
        count += 1
    assert count == m * (m - 1) * (m - 2) * (m - 3)
    assert abs(hsic(x, y, bandwidth=(1.1, 0.8), unbiased=True) - total / count) < 1e-12


def test_hsic_sees_dependence_that_rank_correlation_misses() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=400)
    y_dep = x**2 + 0.1 * rng.normal(size=400)
    y_ind = rng.normal(size=400)
    assert abs(spearmanr(x, y_dep).statistic) < 0.15
    assert normalized_hsic(x, y_dep) > 0.3 > 0.05 > normalized_hsic(x, y_ind)
    with pytest.raises(QuantInputError):
        hsic(x, y_dep[:10])
    with pytest.raises(QuantInputError):
        hsic(x[:3], y_dep[:3], unbiased=True)


# -- Page-Hinkley ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "mode"),
    [({}, "both"), ({"delta": 0.05, "threshold": 10.0, "min_instances": 20}, "up"), ({"threshold": 5.0}, "down")],
)
def test_page_hinkley_matches_river(kwargs: dict, mode: str) -> None:
    rng = np.random.default_rng(6)
    data = np.concatenate([rng.normal(0, 1, 800), rng.normal(1.5, 1, 600), rng.normal(-1.0, 1, 600)])
    ours = PageHinkley(mode=mode, **kwargs)
    ref = RiverPageHinkley(mode=mode, **kwargs)
    got, want = [], []
    for i, v in enumerate(data):
        if ours.update(float(v)):
            got.append(i)
        ref.update(float(v))
        if ref.drift_detected:
            want.append(i)
    assert got == want and want  # same detections, and there are some


# -- look-ahead ------------------------------------------------------------------------


def _causal(prices: np.ndarray) -> np.ndarray:
    r = np.concatenate([[0.0], np.diff(np.log(prices))])
    return np.convolve(r, np.ones(10) / 10)[: len(r)]  # trailing 10-bar mean return


def _leaky(prices: np.ndarray) -> np.ndarray:
    lp = np.log(prices)
    out = np.zeros(len(lp))
    out[:-5] = lp[5:] - lp[:-5]  # the forward 5-bar return: uses the future
    return out


def test_leaks_future_flags_only_the_leaky_feature() -> None:
    rng = np.random.default_rng(8)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 500)))
    assert not leaks_future(_causal, prices, cut=300)
    assert leaks_future(_leaky, prices, cut=300)


# -- the gate ----------------------------------------------------------------------------

MIN = 60 * 1_000_000_000
DAY = 1440 * MIN


def _world(n: int, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """n 5-minute samples of 6 features and a price whose next 5-minute log return is
    0.4·f0 + 0.3·f1 + 0.2·f2 + 0.4·(f3² − 1) + 0.15·f4 + 0.05·f5 (+ noise), in units of 1e-3."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 6))
    signal = 0.4 * f[:, 0] + 0.3 * f[:, 1] + 0.2 * f[:, 2] + 0.4 * (f[:, 3] ** 2 - 1) + 0.15 * f[:, 4] + 0.05 * f[:, 5]
    r = 1e-3 * (signal + 0.5 * rng.normal(size=n))
    price = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r[:-1])]))
    return f, price


def test_a_feature_replaced_by_noise_is_disabled_within_the_schedule() -> None:
    step = 5 * MIN
    n = 14 * DAY // step + 2
    f, price = _world(n)
    names = ["f0", "f1", "f2", "f3", "f4", "f5"]
    week = 7 * DAY
    gate = FeatureGate(names, horizon_ns=step, schedule_ns=week, window=2000, halflife=300.0, start_ns=0)
    rng = np.random.default_rng(10)
    replaced_at = week + 2 * DAY  # f1, the second-best feature, becomes pure noise
    evaluations = []
    for i in range(n):
        ts = i * step
        vals = f[i].copy()
        if ts >= replaced_at:
            vals[1] = rng.normal()
        gate.observe(ts, list(vals), float(price[i]))
        if gate.maybe_evaluate(ts):
            evaluations.append((ts, {s.feature: s for s in gate.ranking()}))
    assert [ts for ts, _ in evaluations] == [week, 2 * week]
    first, second = evaluations[0][1], evaluations[1][1]
    assert not first["f1"].disabled and first["f5"].disabled  # before: the weakest feature is off
    assert second["f1"].disabled and second["f1"].since_ns == 2 * week  # within one schedule period
    assert not second["f5"].disabled and second["f5"].since_ns == 2 * week  # re-enabled: score recovered
    assert second["f1"].score is not None and second["f1"].score < second["f5"].score  # type: ignore[operator]
    # the non-monotone f3 has ~0 IC but a clear HSIC
    assert abs(first["f3"].ic or 0) < 0.1 and (first["f3"].hsic or 0) > 0.05
    assert not first["f3"].disabled and not second["f3"].disabled


def test_pairs_enter_only_after_their_horizon_has_closed() -> None:
    gate = FeatureGate(["a"], horizon_ns=10, min_pairs=10, hsic_window=10, window=50, warmup=2)
    for t in range(10):
        gate.observe(t, [float(t)], 100.0 + t)
    assert gate.ranking()[0].pairs == 0  # the first horizon closes at t = 10
    gate.observe(10, [10.0], 110.0)
    s = gate.ranking()[0]
    assert s.pairs == 1
    with pytest.raises(QuantInputError):
        gate.observe(5, [1.0], 100.0)  # event time going backwards


def test_a_leaky_feature_is_caught_by_the_lookahead_check_not_ranked_first() -> None:
    rng = np.random.default_rng(12)
    n = 3000
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    feats = {"causal": _causal, "leaky": _leaky, "noise": lambda p: np.sin(np.arange(len(p)) * 0.37)}
    values = {k: fn(prices) for k, fn in feats.items()}
    names = list(feats)
    gate = FeatureGate(names, horizon_ns=5, schedule_ns=10**9, min_pairs=200, start_ns=0)
    for t in range(n):
        gate.observe(t, [float(values[k][t]) for k in names], float(prices[t]))
    ranked = [s.feature for s in gate.ranking()]
    assert ranked[0] == "leaky"  # what an unchecked gate would do: perfect IC
    for k, fn in feats.items():
        if leaks_future(fn, prices, cut=n // 2):
            gate.exclude(k, "lookahead", now_ns=n)
    scores = gate.ranking()
    assert scores[-1].feature == "leaky" and scores[-1].disabled and scores[-1].reason == "lookahead"
    assert scores[0].feature != "leaky"
    gate.evaluate(n)
    assert "leaky" in gate.disabled()
