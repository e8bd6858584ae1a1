"""Champion/challenger promotion: Hansen's SPA test and the deflated Sharpe ratio.

All Sharpe ratios here are **per period** (not annualised): SR = mean(r)/std(r) of the
period returns r (T,), std with ddof = 1.

- PSR (Bailey & López de Prado 2012, "The Sharpe Ratio Efficient Frontier", J. of Risk
  15(2), eq. 11): the probability that the true SR exceeds SR*, given T observations with
  skewness γ₃ and (non-excess) kurtosis γ₄ of the returns:
  PSR(SR*) = Φ[(SR − SR*)·√(T − 1) / √(1 − γ₃·SR + (γ₄ − 1)/4·SR²)].
- Expected maximum Sharpe of N independent trials whose Sharpe ratios have standard
  deviation σ_SR under the null of no skill (Bailey & López de Prado 2014, "The Deflated
  Sharpe Ratio", J. of Portfolio Management 40(5), eq. 2; γ = Euler–Mascheroni):
  SR₀ = σ_SR·[(1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e))].
- DSR = PSR(SR₀): the selected strategy's PSR against the best Sharpe that N trials of
  pure noise would be expected to show. Promotion asks DSR ≥ 0.95.
- SPA (Hansen 2005, "A Test for Superior Predictive Ability", JBES 23(4)): null = no
  challenger beats the benchmark (champion) in expected loss; the stationary bootstrap
  (Politis & Romano 1994) gives the lower / consistent / upper p-values. Computed by
  ``arch.bootstrap.SPA`` (K. Sheppard's ``arch``), seeded. Losses are −PnL per period.

Bad inputs (too few observations, NaN, zero variance) raise ``QuantInputError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from stevie.quant.errors import QuantInputError, finite_1d

EULER_GAMMA = 0.5772156649015329


def sharpe(returns: object) -> float:
    """Per-period Sharpe ratio mean(r)/std(r, ddof=1). Raises on < 2 values or zero variance."""
    r = finite_1d("returns", returns, 2)
    sd = float(np.std(r, ddof=1))
    if sd == 0:
        raise QuantInputError("returns have zero variance: the Sharpe ratio is undefined")
    return float(np.mean(r) / sd)


def psr_from_moments(sr: float, t: int, skew: float, kurtosis: float, sr_benchmark: float = 0.0) -> float:
    """PSR from the moments: Φ[(SR − SR*)√(T − 1)/√(1 − γ₃SR + (γ₄ − 1)/4·SR²)].
    ``kurtosis`` is the non-excess kurtosis γ₄ (3 for a Gaussian)."""
    if t < 2:
        raise QuantInputError(f"PSR needs T >= 2 observations, got {t}")
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not (math.isfinite(var) and var > 0):
        raise QuantInputError(f"PSR variance term 1 − γ₃SR + (γ₄−1)/4·SR² = {var} is not positive")
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(t - 1) / math.sqrt(var)))


def psr(returns: object, sr_benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio of ``returns`` (T,) against the per-period ``sr_benchmark``,
    with the sample skewness and kurtosis (biased moment estimators, scipy.stats defaults)."""
    r = finite_1d("returns", returns, 3)
    sr = sharpe(r)
    return psr_from_moments(sr, r.size, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False)), sr_benchmark)


def expected_max_sharpe(n_trials: int, sr_std: float) -> float:
    """E[max SR] of ``n_trials`` independent zero-skill trials with Sharpe std ``sr_std``
    (per period): σ_SR·[(1 − γ)Φ⁻¹(1 − 1/N) + γΦ⁻¹(1 − 1/(Ne))]; 0 for one trial."""
    if n_trials < 1:
        raise QuantInputError(f"n_trials must be >= 1, got {n_trials}")
    if not (math.isfinite(sr_std) and sr_std >= 0):
        raise QuantInputError(f"sr_std must be finite and >= 0, got {sr_std}")
    if n_trials == 1:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(sr_std * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe(returns: object, trial_sharpes: object) -> float:
    """DSR = PSR(SR₀) with SR₀ = expected_max_sharpe(N, std(trial_sharpes, ddof=1)), N the
    number of trials (every backtest run, parameter set and PBT member counted), their
    Sharpe ratios per period like ``returns``'. One trial: DSR = PSR(0)."""
    trials = finite_1d("trial_sharpes", trial_sharpes, 1)
    sr_std = float(np.std(trials, ddof=1)) if trials.size > 1 else 0.0
    return psr(returns, expected_max_sharpe(trials.size, sr_std))


@dataclass(frozen=True)
class SpaPvalues:
    """Hansen's SPA p-values: ``lower`` (liberal), ``consistent`` (Hansen's), ``upper``
    (White's Reality Check, conservative)."""

    lower: float
    consistent: float
    upper: float


def spa(benchmark_losses: object, model_losses: object, reps: int, block_size: int, seed: int) -> SpaPvalues:
    """Hansen's SPA test of the benchmark (T,) against the models (T, k) (or (T,)), losses
    per period (lower is better; use −PnL). ``arch.bootstrap.SPA`` with the stationary
    bootstrap, mean block length ``block_size``, ``reps`` resamples, studentised, seeded."""
    from arch.bootstrap import SPA

    b = finite_1d("benchmark_losses", benchmark_losses, 10)
    m = np.asarray(model_losses, dtype=float)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] != b.size or m.shape[1] < 1:
        raise QuantInputError(f"model_losses must have shape ({b.size}, k), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise QuantInputError("model_losses must be finite")
    if reps < 100 or not 1 <= block_size <= b.size:
        raise QuantInputError(f"need reps >= 100 and 1 <= block_size <= T = {b.size}")
    test = SPA(b, m, block_size=block_size, reps=reps, bootstrap="stationary", seed=seed)
    test.compute()
    pv = test.pvalues
    return SpaPvalues(float(pv["lower"]), float(pv["consistent"]), float(pv["upper"]))


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(spa_pvalue: float | None, dsr: float | None, p_max: float = 0.05, dsr_min: float = 0.95) -> Decision:
    """Promote when SPA's consistent p-value < ``p_max`` and DSR ≥ ``dsr_min``; otherwise say
    which test failed (or could not be computed: ``None``)."""
    fails = []
    if spa_pvalue is None:
        fails.append("SPA not computed (too few aligned periods)")
    elif not spa_pvalue < p_max:
        fails.append(f"SPA p = {spa_pvalue:.3f} >= {p_max}")
    if dsr is None:
        fails.append("DSR not computed (too few periods or zero variance)")
    elif not dsr >= dsr_min:
        fails.append(f"DSR = {dsr:.3f} < {dsr_min}")
    if fails:
        return Decision(False, "; ".join(fails))
    return Decision(True, f"SPA p = {spa_pvalue:.3f} < {p_max} and DSR = {dsr:.3f} >= {dsr_min}")
