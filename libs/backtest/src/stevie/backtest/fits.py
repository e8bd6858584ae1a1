"""Walk-forward refits of the vol models, computed ahead of the replay (they are decision-free:
a fit only sees the bars of its training window) and in parallel worker processes.

The schedule is ``stevie.quant.validation.walk_forward`` over the bars (t0 = open time, label
end t1 = close time − 1 ms): the first fit when the HAR model has enough periods, then one per
``refit_every`` bars, each on the bars strictly before its fold — exactly where the live vol
core (``SymbolVol.add_bars``) refits when it is fed the same bars. This module imports no
polars (workers are spawned, not forked).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from stevie.quant import vol
from stevie.quant.errors import QuantInputError
from stevie.quant.validation import leaks, walk_forward
from stevie.services.vol.core import VolFit, fit_models

MINUTE_MS = 60_000


def min_train_bars(minutes_per_period: int) -> int:
    """Closes needed before the first fit: HAR needs 22 + 5 periods of RV (lags 1, 5, 22 and at
    least five regression rows), i.e. 27·period returns."""
    return (vol.HAR_LAGS[2] + 5) * minutes_per_period + 1


def schedule(open_time_ms: np.ndarray, minutes_per_period: int, refit_every: int) -> list[int]:
    """Bar counts at which the models are (re)fitted: the start of each walk-forward test fold.
    Raises QuantInputError (via the splitter) when there are too few bars to fit once."""
    t0 = open_time_ms.astype(np.int64)
    t1 = t0 + MINUTE_MS - 1
    out = []
    for split in walk_forward(t0, t1, min_train_bars(minutes_per_period), refit_every):
        if leaks(split, t0, t1).size or split.train.size != split.test[0]:
            raise RuntimeError("walk-forward fold trains on data at or after its test block")
        out.append(int(split.test[0]))
    return out


FitResult = VolFit | tuple[vol.HarParams, np.ndarray]
"""A fit, or (HAR, RV) when the GARCH optimiser did not converge on that window."""


def _fit(args: tuple[str, int, np.ndarray, int, int]) -> tuple[str, int, FitResult]:
    symbol, n, closes, mpp, window = args
    try:
        return symbol, n, fit_models(closes, mpp, window)
    except RuntimeError:  # GARCH did not converge on this window: try its last half, quarter
        r = vol.log_returns(closes)
        rv = vol.realized_variance(r, mpp)
        har = vol.fit_har(rv)
        for w in (window // 2, window // 4):
            tail = r[-w:]
            try:
                g = vol.fit_garch(tail)
            except (RuntimeError, QuantInputError):
                continue
            return symbol, n, VolFit(har, rv, g, vol.garch_state(g, tail))
        # none converged (e.g. a tick-bound price with many zero returns): an EWMA-like GARCH,
        # α = 0.06, β = 0.939 (RiskMetrics 1996 decay), ω = (1 − α − β)·sample variance
        tail = r[-window:]
        a, b = 0.06, 0.939
        g = vol.GarchParams(float(tail.mean()), (1 - a - b) * float(tail.var()), a, b, float("nan"))
        return symbol, n, VolFit(har, rv, g, vol.garch_state(g, tail))


def fit_all(
    closes: dict[str, np.ndarray], points: dict[str, list[int]], mpp: int, window: int, workers: int
) -> dict[tuple[str, int], FitResult]:
    """Every scheduled fit: (symbol, bars) → ``fit_models(closes[:bars])``. ``workers`` ≤ 1 fits
    in this process. Deterministic: the result does not depend on the number of workers."""
    jobs = [(s, n, closes[s][:n], mpp, window) for s in sorted(points) for n in points[s]]
    jobs.sort(key=lambda j: -j[1])  # longest first: better packing on few cores
    if workers <= 1 or len(jobs) < 2:
        results = [_fit(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_fit, jobs, chunksize=1))
    return {(s, n): f for s, n, f in results}


class ScheduledFits(Mapping[tuple[str, int], FitResult]):
    """The walk-forward fits of one symbol, each computed on first use: (symbol, n) → ``_fit`` of
    ``closes[:n]`` for the bar counts n of ``points`` (the schedule); other keys are missing.
    A fit reads only its training window, so computing it when the replay reaches its fold
    gives the same result as computing it ahead. ``computed``: fits done so far."""

    def __init__(self, symbol: str, closes: np.ndarray, points: list[int], mpp: int, window: int) -> None:
        self.symbol, self.closes, self.points, self.mpp, self.window = symbol, closes, set(points), mpp, window
        self.done: dict[int, FitResult] = {}

    def __getitem__(self, key: tuple[str, int]) -> FitResult:
        sym, n = key
        if sym != self.symbol or n not in self.points:
            raise KeyError(key)
        if n not in self.done:
            self.done[n] = _fit((sym, n, self.closes[:n], self.mpp, self.window))[2]
        return self.done[n]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter((self.symbol, n) for n in sorted(self.points))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def computed(self) -> int:
        return len(self.done)


class PrecomputedFitter:
    """A ``SymbolVol.fitter`` that returns the fit computed ahead (or on first use,
    ``ScheduledFits``) for this symbol and bar count. Raises QuantInputError before the first
    scheduled fit and RuntimeError at an unscheduled one (a bug: the replay fed bars across a
    fold boundary)."""

    def __init__(self, symbol: str, fits: Mapping[tuple[str, int], FitResult], first: int) -> None:
        self.symbol, self.fits, self.first = symbol, fits, first
        self.last: VolFit | None = None
        self.garch_failures = 0

    def __call__(self, closes: list[float], minutes_per_period: int, garch_window: int) -> VolFit:
        """A GARCH window that did not converge keeps the previous GARCH parameters, with the
        state refiltered on the new window (and counts in ``garch_failures``)."""
        n = len(closes)
        if n < self.first:
            raise QuantInputError(f"{self.symbol}: {n} bars, the first fit needs {self.first}")
        fit = self.fits.get((self.symbol, n))
        if fit is None:
            raise RuntimeError(f"{self.symbol}: refit at {n} bars is not on the walk-forward schedule")
        if not isinstance(fit, VolFit):
            self.garch_failures += 1
            if self.last is None:
                raise QuantInputError(f"{self.symbol}: the first GARCH fit did not converge")
            tail = vol.log_returns(closes)[-garch_window:]
            fit = VolFit(fit[0], fit[1], self.last.garch, vol.garch_state(self.last.garch, tail))
        self.last = fit
        return fit
