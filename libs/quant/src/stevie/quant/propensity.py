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
_GL_W_PHI = _GL_W / np.sqrt(2.0 * np.pi)  # the weights times φ's constant


def _nodes(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u and weights w·φ(u) of the composite Gauss–Legendre rule on sorted ``breaks``."""
    h = 0.5 * np.diff(breaks)[:, None]
    u = ((breaks[:-1, None] + h) + h * _GL_X).ravel()
    w = (h * _GL_W_PHI).ravel()
    w *= np.exp(-0.5 * u * u)
    return u, w


_BASE_U, _BASE_W = _nodes(BREAKS)


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
    # K is small (the policies): the per-arm coefficients in Python floats, the nodes in numpy
    ml, sl = m.tolist(), s.tolist()
    mi, si = ml[i], sl[i]
    edge = float(BREAKS[-1])
    a: list[float] = []
    b: list[float] = []
    extra: list[np.ndarray] = []
    for j in range(k):
        if j == i:
            continue
        aj, bj = (mi - ml[j]) / sl[j], si / sl[j]
        a.append(aj)
        b.append(bj)
        step = -aj / bj  # where arm j's factor crosses ½, in units of s_i around m_i
        if bj > 1.0 and abs(step) < edge + edge / bj:  # sharp, and its step lies in the range
            extra.append(step + BREAKS / bj)
    if extra:
        pts = np.concatenate([BREAKS, *extra])
        u, w = _nodes(np.sort(pts[np.abs(pts) <= edge]))
    else:
        u, w = _BASE_U, _BASE_W
    z = np.array(a)[:, None] + np.array(b)[:, None] * u
    return min(1.0, max(0.0, float(w @ ndtr(z).prod(axis=0))))
