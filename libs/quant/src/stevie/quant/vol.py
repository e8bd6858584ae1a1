"""Volatility models: realised variance, HAR-RV and GARCH(1,1).

Sources:
- Realised variance: Andersen, Bollerslev, Diebold & Labys (2003), "Modeling and Forecasting
  Realized Volatility", Econometrica 71(2): RV = Σ r², r the intraday log returns.
- HAR-RV: Corsi (2009), "A Simple Approximate Long-Memory Model of Realized Volatility",
  J. Financial Econometrics 7(2): RV_t = a + b_d RV_{t−1} + b_w mean(RV_{t−5..t−1})
  + b_m mean(RV_{t−22..t−1}) + ε, fitted by OLS.
- GARCH(1,1): Bollerslev (1986), J. Econometrics 31(3): r_t = μ + ε_t,
  σ²_t = ω + α ε²_{t−1} + β σ²_{t−1}, Gaussian maximum likelihood; the recursion is
  started from the exponentially weighted backcast of the ``arch`` package (K. Sheppard,
  ``arch.univariate``: weights 0.94^i over the first 75 squared residuals), which is the
  reference our fit is tested against.

Units: returns are log returns per bar (1 minute unless stated), variances in return² per
bar or per period, σ in return units over the stated horizon (not annualised).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter

from stevie.quant.errors import QuantInputError, finite_1d

HAR_LAGS = (1, 5, 22)


def log_returns(closes: object) -> np.ndarray:
    """Log returns ln(P_t / P_{t−1}), shape (n−1,). Raises QuantInputError on non-positive prices."""
    p = finite_1d("closes", closes, 2)
    if np.any(p <= 0):
        raise QuantInputError("closes must be > 0")
    return np.diff(np.log(p))


def realized_variance(returns_1m: object, bars_per_day: int = 1440) -> np.ndarray:
    """Realised variance per period: the sum of squared returns over each complete block of
    ``bars_per_day`` bars (a trailing incomplete block is dropped). Shape (n // bars_per_day,),
    units return² per period. Raises QuantInputError when no complete period exists."""
    r = finite_1d("returns_1m", returns_1m)
    if bars_per_day < 1:
        raise QuantInputError("bars_per_day must be >= 1")
    n = r.size // bars_per_day
    if n == 0:
        raise QuantInputError(f"need at least {bars_per_day} returns for one period, got {r.size}")
    return np.asarray((r[: n * bars_per_day] ** 2).reshape(n, bars_per_day).sum(axis=1))


@dataclass(frozen=True)
class HarParams:
    """HAR-RV coefficients (a in variance units per period, b_* dimensionless)."""

    a: float
    b_d: float
    b_w: float
    b_m: float


def har_design(rv: object, lags: tuple[int, int, int] = HAR_LAGS) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the HAR regression: rows t = m..n−1 with X_t = [1, RV_{t−1},
    mean(RV_{t−w..t−1}), mean(RV_{t−m..t−1})], y_t = RV_t, (d, w, m) = ``lags``."""
    x = finite_1d("rv", rv, lags[2] + 2)
    d, w, m = lags
    c = np.concatenate([[0.0], np.cumsum(x)])

    def mean_lag(k: int) -> np.ndarray:
        t = np.arange(m, x.size)
        return (c[t] - c[t - k]) / k

    X = np.column_stack([np.ones(x.size - m), mean_lag(d), mean_lag(w), mean_lag(m)])
    return X, x[m:]


def fit_har(rv: object, lags: tuple[int, int, int] = HAR_LAGS) -> HarParams:
    """HAR-RV coefficients by ordinary least squares. ``rv`` shape (n,), n ≥ lags[2] + 2.
    Raises QuantInputError on short or non-finite input."""
    X, y = har_design(rv, lags)
    if X.shape[0] < 5:
        raise QuantInputError(f"HAR needs at least {lags[2] + 5} periods, got {X.shape[0] + lags[2]}")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return HarParams(*map(float, coef))


def har_forecast(params: HarParams, rv: object, lags: tuple[int, int, int] = HAR_LAGS) -> float:
    """One-period-ahead RV forecast from the last ``lags[2]`` values of ``rv`` (variance per
    period, floored at 0). Raises QuantInputError on short input."""
    x = finite_1d("rv", rv, lags[2])
    d, w, m = lags
    f = params.a + params.b_d * x[-d:].mean() + params.b_w * x[-w:].mean() + params.b_m * x[-m:].mean()
    return float(max(f, 0.0))


@dataclass(frozen=True)
class GarchParams:
    """GARCH(1,1) with constant mean, in the units of the fitted returns."""

    mu: float
    omega: float
    alpha: float
    beta: float
    loglik: float

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta

    @property
    def unconditional_variance(self) -> float:
        """ω / (1 − α − β)."""
        return self.omega / (1.0 - self.persistence)


def arch_backcast(resid: np.ndarray) -> float:
    """Σ w_i ε_i², w_i ∝ 0.94^i over the first min(75, n) residuals (``arch``'s backcast)."""
    tau = min(75, resid.size)
    w = 0.94 ** np.arange(tau)
    return float(np.sum(resid[:tau] ** 2 * (w / w.sum())))


def garch_variance(resid: np.ndarray, omega: float, alpha: float, beta: float, backcast: float) -> np.ndarray:
    """σ²_t for t = 0..n−1: σ²_0 = ω + (α + β)·backcast, σ²_t = ω + α ε²_{t−1} + β σ²_{t−1}."""
    x = np.empty_like(resid)
    x[0] = omega + (alpha + beta) * backcast
    x[1:] = omega + alpha * resid[:-1] ** 2
    return np.asarray(lfilter([1.0], [1.0, -beta], x))


def garch_loglik(returns: np.ndarray, mu: float, omega: float, alpha: float, beta: float, backcast: float) -> float:
    """Gaussian log-likelihood −½ Σ [ln 2π + ln σ²_t + ε²_t / σ²_t]."""
    e = returns - mu
    s2 = garch_variance(e, omega, alpha, beta, backcast)
    return float(-0.5 * np.sum(np.log(2 * np.pi) + np.log(s2) + e**2 / s2))


def fit_garch(returns: object) -> GarchParams:
    """GARCH(1,1) by Gaussian maximum likelihood (SLSQP) with ω > 0, α, β ≥ 0, α + β < 1.

    ``returns`` shape (n,), n ≥ 100, in return units per bar. Internally scaled to unit
    variance for conditioning; parameters and the log-likelihood are reported in the
    original units. Raises QuantInputError on bad input, RuntimeError if the optimiser fails.
    """
    r = finite_1d("returns", returns, 100)
    scale = float(r.std())
    if scale <= 0:
        raise QuantInputError("returns have zero variance")
    y = r / scale
    backcast = arch_backcast(y - y.mean())

    def nll(theta: np.ndarray) -> float:
        return -garch_loglik(y, theta[0], theta[1], theta[2], theta[3], backcast)

    best = None
    for a0, b0 in ((0.05, 0.90), (0.10, 0.80), (0.20, 0.60), (0.03, 0.95)):
        start = np.array([y.mean(), max(1 - a0 - b0, 1e-3), a0, b0])
        res = minimize(
            nll,
            start,
            method="SLSQP",
            bounds=[(-10.0, 10.0), (1e-8, 10.0), (0.0, 1.0), (0.0, 1.0)],
            constraints=[{"type": "ineq", "fun": lambda t: 0.99999 - t[2] - t[3]}],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        if res.success and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise RuntimeError("GARCH optimisation did not converge")
    mu, omega, alpha, beta = best.x
    loglik = -best.fun - r.size * np.log(scale)
    return GarchParams(float(mu * scale), float(omega * scale**2), float(alpha), float(beta), float(loglik))


@dataclass(frozen=True)
class GarchState:
    """Online GARCH state: σ² for the next bar and the last residual seen."""

    sigma2_next: float


def garch_state(params: GarchParams, returns: object) -> GarchState:
    """The state after filtering ``returns`` with fitted ``params`` (σ² of the next bar)."""
    r = finite_1d("returns", returns, 2)
    e = r - params.mu
    s2 = garch_variance(e, params.omega, params.alpha, params.beta, arch_backcast(e))
    return GarchState(float(params.omega + params.alpha * e[-1] ** 2 + params.beta * s2[-1]))


def garch_update(params: GarchParams, state: GarchState, r: float) -> GarchState:
    """One step of the online recursion between refits: σ²_{t+1} = ω + α (r_t − μ)² + β σ²_t."""
    if not np.isfinite(r):
        raise QuantInputError("return must be finite")
    return GarchState(params.omega + params.alpha * (r - params.mu) ** 2 + params.beta * state.sigma2_next)


def garch_forecast(params: GarchParams, state: GarchState, horizon_mins: int) -> float:
    """σ of the sum of the next ``horizon_mins`` 1-minute returns:
    sqrt(Σ_{k=1..h} E[σ²_{t+k}]), E[σ²_{t+k}] = σ̄² + (α+β)^{k−1} (σ²_{t+1} − σ̄²)."""
    if horizon_mins < 1:
        raise QuantInputError("horizon_mins must be >= 1")
    p = params.persistence
    vbar = params.unconditional_variance
    k = np.arange(horizon_mins)
    return float(np.sqrt(np.sum(vbar + p**k * (state.sigma2_next - vbar))))


def har_sigma(rv_forecast: float, horizon_mins: int, minutes_per_period: int = 1440) -> float:
    """σ over ``horizon_mins`` from a one-period RV forecast, assuming variance spreads evenly
    within the period: sqrt(RV · h / minutes_per_period)."""
    if horizon_mins < 1:
        raise QuantInputError("horizon_mins must be >= 1")
    return float(np.sqrt(max(rv_forecast, 0.0) * horizon_mins / minutes_per_period))


def forecast_vol(
    returns_1m: object, horizon_mins: int, minutes_per_period: int = 1440, garch_window: int = 20_000
) -> dict[str, float]:
    """σ of the return over ``horizon_mins`` from both models, fitted on ``returns_1m``:
    ``{"sigmaHAR": ..., "sigmaGARCH": ...}``. HAR on per-period RV (period =
    ``minutes_per_period`` bars), GARCH on the last ``garch_window`` returns.
    Raises QuantInputError on bad input (e.g. too little history for HAR)."""
    r = finite_1d("returns_1m", returns_1m, 2)
    rv = realized_variance(r, minutes_per_period)
    har = fit_har(rv)
    tail = r[-garch_window:]
    g = fit_garch(tail)
    return {
        "sigmaHAR": har_sigma(har_forecast(har, rv), horizon_mins, minutes_per_period),
        "sigmaGARCH": garch_forecast(g, garch_state(g, tail), horizon_mins),
    }


def qlike(realized: np.ndarray, forecast: np.ndarray) -> float:
    """Mean QLIKE loss RV/F − ln(RV/F) − 1 (Patton 2011, robust to noisy RV proxies)."""
    ratio = np.asarray(realized) / np.asarray(forecast)
    return float(np.mean(ratio - np.log(ratio) - 1))
