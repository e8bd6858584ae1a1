"""Calibration of probability forecasts and bounded nudges from the miscalibration.

Forecasts pᵢ ∈ [0, 1] of a binary outcome yᵢ ∈ {0, 1} (here: the router's probability that
a decision's reward is positive, against whether it was).

- Brier score (Brier 1950): mean((pᵢ − yᵢ)²).
- Reliability diagram over ``n_bins`` equal-width bins of [0, 1], bin b = (b/B, (b+1)/B]
  (the first bin also holds 0) — the binning of ``sklearn.calibration.calibration_curve``
  with ``strategy='uniform'``: per non-empty bin, mean forecast, observed frequency, count.
- ECE (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017): Σ_b (n_b/n)·|mean p_b − freq_b|.

The router's forecast is p = Φ(z) with z = m/w, m the posterior mean score and w its
posterior width (both scale with the exploration scale v: w ∝ v). Multiplying v by (1 + δ)
turns the forecast into Φ(z/(1 + δ)) — a temperature T = 1 + δ on the z-score (Platt-style
scaling, Guo et al. 2017 §4.2). ``fit_temperature`` finds the T minimising the log loss of
Φ(z/T) on the window; ``nudges`` turns it into the bounded
``routerPriorDelta`` = clip(T − 1, ±bound) (relative change of the router's prior/exploration
scale) and ``sizingCapDelta`` = clip(gain·(ECE target − ECE), ±bound) (relative change of the
sizing cap: shrink it when forecasts are worse calibrated than the target, grow it back
when better).

Bad inputs raise ``QuantInputError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from stevie.quant.errors import QuantInputError, finite_1d


def _py(p: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    pa = finite_1d("p", p, 1)
    ya = finite_1d("y", y, 1)
    if pa.size != ya.size:
        raise QuantInputError(f"p and y must have the same length, got {pa.size} and {ya.size}")
    if np.any(pa < 0) or np.any(pa > 1):
        raise QuantInputError("p must lie in [0, 1]")
    if not np.all((ya == 0) | (ya == 1)):
        raise QuantInputError("y must be 0 or 1")
    return pa, ya


def _bins(n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise QuantInputError(f"n_bins must be >= 1, got {n_bins}")
    return np.linspace(0.0, 1.0, n_bins + 1)


def brier(p: object, y: object) -> float:
    """Brier score mean((p − y)²) ∈ [0, 1]; lower is better."""
    pa, ya = _py(p, y)
    return float(np.mean((pa - ya) ** 2))


def reliability(p: object, y: object, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, count) per non-empty equal-width bin, each shape
    (m,), bins in increasing order; bin b holds p ∈ (b/B, (b+1)/B] (0 in the first)."""
    pa, ya = _py(p, y)
    edges = _bins(n_bins)
    ids = np.searchsorted(edges[1:-1], pa)
    count = np.bincount(ids, minlength=n_bins)
    psum = np.bincount(ids, weights=pa, minlength=n_bins)
    ysum = np.bincount(ids, weights=ya, minlength=n_bins)
    nz = count > 0
    return psum[nz] / count[nz], ysum[nz] / count[nz], count[nz]


def ece(p: object, y: object, n_bins: int = 10) -> float:
    """Expected calibration error Σ_b (n_b/n)|mean p_b − freq_b| over equal-width bins."""
    mean_p, freq, count = reliability(p, y, n_bins)
    return float(np.sum(count * np.abs(mean_p - freq)) / np.sum(count))


def win_probability(mean: object, width: object) -> np.ndarray:
    """Φ(m/w): posterior probability that the expected reward is > 0 (width > 0)."""
    m = np.asarray(mean, dtype=float)
    w = np.asarray(width, dtype=float)
    if m.shape != w.shape or not (np.all(np.isfinite(m)) and np.all(np.isfinite(w))) or np.any(w <= 0):
        raise QuantInputError("mean and width must be finite, of one shape, width > 0")
    return np.asarray(stats.norm.cdf(m / w))


def fit_temperature(z: object, y: object, t_min: float = 0.2, t_max: float = 10.0) -> float:
    """argmin over T ∈ [t_min, t_max] of the log loss of Φ(z/T) against y (bounded Brent)."""
    za = finite_1d("z", z, 1)
    ya = finite_1d("y", y, 1)
    if za.size != ya.size or not np.all((ya == 0) | (ya == 1)):
        raise QuantInputError("z and y must have one length, y in {0, 1}")
    if not 0 < t_min < t_max:
        raise QuantInputError("need 0 < t_min < t_max")

    def loss(t: float) -> float:
        lp1 = stats.norm.logcdf(za / t)
        lp0 = stats.norm.logcdf(-za / t)
        return float(-np.mean(ya * lp1 + (1 - ya) * lp0))

    res = optimize.minimize_scalar(loss, bounds=(t_min, t_max), method="bounded", options={"xatol": 1e-6})
    return float(res.x)


@dataclass(frozen=True)
class NudgeBounds:
    """Absolute bounds of each nudge (relative changes), the ECE target and the sizing gain."""

    prior: float = 0.5
    sizing: float = 0.25
    ece_target: float = 0.05
    sizing_gain: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.prior < 1 and 0 <= self.sizing < 1 and 0 <= self.ece_target <= 1 and self.sizing_gain >= 0):
            raise QuantInputError("nudge bounds must lie in [0, 1), ece_target in [0, 1], gain >= 0")


@dataclass(frozen=True)
class Nudges:
    """routerPriorDelta: v ← v·(1 + δ); sizingCapDelta: s_max ← s_max·(1 + δ)."""

    routerPriorDelta: float
    sizingCapDelta: float
    temperature: float
    ece: float


def _clip(x: float, b: float) -> float:
    return float(min(max(x, -b), b))


def nudges(z: object, y: object, bounds: NudgeBounds, n_bins: int = 10) -> Nudges:
    """Bounded nudges from forecasts Φ(z) and outcomes y (see the module doc). Never outside
    ±bounds.prior and ±bounds.sizing."""
    za = finite_1d("z", z, 1)
    p = stats.norm.cdf(za)
    e = ece(p, y, n_bins)
    t = fit_temperature(za, y, 1.0 / (1.0 + bounds.prior) if bounds.prior > 0 else 0.999, 1.0 + max(bounds.prior, 1e-3))
    prior = _clip(t - 1.0, bounds.prior)
    sizing = _clip(bounds.sizing_gain * (bounds.ece_target - e), bounds.sizing)
    if not (math.isfinite(prior) and math.isfinite(sizing)):
        raise QuantInputError("nudges are not finite")
    return Nudges(prior, sizing, t, e)
