"""Everything decision-free of one symbol, computed ahead of the replay in a worker process.

Per symbol, from its closes alone (no decision, position or other symbol enters):

- the walk-forward refits of HAR-RV and GARCH(1,1) (``stevie.backtest.fits``);
- the live vol core (``SymbolVol``) fed the bars closed by each decision time, cut at the fold
  starts exactly as a live feed would be, and its forecast (σ HAR, σ GARCH over the decision
  horizon) at every decision — the same calls, in the same order, as in the live service;
- every bar policy's signal at every decision (``stevie.backtest.signals``, the batch twins of
  the live functions, proven equal);
- the regime label at every decision (``stevie.quant.regime.RegimeDetector``, BOCPD, fed the
  symbol's decision-grid closes in event order: the label at T uses closes ≤ T only);
- the last settled funding rate at every decision.

The replay (``stevie.backtest.bars``) then only runs what depends on decisions: router, sizing,
guards, fills, funding payments. Symbols are independent, so they are prepared in parallel
(``workers`` spawned processes); the result does not depend on the number of workers.
This module imports no polars (workers are spawned, not forked).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from stevie.backtest.fits import PrecomputedFitter, _fit, min_train_bars, schedule
from stevie.backtest.signals import batch_signals
from stevie.quant.regime import RegimeDetector
from stevie.services.vol.core import SymbolVol

MINUTE_MS = 60_000


@dataclass(frozen=True)
class PrepareJob:
    """Inputs of one symbol (arrays shape (n,) of its bars; funding (m,) settlements)."""

    symbol: str
    open_time_ms: np.ndarray
    close: np.ndarray
    funding_t: np.ndarray
    funding_r: np.ndarray
    decisions: np.ndarray  # bar indices of the decisions, ascending
    minutes_per_period: int
    garch_window: int
    refit_every_bars: int
    horizon_min: int
    lookback_bars: int
    policies: tuple[str, ...]
    regime_max_run: int


@dataclass(frozen=True)
class Prepared:
    """Per decision k (shape (d,)): ``ready`` (the vol models are fitted), ``sigma_har`` /
    ``sigma_garch`` (return units over the horizon, NaN when not ready), ``funding`` (fraction
    per 8 h), ``regime`` (label), ``shadows`` (d, policies) int8. ``fits``: walk-forward fits
    computed; ``garch_failures``: folds whose GARCH did not converge (previous one kept)."""

    symbol: str
    ready: np.ndarray
    sigma_har: np.ndarray
    sigma_garch: np.ndarray
    funding: np.ndarray
    regime: list[str]
    shadows: np.ndarray
    fits: int
    garch_failures: int


def prepare(job: PrepareJob) -> Prepared:
    """Fits, vol forecasts, signals, regimes and funding of one symbol at its decisions."""
    t, c, idx = job.open_time_ms, job.close, job.decisions
    mpp, first = job.minutes_per_period, min_train_bars(job.minutes_per_period)
    points = schedule(t, mpp, job.refit_every_bars)
    fits = dict(_fit((job.symbol, n, c[:n], mpp, job.garch_window))[1:] for n in points)
    fitter = PrecomputedFitter(job.symbol, {(job.symbol, n): f for n, f in fits.items()}, first)
    sv = SymbolVol(job.symbol, mpp, job.garch_window, job.refit_every_bars, fitter=fitter)
    d = idx.size
    ready = np.zeros(d, dtype=bool)
    s_har = np.full(d, np.nan)
    s_garch = np.full(d, np.nan)
    fed, bi = 0, 0
    t_list = t.tolist()
    c_list = c.tolist()
    for k in range(d):
        upto = int(idx[k]) + 1
        # feed the bars closed by the decision, cut at the walk-forward fold starts
        while fed < upto:
            while bi < len(points) and points[bi] <= fed:
                bi += 1
            nxt = points[bi] if bi < len(points) and points[bi] <= upto else upto
            if sv.garch is None and nxt < first:
                break  # still warming up: fed in one piece at the first fit
            lo = 0 if sv.garch is None else fed
            sv.add_bars(t_list[lo:nxt], c_list[lo:nxt])
            fed = nxt
        if sv.garch is None:
            continue
        fc = sv.forecast(job.horizon_min)
        ready[k], s_har[k], s_garch[k] = True, fc.sigmaHAR, fc.sigmaGARCH
    close_ms = t[idx] + MINUTE_MS
    fi = np.searchsorted(job.funding_t, close_ms, side="right") - 1
    fund = np.where(fi >= 0, job.funding_r[np.maximum(fi, 0)] if job.funding_r.size else 0.0, 0.0)
    upto_all = idx.astype(np.int64) + 1
    shadows = np.column_stack([batch_signals(p, c, upto_all, fund, job.lookback_bars) for p in job.policies]).astype(
        np.int8
    )
    det = RegimeDetector(max_run=job.regime_max_run)
    regime: list[str] = []
    prev_t = None
    for k in range(d):
        tk = int(close_ms[k])
        if prev_t is not None and tk - prev_t != job.horizon_min * MINUTE_MS:
            det.break_chain()  # a gap in the decision grid: no return across it
        prev_t = tk
        v = det.update(float(c[idx[k]]), tk * 1_000_000)
        regime.append(v.label if v is not None else "unknown")
    return Prepared(job.symbol, ready, s_har, s_garch, fund, regime, shadows, len(fits), fitter.garch_failures)


def prepare_all(jobs: list[PrepareJob], workers: int) -> dict[str, Prepared]:
    """``prepare`` of every symbol (longest first on ``workers`` spawned processes; ≤ 1 → here)."""
    order = sorted(jobs, key=lambda j: (-j.close.size, j.symbol))
    if workers <= 1 or len(order) < 2:
        results = [prepare(j) for j in order]
    else:
        with ProcessPoolExecutor(min(workers, len(order)), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(prepare, order, chunksize=1))
    return {r.symbol: r for r in results}
