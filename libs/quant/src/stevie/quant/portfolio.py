"""Portfolio risk and allocation: historical-simulation VaR/CVaR and a CVaR-budgeted optimiser.

- VaR/CVaR (historical simulation), losses L = −r: VaR_α = the α-quantile of L;
  CVaR_α = VaR_α + E[(L − VaR_α)⁺] / (1 − α) (Rockafellar & Uryasev 2000, "Optimization of
  conditional value-at-risk", J. Risk 2(3); equals the mean loss beyond VaR on a continuum).
- Allocation: maximise μᵀw subject to Σᵢ wᵢ·CVaRᵢ ≤ B (per-asset CVaR budget), portfolio
  vol sqrt(wᵀΣw) ≤ σ*, Σ w ≤ 1 (the rest in cash), lo ≤ w ≤ hi. Convex (a second-order cone
  program), solved with cvxpy (Clarabel); without a vol target it is the linear program
  that ``scipy.optimize.linprog`` solves, which the tests use as the reference.
- Kelly-lite advisory per asset: ``stevie.quant.sizing.kelly_lite``.
Units: returns per period as given (e.g. daily simple returns); weights are fractions of
capital; vol and CVaR per period.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from stevie.quant.errors import QuantInputError
from stevie.quant.sizing import kelly_lite


def _returns_2d(returns: object, min_rows: int = 10) -> np.ndarray:
    try:
        r = np.asarray(returns, dtype=float)
    except (TypeError, ValueError) as exc:
        raise QuantInputError(f"returns must be numeric: {exc}") from exc
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] < min_rows or r.shape[1] < 1:
        raise QuantInputError(f"returns must be (T ≥ {min_rows}, N ≥ 1), got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise QuantInputError("returns contain NaN or infinite values")
    return r


def var_cvar(returns: object, alpha: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Historical VaR and CVaR of the loss −r per column, each shape (N,), positive = loss.
    Raises QuantInputError on bad input or alpha outside (0, 1)."""
    if not 0 < alpha < 1:
        raise QuantInputError(f"alpha must be in (0, 1), got {alpha}")
    losses = -_returns_2d(returns)
    var = np.quantile(losses, alpha, axis=0, method="inverted_cdf")
    cvar = var + np.mean(np.maximum(losses - var, 0.0), axis=0) / (1 - alpha)
    return var, cvar


@dataclass(frozen=True)
class Allocation:
    """Optimiser result; arrays are per asset in the input column order."""

    weights: np.ndarray
    cvar: np.ndarray
    expected_return: float
    portfolio_vol: float
    portfolio_cvar: float
    kelly: np.ndarray
    status: str


def optimize(
    returns: object,
    cvar_budget: float,
    vol_target: float | None = None,
    alpha: float = 0.95,
    lower: float = 0.0,
    upper: float = 1.0,
    kappa: float = 0.25,
) -> Allocation:
    """Maximise expected return under the CVaR budget, the vol target and the bounds.

    ``returns`` (T, N). Raises QuantInputError on bad input; RuntimeError if the solver fails.
    Weights below 1e-7 are set to 0 (solver noise)."""
    r = _returns_2d(returns)
    if not (np.isfinite(cvar_budget) and cvar_budget >= 0):
        raise QuantInputError(f"cvar_budget must be >= 0, got {cvar_budget}")
    if vol_target is not None and not (np.isfinite(vol_target) and vol_target > 0):
        raise QuantInputError(f"vol_target must be > 0, got {vol_target}")
    if not lower <= upper:
        raise QuantInputError("lower must be <= upper")
    mu = r.mean(axis=0)
    _, cvar = var_cvar(r, alpha)
    n = r.shape[1]
    w = cp.Variable(n)
    cons = [cvar @ w <= cvar_budget, cp.sum(w) <= 1, w >= lower, w <= upper]
    centred = (r - mu) / np.sqrt(r.shape[0] - 1)
    if vol_target is not None:
        cons.append(cp.norm(centred @ w, 2) <= vol_target)
    prob = cp.Problem(cp.Maximize(mu @ w), cons)
    prob.solve(solver=cp.CLARABEL)
    if w.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"portfolio optimisation failed: {prob.status}")
    weights = np.where(np.abs(w.value) < 1e-7, 0.0, w.value)
    port = r @ weights
    _, pcvar = var_cvar(port, alpha)
    sig = r.std(axis=0, ddof=1)
    kelly = np.array([kelly_lite(m, s, kappa) if s > 0 else 0.0 for m, s in zip(mu, sig, strict=True)])
    return Allocation(
        weights,
        cvar,
        float(mu @ weights),
        float(np.linalg.norm(centred @ weights)),
        float(pcvar[0]),
        kelly,
        str(prob.status),
    )
