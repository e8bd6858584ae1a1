"""Position sizing: uncertainty-scaled size, volatility targeting, Kelly-lite.

- Uncertainty size: s = s_max · sigmoid(−w / w*), w the posterior uncertainty width
  (MISSION capability 7). Monotone decreasing in w; s_max/2 at w = 0.
- Volatility targeting (Moreira & Muir 2017, "Volatility-Managed Portfolios", J. Finance
  72(4)): notional = capital · σ_target / σ_forecast over the same horizon, capped.
- Kelly-lite: f = κ · μ / σ² (fractional Kelly, Thorp 2006 "The Kelly criterion in
  blackjack, sports betting and the stock market"), clipped to [−f_max, f_max].
"""

from __future__ import annotations

import math

from stevie.quant.errors import QuantInputError


def _finite(name: str, x: float, positive: bool = False) -> float:
    if not math.isfinite(x) or (positive and x <= 0):
        raise QuantInputError(f"{name} must be finite{' and > 0' if positive else ''}, got {x}")
    return float(x)


def sigmoid(x: float) -> float:
    """1 / (1 + e^{−x}), numerically stable for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def uncertainty_size(s_max: float, w: float, w_star: float) -> float:
    """s_max · sigmoid(−w / w*) in the units of ``s_max``. ``w ≥ 0``, ``w* > 0``.
    Raises QuantInputError otherwise."""
    _finite("s_max", s_max)
    if _finite("w", w) < 0:
        raise QuantInputError(f"w must be >= 0, got {w}")
    return s_max * sigmoid(-w / _finite("w_star", w_star, positive=True))


def vol_target_notional(
    capital_quote: float, sigma_target: float, sigma_forecast: float, max_leverage: float = 1.0
) -> float:
    """Notional (quote units) = capital · σ_target / σ_forecast, capped at capital · max_leverage.
    Both σ over the same horizon. Raises QuantInputError on non-positive σ."""
    _finite("capital_quote", capital_quote)
    lev = _finite("sigma_target", sigma_target, True) / _finite("sigma_forecast", sigma_forecast, True)
    return capital_quote * min(lev, _finite("max_leverage", max_leverage, True))


def kelly_lite(mu: float, sigma: float, kappa: float = 0.25, f_max: float = 1.0) -> float:
    """Fractional Kelly f = κ·μ/σ², clipped to [−f_max, f_max]; μ and σ per the same period."""
    f = _finite("kappa", kappa, True) * _finite("mu", mu) / _finite("sigma", sigma, True) ** 2
    cap = _finite("f_max", f_max, True)
    return max(-cap, min(cap, f))
