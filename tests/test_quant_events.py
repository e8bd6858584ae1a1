"""Event-study maths: hand-computed windows, calendar matching, placebo calibration under the
null (p-values uniform, even with intraday seasonality that fools the naive test), power
when an effect is injected, and the PCA projection against scikit-learn."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from stevie.quant.errors import QuantInputError
from stevie.quant.events import (
    MINUTE_NS,
    MinuteReturns,
    Windows,
    decay_weight,
    empirical_p_value,
    event_study,
    fit_projection,
    hour_of_day,
    placebo_pool,
    weekday,
    window_stats,
)

START = datetime(2025, 5, 5, tzinfo=UTC)  # a Monday
START_MIN = int(START.timestamp()) // 60


def _ns(day: int, hour: int, minute: int = 0) -> int:
    return (START_MIN + day * 1440 + hour * 60 + minute) * MINUTE_NS


def _series(r: np.ndarray, start_min: int = START_MIN) -> MinuteReturns:
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    t = (start_min - 1 + np.arange(close.size)) * MINUTE_NS
    return MinuteReturns.from_bars(t, close)


def test_from_bars_returns_and_gaps() -> None:
    t = np.array([0, 1, 2, 4]) * MINUTE_NS
    mr = MinuteReturns.from_bars(t, [100.0, 101.0, 100.0, 102.0])
    assert mr.start == 0 and mr.r.size == 5
    assert np.isnan(mr.r[0]) and np.isnan(mr.r[3]) and np.isnan(mr.r[4])  # minute 3 missing
    assert mr.r[1] == pytest.approx(np.log(1.01)) and mr.r[2] == pytest.approx(np.log(100 / 101))
    with pytest.raises(QuantInputError, match="whole minutes"):
        MinuteReturns.from_bars([0, 30_000_000_000], [1.0, 2.0])
    with pytest.raises(QuantInputError, match="> 0"):
        MinuteReturns.from_bars([0, MINUTE_NS], [1.0, 0.0])


def test_window_stats_equal_hand_computation() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(0.0001, 0.001, 500)
    mr = _series(r)
    w = Windows(pre=7, post=11, est=100)
    k = 300  # grid index of the event minute
    s = window_stats(mr, [(mr.start + k) * MINUTE_NS], w)
    x = mr.r
    est, pre, post = x[k - 7 - 100 : k - 7], x[k - 7 : k], x[k : k + 11]
    mu = est.mean()
    assert s.car_post[0] == pytest.approx(post.sum() - 11 * mu, abs=1e-12)
    assert s.car_pre[0] == pytest.approx(pre.sum() - 7 * mu, abs=1e-12)
    assert s.car_z[0] == pytest.approx((post.sum() - 11 * mu) / np.sqrt(11 * est.var(ddof=1)), rel=1e-9)
    exp_rv = np.sqrt(11 * np.mean(est**2))
    assert s.rv_post[0] == pytest.approx(np.sqrt(np.sum(post**2)), rel=1e-9)
    assert s.av_post[0] == pytest.approx(np.log(np.sqrt(np.sum(post**2)) / exp_rv), rel=1e-9)
    with pytest.raises(QuantInputError, match="outside the data"):
        window_stats(mr, [(mr.start + 50) * MINUTE_NS], w)


def test_calendar_helpers_and_pool_matching() -> None:
    assert weekday(START_MIN) == 0 and hour_of_day(START_MIN + 18 * 60 + 5) == 18
    mr = _series(np.random.default_rng(2).normal(0, 1e-3, 28 * 1440))
    ev = _ns(9, 18)  # Wednesday of week 2, 18:00
    w = Windows(60, 60, 1440)
    pool = placebo_pool(mr, ev, [ev], w, "weekday")
    mins = mr.start + pool
    assert set(weekday(mins).tolist()) == {2} and set(hour_of_day(mins).tolist()) == {18}
    assert np.all(np.abs(mins - ev // MINUTE_NS) >= 120)  # no overlap with the real event
    # Wednesdays 1..3 after the first day (est window), minus the event's own day: 3 × 60 − 60
    assert pool.size == 3 * 60
    bd = placebo_pool(mr, ev, [ev], w, "business_day")
    assert set(weekday(mr.start + bd).tolist()) == {0, 1, 2, 3, 4} and bd.size > pool.size


def test_empirical_p_value_counts_the_observation() -> None:
    x = np.arange(1, 100, dtype=float)  # 1..99
    assert empirical_p_value(99.0, x) == pytest.approx(2 / 100)
    assert empirical_p_value(1000.0, x) == pytest.approx(1 / 100)  # never 0
    assert empirical_p_value(-1000.0, x, "less") == pytest.approx(1 / 100)
    assert empirical_p_value(-50.0, np.concatenate([-x, x]), "two-sided") == pytest.approx((1 + 100) / 199)
    with pytest.raises(QuantInputError):
        empirical_p_value(float("nan"), x)


def _seasonal_returns(days: int, rng: np.random.Generator) -> np.ndarray:
    """Minute returns with an intraday vol pattern: 3× busier 13:00–21:00 UTC."""
    hours = (np.arange(days * 1440) % 1440) // 60
    sigma = np.where((hours >= 13) & (hours < 21), 3e-4, 1e-4)
    return rng.normal(0.0, sigma)


def test_placebo_p_values_are_calibrated_where_the_naive_test_is_not() -> None:
    """No event effect, but events at 18:00 in a busy hour: AV > 0 nearly always (the naive
    'vol rose' reading), yet the matched-placebo p-values are ~uniform."""
    rng = np.random.default_rng(3)
    ps, avs = [], []
    for _ in range(40):
        mr = _series(_seasonal_returns(35, rng))
        day = int(rng.integers(2, 33))
        ev = _ns(day, 18)
        res = event_study(mr, [ev], ["X"], w=Windows(60, 60, 1440), n_placebo=1000, match="business_day", seed=1)
        ps.append(res.events[0].p_av)
        avs.append(res.events[0].av_post)
    assert np.mean(np.array(avs) > 0) > 0.9  # the 24 h baseline is quieter than 18:00
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.0 <= np.mean(np.array(ps) < 0.1) <= 0.3


def test_injected_effects_are_found() -> None:
    rng = np.random.default_rng(4)
    r = _seasonal_returns(35, rng)
    evs = [_ns(9, 18), _ns(23, 18)]  # two Wednesdays
    for ev in evs:
        k = ev // MINUTE_NS - START_MIN
        r[k : k + 60] *= 3.0  # volatility triples for the hour after
        r[k] += 0.05  # and a 500 bp jump
    mr = _series(r)
    res = event_study(mr, evs, ["FOMC", "FOMC"], w=Windows(60, 60, 1440), n_placebo=2000)
    g = res.groups[0]
    assert g.n_events == 2 and g.placebo_av.size == 2000
    assert g.p_av < 0.01 and g.p_car < 0.05
    assert all(e.p_av < 0.02 for e in res.events)
    assert all(e.car_post > 0.03 for e in res.events)
    # day-level: same clock minute on each other Wednesday (4 in 35 days, minus the other event's)
    assert [e.days for e in res.events] == [3, 3]
    assert all(e.p_av_day == pytest.approx(1 / 4) for e in res.events)
    assert g.p_av_day == pytest.approx(1 / 10)  # all 3 × 3 combinations are beaten
    again = event_study(mr, evs, ["FOMC", "FOMC"], w=Windows(60, 60, 1440), n_placebo=2000)
    assert again.groups[0].p_av == g.p_av  # seeded: deterministic


def test_event_study_rejects_bad_input() -> None:
    mr = _series(np.random.default_rng(5).normal(0, 1e-3, 10 * 1440))
    with pytest.raises(QuantInputError, match="1000"):
        event_study(mr, [_ns(5, 12)], ["X"], n_placebo=10)
    with pytest.raises(QuantInputError, match="same length"):
        event_study(mr, [_ns(5, 12)], ["X", "Y"])


def test_projection_matches_sklearn_pca_and_decay() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(6)
    x = rng.normal(size=(60, 12)) @ rng.normal(size=(12, 12))
    p = fit_projection(x[:40], 4)
    ref = PCA(n_components=4).fit(x[:40])
    for i in range(4):  # same components up to sign
        assert abs(float(p.components[i] @ ref.components_[i])) == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(p.explained, ref.explained_variance_ratio_, rtol=1e-8)
    z, zr = p.transform(x[40:]), ref.transform(x[40:])
    np.testing.assert_allclose(np.abs(z), np.abs(zr), atol=1e-8)
    assert p.transform(x[0]).shape == (4,)
    assert decay_weight(0.0, 60) == 1.0 and decay_weight(60.0, 60) == pytest.approx(0.5)
    assert decay_weight(float("inf"), 60) == 0.0 and decay_weight(-1.0, 60) == 0.0
