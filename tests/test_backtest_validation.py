"""stevie.quant.validation: purged k-fold and walk-forward against scikit-learn's unpurged
splitters, and the purge/embargo against a brute-force overlap check by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import KFold, TimeSeriesSplit

from stevie.quant.errors import QuantInputError
from stevie.quant.validation import Split, leaks, purged_kfold, walk_forward


def brute_train(t0, t1, test, embargo):
    """Training set by definition: not in the test fold, [t0_i, t1_i] disjoint from the closed
    test interval, and not starting within the embargo after it."""
    start, end = t0[test[0]], max(t1[j] for j in test)
    out = []
    for i in range(len(t0)):
        if i in set(test.tolist()):
            continue
        overlaps = t0[i] <= end and t1[i] >= start
        embargoed = end < t0[i] <= end + embargo
        if not overlaps and not embargoed:
            out.append(i)
    return np.array(out, dtype=np.int64)


def test_zero_length_labels_equal_sklearn_kfold():
    t = np.arange(103, dtype=np.int64) * 60
    for (train, test), ref in zip(purged_kfold(t, t, 5), KFold(5).split(t), strict=True):
        assert np.array_equal(test, ref[1]) and np.array_equal(train, ref[0])


def test_walk_forward_equals_time_series_split():
    t = np.arange(200, dtype=np.int64)
    ours = walk_forward(t, t, min_train=200 - 4 * 30, test_size=30, max_train=50)
    ref = list(TimeSeriesSplit(n_splits=4, test_size=30, max_train_size=50).split(t))
    assert len(ours) == 4
    for (train, test), (rtrain, rtest) in zip(ours, ref, strict=True):
        assert np.array_equal(train, rtrain) and np.array_equal(test, rtest)


def test_purge_by_hand():
    # labels look 3 steps ahead: observation i's label ends at t0[i + 3]
    t0 = np.arange(20, dtype=np.int64) * 10
    t1 = t0 + 30
    folds = purged_kfold(t0, t1, 4, embargo=10)
    train, test = folds[1]  # test = 5..9, interval [50, 120]
    assert test.tolist() == [5, 6, 7, 8, 9]
    # before: t1 < 50 → i ≤ 1 (t1[1] = 40; t1[2] = 50 overlaps); after: t0 > 120 + 10 → i ≥ 14
    assert train.tolist() == [0, 1, 14, 15, 16, 17, 18, 19]
    wf = walk_forward(t0, t1, min_train=10, test_size=5)
    assert wf[0].test.tolist() == list(range(10, 15)) and wf[0].train.tolist() == list(range(0, 7))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=6, max_size=40),
    st.lists(st.integers(0, 25), min_size=40, max_size=40),
    st.integers(2, 6),
    st.integers(0, 20),
)
def test_purged_kfold_matches_brute_force(gaps, horizons, k, embargo):
    t0 = np.cumsum(np.array(gaps, dtype=np.int64))
    t1 = t0 + np.array(horizons[: t0.size], dtype=np.int64)
    k = min(k, t0.size)
    for train, test in purged_kfold(t0, t1, k, embargo):
        assert np.array_equal(train, brute_train(t0, t1, test, embargo))
        assert leaks(Split(train, test), t0, t1, embargo).size == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(5, 60), st.integers(1, 9), st.integers(1, 10), st.integers(0, 6))
def test_walk_forward_never_trains_on_or_after_its_test(n, min_train, test_size, horizon):
    t0 = np.arange(n, dtype=np.int64)
    t1 = t0 + horizon
    if min_train >= n:
        return
    for train, test in walk_forward(t0, t1, min_train, test_size):
        assert train.size == 0 or (train.max() < test.min() and t1[train].max() < t0[test[0]])
        assert np.array_equal(train, brute_train(t0, t1, test, 0)[brute_train(t0, t1, test, 0) < test[0]])


def test_leaks_reports_an_unpurged_fold():
    t0 = np.arange(10, dtype=np.int64)
    t1 = t0 + 2
    bad = Split(np.arange(0, 5, dtype=np.int64), np.arange(5, 10, dtype=np.int64))
    assert leaks(bad, t0, t1).tolist() == [3, 4]


def test_bad_inputs():
    t = np.arange(5, dtype=np.int64)
    with pytest.raises(QuantInputError):
        purged_kfold(t, t, 1)
    with pytest.raises(QuantInputError):
        purged_kfold(t[::-1].copy(), t[::-1].copy(), 2)
    with pytest.raises(QuantInputError):
        purged_kfold(t, t - 1, 2)
    with pytest.raises(QuantInputError):
        walk_forward(t, t, 5, 1)
    with pytest.raises(QuantInputError):
        purged_kfold(t.astype(float), t.astype(float), 2)
