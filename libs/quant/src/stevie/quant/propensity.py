"""The probability that one Gaussian score is the largest: the Thompson-sampling propensity.

Scores S_a ~ N(m_a, s_a²), independent (a = 0 … K−1). The propensity of arm i is

    P(S_i = max_a S_a) = ∫ φ(u) Π_{j≠i} Φ(a_j + b_j·u) du,   a_j = (m_i − m_j)/s_j, b_j = s_i/s_j,

(substituting S_i = m_i + s_i·u; φ, Φ the standard normal density and CDF). For two arms it
is Φ((m_i − m_j)/√(s_i² + s_j²)). For more arms there is no closed form, so the integral is
computed by a composite Gauss–Legendre rule (8 nodes per piece) over u ∈ [−8.5, 8.5] (the
mass outside is 2Φ(−8.5) ≈ 2e-17), with breakpoints at u ∈ ``BREAKS``. A plain Gauss–Hermite
rule fails when the widths differ by orders of magnitude: an arm j with s_j ≪ s_i makes
Φ(a_j + b_j·u) a near-step in u (b_j ≫ 1), which a global polynomial rule cannot resolve (it
missed the two-arm closed form by more than 0.002). Here every such *sharp* arm whose step
lies inside the range adds its own breakpoints, u = −a_j/b_j + ``BREAKS``/b_j, so each piece is
at most one local scale wide around every transition and the integrand is smooth on it.
Measured against the closed form on 40,000 random two-arm cases with widths from 1e-4 to 10
(ratios up to 1e5): |error| ≤ 1e-15; the K-arm probabilities sum to 1 within 1e-14
(``tests/test_quant_bandit.py`` checks both and agreement with Monte Carlo within its error).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from stevie.quant.errors import QuantInputError

BREAKS = np.array([-8.5, -6.5, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.5, 8.5])
"""Breakpoints of the composite rule in units of the arm's own σ."""
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _nodes(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u and weights w·φ(u) of the composite Gauss–Legendre rule on sorted ``breaks``."""
    half = 0.5 * np.diff(breaks)
    u = ((breaks[:-1] + half)[:, None] + half[:, None] * _GL_X).ravel()
    w = (half[:, None] * _GL_W).ravel() * np.exp(-0.5 * u * u) * _INV_SQRT_2PI
    return u, w


_BASE_U, _BASE_W = _nodes(BREAKS)
_OTHERS: dict[int, list[np.ndarray]] = {}


def _others(k: int) -> list[np.ndarray]:
    """Per arm i, the indices j ≠ i (cached per K)."""
    o = _OTHERS.get(k)
    if o is None:
        o = _OTHERS[k] = [np.array([j for j in range(k) if j != i], dtype=np.intp) for i in range(k)]
    return o


def win_probability(means: np.ndarray, sds: np.ndarray, i: int, check: bool = True) -> float:
    """P(S_i ≥ S_j for all j) for independent S_a ~ N(means[a], sds[a]²).

    ``means``, ``sds``: shape (K,), float64, the scores' means and standard deviations (same
    units); ``sds`` > 0. Returns a probability in [0, 1] (absolute accuracy ≈ 1e-12, see the
    module doc). Raises QuantInputError on mismatched shapes, a non-finite value, sds ≤ 0 or
    ``i`` out of range. ``check=False`` skips these checks for a caller that guarantees them
    (float64 arrays, finite, sds > 0: ``LinearTS.choose``)."""
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(sds, dtype=np.float64)
    k = m.size
    if check:
        if m.ndim != 1 or s.shape != m.shape or not 0 <= i < k:
            raise QuantInputError(f"means and sds must be 1-d of one length, 0 <= i < K; got {m.shape}, {s.shape}, {i}")
        if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
            raise QuantInputError("means must be finite and sds finite and > 0")
    if k == 1:
        return 1.0
    o = _others(k)[i]
    mo, so = m[o], s[o]
    a = (m[i] - mo) / so
    b = s[i] / so
    step = -a / b  # where arm j's factor crosses ½, in units of s_i around m_i
    edge = BREAKS[-1]
    sharp = (b > 1.0) & (np.abs(step) < edge + edge / b)
    if sharp.any():
        extra = (step[sharp][:, None] + BREAKS / b[sharp][:, None]).ravel()
        u, w = _nodes(np.sort(np.concatenate([BREAKS, extra[np.abs(extra) < edge]])))
    else:
        u, w = _BASE_U, _BASE_W
    return min(1.0, max(0.0, float(w @ ndtr(a[:, None] + b[:, None] * u).prod(axis=0))))
