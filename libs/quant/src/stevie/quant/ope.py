"""Off-policy evaluation (OPE) of contextual-bandit policies from logged decisions.

Logged data: n rounds of (context xᵢ, action aᵢ ∈ {0..K−1}, propensity πb(aᵢ|xᵢ) of the
logging policy, reward rᵢ). A target (evaluation) policy πe is given as ``action_dist``,
shape (n, K), with πe(a|xᵢ) in row i (rows sum to 1; a deterministic policy is one-hot).
The importance weight is wᵢ = πe(aᵢ|xᵢ) / πb(aᵢ|xᵢ); ``q_hat`` (n, K) is a reward model
q̂(xᵢ, a). Every estimator returns the estimated value V(πe) = E[r] under πe, in the
reward's own units (here: bps per decision). With Eₙ the average over the n rounds:

- IPS (Horvitz–Thompson; Strehl et al. 2010), clipped at λ:  Eₙ[min(wᵢ, λ)·rᵢ]
- SNIPS (Swaminathan & Joachims 2015, "The Self-Normalized Estimator for Counterfactual
  Learning", NeurIPS):  Σ wᵢrᵢ / Σ wᵢ
- DM (direct method):  Eₙ[Σₐ πe(a|xᵢ)·q̂(xᵢ, a)]
- DR (Dudík, Langford & Li 2011, "Doubly Robust Policy Evaluation and Learning", ICML):
  Eₙ[Σₐ πe(a|xᵢ)q̂(xᵢ, a) + min(wᵢ, λ)·(rᵢ − q̂(xᵢ, aᵢ))]
- SNDR (self-normalised DR):  Eₙ[Σₐ πe(a|xᵢ)q̂(xᵢ, a) + wᵢ(rᵢ − q̂(xᵢ, aᵢ)) / Eₙ[w]]

These are the estimator definitions of the Open Bandit Pipeline (Saito et al. 2021,
``obp.ope.estimators``: InverseProbabilityWeighting with ``lambda_``,
SelfNormalizedInverseProbabilityWeighting, DirectMethod, DoublyRobust,
SelfNormalizedDoublyRobust) for a single slate position. DM needs q̂ fitted out of sample:
``cross_fit_q_hat`` fits a ridge model per action on the other time blocks (cross-fitting,
Chernozhukov et al. 2018), so no row is scored by a model that saw it.

Bad inputs (wrong shapes, NaN, propensities outside (0, 1], action ids outside [0, K),
rows of ``action_dist`` not summing to 1) raise ``QuantInputError``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from stevie.quant.errors import QuantInputError

_ROW_TOL = 1e-6


def _logged(
    reward: object, action: object, pscore: object, action_dist: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(reward, dtype=float)
    p = np.asarray(pscore, dtype=float)
    pi = np.asarray(action_dist, dtype=float)
    a_raw = np.asarray(action)
    if r.ndim != 1 or r.size == 0:
        raise QuantInputError(f"reward must be a non-empty 1-d array, got shape {r.shape}")
    n = r.size
    if p.shape != (n,) or a_raw.shape != (n,):
        raise QuantInputError(f"action and pscore must have shape ({n},), got {a_raw.shape} and {p.shape}")
    if pi.ndim != 2 or pi.shape[0] != n or pi.shape[1] < 1:
        raise QuantInputError(f"action_dist must have shape ({n}, K), got {pi.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p)) and np.all(np.isfinite(pi))):
        raise QuantInputError("reward, pscore and action_dist must be finite")
    if not np.issubdtype(a_raw.dtype, np.integer) and (
        not np.all(np.isfinite(a_raw.astype(float))) or np.any(a_raw.astype(float) % 1 != 0)
    ):
        raise QuantInputError("action must hold integer action ids")
    a = a_raw.astype(np.int64)
    k = pi.shape[1]
    if np.any(a < 0) or np.any(a >= k):
        raise QuantInputError(f"action ids must lie in [0, {k})")
    if np.any(p <= 0) or np.any(p > 1):
        raise QuantInputError("pscore (logging propensities) must lie in (0, 1]")
    if np.any(pi < 0) or np.any(np.abs(pi.sum(axis=1) - 1.0) > _ROW_TOL):
        raise QuantInputError("every row of action_dist must be a probability distribution (sum to 1)")
    return r, a, p, pi


def _q(q_hat: object, shape: tuple[int, ...]) -> np.ndarray:
    q = np.asarray(q_hat, dtype=float)
    if q.shape != shape:
        raise QuantInputError(f"q_hat must have shape {shape}, got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise QuantInputError("q_hat must be finite")
    return q


def _clip(clip: float) -> float:
    if not clip > 0:  # also rejects NaN
        raise QuantInputError(f"clip must be > 0, got {clip}")
    return float(clip)


def importance_weights(action: object, pscore: object, action_dist: object, clip: float = np.inf) -> np.ndarray:
    """wᵢ = min(πe(aᵢ|xᵢ)/πb(aᵢ|xᵢ), clip), shape (n,)."""
    n = np.asarray(pscore).reshape(-1).size
    _, a, p, pi = _logged(np.zeros(n), action, pscore, action_dist)
    w = pi[np.arange(n), a] / p
    return np.minimum(w, _clip(clip))


def ips(reward: object, action: object, pscore: object, action_dist: object, clip: float = np.inf) -> float:
    """Inverse propensity scoring, weights clipped at ``clip`` (λ): Eₙ[min(w, λ)·r]."""
    r, a, p, pi = _logged(reward, action, pscore, action_dist)
    w = np.minimum(pi[np.arange(r.size), a] / p, _clip(clip))
    return float(np.mean(w * r))


def snips(reward: object, action: object, pscore: object, action_dist: object) -> float:
    """Self-normalised IPS: Σ wᵢrᵢ / Σ wᵢ (0 weight everywhere → QuantInputError: the target
    policy never takes a logged action, so the logs say nothing about it)."""
    r, a, p, pi = _logged(reward, action, pscore, action_dist)
    w = pi[np.arange(r.size), a] / p
    total = float(np.sum(w))
    if total <= 0:
        raise QuantInputError("SNIPS undefined: the target policy gives zero weight to every logged action")
    return float(np.sum(w * r) / total)


def dm(action_dist: object, q_hat: object) -> float:
    """Direct method: Eₙ[Σₐ πe(a|xᵢ)·q̂(xᵢ, a)] (q̂ must come from a model fitted on other rows)."""
    pi = np.asarray(action_dist, dtype=float)
    if pi.ndim != 2 or pi.shape[0] == 0:
        raise QuantInputError(f"action_dist must have shape (n, K), got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0) or np.any(np.abs(pi.sum(axis=1) - 1.0) > _ROW_TOL):
        raise QuantInputError("every row of action_dist must be a probability distribution (sum to 1)")
    q = _q(q_hat, pi.shape)
    return float(np.mean(np.sum(pi * q, axis=1)))


def dr(
    reward: object, action: object, pscore: object, action_dist: object, q_hat: object, clip: float = np.inf
) -> float:
    """Doubly robust: Eₙ[Σₐ πe(a|x)q̂(x, a) + min(w, λ)(r − q̂(x, a))]; unbiased when either
    the propensities or q̂ are right (Dudík et al. 2011)."""
    r, a, p, pi = _logged(reward, action, pscore, action_dist)
    q = _q(q_hat, pi.shape)
    idx = np.arange(r.size)
    w = np.minimum(pi[idx, a] / p, _clip(clip))
    return float(np.mean(np.sum(pi * q, axis=1) + w * (r - q[idx, a])))


def sndr(reward: object, action: object, pscore: object, action_dist: object, q_hat: object) -> float:
    """Self-normalised DR: Eₙ[Σₐ πe(a|x)q̂(x, a) + w(r − q̂(x, a)) / Eₙ[w]] (OBP's SNDR).
    All-zero weights leave the DM term alone."""
    r, a, p, pi = _logged(reward, action, pscore, action_dist)
    q = _q(q_hat, pi.shape)
    idx = np.arange(r.size)
    w = pi[idx, a] / p
    mw = float(np.mean(w))
    correction = w * (r - q[idx, a]) / mw if mw > 0 else np.zeros_like(r)
    return float(np.mean(np.sum(pi * q, axis=1) + correction))


def effective_sample_size(weights: object) -> float:
    """Kish's effective sample size (Σw)²/Σw² of importance weights (n when all are equal,
    → 1 when one weight dominates, 0 when all are 0)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise QuantInputError("weights must be a 1-d array of finite non-negative values")
    s2 = float(np.sum(w * w))
    return 0.0 if s2 == 0 else float(np.sum(w) ** 2 / s2)


