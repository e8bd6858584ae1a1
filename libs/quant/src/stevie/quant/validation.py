"""Look-ahead-free splits for fitting on time series: walk-forward and purged k-fold with an
embargo (López de Prado 2018, *Advances in Financial Machine Learning*, ch. 7 "Cross-Validation
in Finance": §7.4.1 purging, §7.4.2 embargo, snippet 7.3 ``PurgedKFold``).

Every observation i has a start time ``t0[i]`` (when its features are known) and a label end
time ``t1[i] ≥ t0[i]`` (the last instant its label — a return, a realised variance, a reward —
looks at). Times are integers (ns or ms since the epoch, any one unit), ``t0`` non-decreasing.

- **Purging**: a training observation whose label interval [t0_i, t1_i] overlaps the test
  interval [t0[first test], max t1[test]] (both closed) is dropped: its label would have seen
  the test period.
- **Embargo**: training observations that *start* within ``embargo`` after the end of the test
  interval are dropped too (serial correlation leaks the test labels into features right after).
- **Walk-forward**: test blocks of ``test_size`` consecutive observations from ``min_train`` on;
  each trains only on observations *before* its block (expanding, or the last ``max_train``),
  purged. What a model fitted on such a fold is used for never precedes its training data.

With zero-length labels (t1 = t0) and no embargo, ``purged_kfold`` is exactly scikit-learn's
``KFold(n_splits)`` (unshuffled) and ``walk_forward`` is ``TimeSeriesSplit(test_size=...,
max_train_size=...)`` — the tests check both against scikit-learn and the purge by brute force.
Errors raise ``QuantInputError``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stevie.quant.errors import QuantInputError


class Split(NamedTuple):
    """Indices (int64, ascending) of one fold's training and test observations."""

    train: np.ndarray
    test: np.ndarray


def _times(t0: object, t1: object) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(t0)
    b = np.asarray(t1)
    if a.ndim != 1 or a.shape != b.shape:
        raise QuantInputError(f"t0 and t1 must be 1-d of one length, got {a.shape} and {b.shape}")
    if a.size and not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise QuantInputError("t0 and t1 must be integer times (ns or ms)")
    a, b = a.astype(np.int64), b.astype(np.int64)
    if np.any(np.diff(a) < 0):
        raise QuantInputError("t0 must be non-decreasing")
    if np.any(b < a):
        raise QuantInputError("every label must end at or after it starts (t1 >= t0)")
    return a, b


def purge(candidates: np.ndarray, t0: np.ndarray, t1: np.ndarray, test: np.ndarray, embargo: int = 0) -> np.ndarray:
    """``candidates`` without the test indices, the observations whose [t0, t1] overlaps the test
    interval [t0[test[0]], max t1[test]], and those starting within ``embargo`` after it."""
    if test.size == 0:
        return candidates
    start, end = t0[test[0]], int(t1[test].max())
    c = candidates[~np.isin(candidates, test)]
    keep = (t1[c] < start) | (t0[c] > end + embargo)
    return c[keep]


def purged_kfold(t0: object, t1: object, n_splits: int, embargo: int = 0) -> list[Split]:
    """K contiguous test folds (``np.array_split`` of the index, as ``KFold``), each with every
    other observation as training data except those purged against it and embargoed after it.

    t0, t1: shape (n,) integer times; n_splits ≥ 2 and ≤ n; embargo ≥ 0 in the unit of the times
    (López de Prado uses a fraction of the sample; pass ``embargo = t0 span · fraction``)."""
    a, b = _times(t0, t1)
    if not 2 <= n_splits <= a.size:
        raise QuantInputError(f"need 2 <= n_splits <= n ({a.size}), got {n_splits}")
    if embargo < 0:
        raise QuantInputError("embargo must be >= 0")
    idx = np.arange(a.size, dtype=np.int64)
    return [Split(purge(idx, a, b, test, embargo), test) for test in np.array_split(idx, n_splits)]


def walk_forward(t0: object, t1: object, min_train: int, test_size: int, max_train: int | None = None) -> list[Split]:
    """Walk-forward folds: test blocks [s, s + test_size) for s = min_train, min_train +
    test_size, … (the last block may be shorter), training on [max(0, s − max_train), s) (all
    of [0, s) when ``max_train`` is None), purged against the block.

    Raises QuantInputError when min_train < 1, test_size < 1, max_train < 1, or nothing is
    left to test (min_train ≥ n)."""
    a, b = _times(t0, t1)
    n = a.size
    if min_train < 1 or test_size < 1 or (max_train is not None and max_train < 1):
        raise QuantInputError("min_train, test_size and max_train must be >= 1")
    if min_train >= n:
        raise QuantInputError(f"min_train ({min_train}) leaves nothing to test in {n} observations")
    out = []
    for s in range(min_train, n, test_size):
        lo = 0 if max_train is None else max(0, s - max_train)
        test = np.arange(s, min(s + test_size, n), dtype=np.int64)
        out.append(Split(purge(np.arange(lo, s, dtype=np.int64), a, b, test), test))
    return out


def leaks(split: Split, t0: object, t1: object, embargo: int = 0) -> np.ndarray:
    """Training indices of ``split`` that overlap its test interval or fall in its embargo
    (empty for a correct split): the check a fit runs before it trusts its fold."""
    a, b = _times(t0, t1)
    clean = purge(split.train, a, b, split.test, embargo)
    return np.setdiff1d(split.train, clean)