def bootstrap_ci(
    estimator: Callable[..., float],
    *args: object,
    alpha: float = 0.05,
    n_boot: int = 10_000,
    seed: int = 0,
    **kw: Any,
) -> tuple[float, float]:
    """Percentile bootstrap (Efron & Tibshirani 1993, §13.3) (1 − α) interval of
    ``estimator(*args, **kw)``: the n rounds are resampled with replacement (every
    array argument whose first axis has length n is indexed by the same draw; other
    arguments pass through), ``n_boot`` times, from ``numpy.random.default_rng(seed)``
    (reproducible). Resamples on which the estimator is undefined (QuantInputError, e.g.
    SNIPS with all weights 0) are dropped; if more than half are, QuantInputError."""
    if not 0 < alpha < 1:
        raise QuantInputError(f"alpha must lie in (0, 1), got {alpha}")
    if n_boot < 10:
        raise QuantInputError(f"n_boot must be >= 10, got {n_boot}")
    arrays = [np.asarray(x) if isinstance(x, np.ndarray | list | tuple) else x for x in args]
    sized = [x for x in arrays if isinstance(x, np.ndarray) and x.ndim >= 1]
    if not sized:
        raise QuantInputError("bootstrap_ci needs at least one array argument")
    n = sized[0].shape[0]
    if n < 2:
        raise QuantInputError(f"bootstrap_ci needs at least 2 rounds, got {n}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    ok = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        boot = [x[idx] if isinstance(x, np.ndarray) and x.ndim >= 1 and x.shape[0] == n else x for x in arrays]
        try:
            stats[ok] = estimator(*boot, **kw)
        except QuantInputError:
            continue
        ok += 1
    if ok < n_boot / 2:
        raise QuantInputError(f"the estimator is undefined on {n_boot - ok} of {n_boot} resamples")
    lo, hi = np.quantile(stats[:ok], [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# -- reward model and target policies ----------------------------------------------------


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """Ridge regression with an unpenalised intercept: argmin ‖y − b − Xβ‖² + α‖β‖²,
    solved on centred data (as ``sklearn.linear_model.Ridge(alpha)``). Returns (b, β)."""
    xm, ym = x.mean(axis=0), float(y.mean())
    xc = x - xm
    beta = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return ym - float(xm @ beta), beta


def cross_fit_q_hat(
    context: object, action: object, reward: object, n_actions: int, alpha: float = 1.0, folds: int = 2
) -> np.ndarray:
    """q̂(xᵢ, a), shape (n, K), each row predicted by per-action ridge models fitted on the
    *other* folds (contiguous time blocks, no shuffling: a row is never scored by a model
    that saw it). An action with fewer than 2 training rows in the other folds is predicted
    by the mean reward of those folds; a fold set with no rows at all predicts 0.

    context (n, d) float; action (n,) int in [0, K); reward (n,) float; alpha: ridge penalty."""
    x = np.asarray(context, dtype=float)
    a = np.asarray(action).astype(np.int64)
    r = np.asarray(reward, dtype=float)
    n = r.size
    if x.ndim != 2 or x.shape[0] != n or a.shape != (n,):
        raise QuantInputError(f"context must be (n, d) and action (n,) with n = {n}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
        raise QuantInputError("context and reward must be finite")
    if n_actions < 1 or np.any(a < 0) or np.any(a >= n_actions):
        raise QuantInputError(f"action ids must lie in [0, {n_actions})")
    if folds < 2 or alpha <= 0:
        raise QuantInputError("need folds >= 2 and alpha > 0")
    q = np.zeros((n, n_actions))
    bounds = np.linspace(0, n, min(folds, max(n, 1)) + 1).astype(int)
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        train = np.ones(n, dtype=bool)
        train[lo:hi] = False
        if not train.any():
            continue
        fallback = float(r[train].mean())
        for k in range(n_actions):
            m = train & (a == k)
            if m.sum() < 2:
                q[lo:hi, k] = fallback
                continue
            b, beta = ridge_fit(x[m], r[m], alpha)
            q[lo:hi, k] = b + x[lo:hi] @ beta
    return q


def deterministic_dist(actions: object, n_actions: int) -> np.ndarray:
    """One-hot πe(a|xᵢ) = 1{a = actionsᵢ}, shape (n, K), of a deterministic policy."""
    a = np.asarray(actions).astype(np.int64)
    if a.ndim != 1 or np.any(a < 0) or np.any(a >= n_actions):
        raise QuantInputError(f"actions must be a 1-d array of ids in [0, {n_actions})")
    out = np.zeros((a.size, n_actions))
    out[np.arange(a.size), a] = 1.0
    return out


def gaussian_argmax_dist(means: object, sds: object, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Thompson sampling's action distribution: P(a = argmaxₖ sₖ) with independent scores
    sₖ ~ N(meansᵢₖ, sdsᵢₖ²), by ``draws`` Monte-Carlo draws per row; shape (n, K), rows sum to 1."""
    m = np.asarray(means, dtype=float)
    s = np.asarray(sds, dtype=float)
    if m.ndim != 2 or s.shape != m.shape or draws < 1:
        raise QuantInputError("means and sds must share a shape (n, K); draws >= 1")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))) or np.any(s < 0):
        raise QuantInputError("means must be finite and sds finite and >= 0")
    n, k = m.shape
    out = np.zeros((n, k))
    for i in range(n):
        z = m[i][None, :] + s[i][None, :] * rng.standard_normal((draws, k))
        out[i] = np.bincount(np.argmax(z, axis=1), minlength=k) / draws
    return out


def round_terms(
    reward: object,
    action: object,
    pscore: object,
    action_dist: object,
    q_hat: object | None = None,
    clip: float = np.inf,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every estimator above as mean(a) + mean(b)/mean(c) of per-round terms (a, b, c), each
    shape (n,): IPS (0, min(w,λ)r, 1), SNIPS (0, wr, w), DM (q̂π, 0, 1), DR (q̂π, min(w,λ)(r − q̂ₐ), 1),
    SNDR (q̂π, w(r − q̂ₐ), w), with q̂π = Σₐ πe(a|x)q̂(x, a). DM/DR/SNDR only with ``q_hat``.
    ``bootstrap_terms`` resamples them all at once."""
    r, a, p, pi = _logged(reward, action, pscore, action_dist)
    idx = np.arange(r.size)
    w = pi[idx, a] / p
    wc = np.minimum(w, _clip(clip))
    zero, one = np.zeros_like(r), np.ones_like(r)
    out = {"ips": (zero, wc * r, one), "snips": (zero, w * r, w)}
    if q_hat is not None:
        q = _q(q_hat, pi.shape)
        qpi, res = np.sum(pi * q, axis=1), r - q[idx, a]
        out.update({"dm": (qpi, zero, one), "dr": (qpi, wc * res, one), "sndr": (qpi, w * res, w)})
    return out


def bootstrap_terms(
    terms: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    alpha: float = 0.05,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, tuple[float, float, float] | None]:
    """(estimate, low, high) of each mean(a) + mean(b)/mean(c) with a percentile bootstrap
    over rounds, every estimator resampled with the same draws — the same resamples (same
    seed, same order of draws) as ``bootstrap_ci``, vectorised. None where mean(c) = 0 on the
    data or on more than half of the resamples (the estimator is undefined there)."""
    if not 0 < alpha < 1 or n_boot < 10:
        raise QuantInputError("need 0 < alpha < 1 and n_boot >= 10")
    n = next(iter(terms.values()))[0].size
    if n < 2:
        raise QuantInputError(f"bootstrap needs at least 2 rounds, got {n}")
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.integers(0, n, n) for _ in range(n_boot)])
    out: dict[str, tuple[float, float, float] | None] = {}
    for name, (a, b, c) in terms.items():
        den = float(c.mean())
        if den <= 0:
            out[name] = None
            continue
        est = float(a.mean() + b.mean() / den)
        cb = c[draws].mean(axis=1)
        ok = cb > 0
        if ok.sum() < n_boot / 2:
            out[name] = None
            continue
        stats = a[draws].mean(axis=1)[ok] + b[draws].mean(axis=1)[ok] / cb[ok]
        lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
        out[name] = (est, float(lo), float(hi))
    return out
