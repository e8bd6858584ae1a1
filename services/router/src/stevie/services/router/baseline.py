"""Baseline-challenger safety (pure; after Vowpal Wabbit's ``--baseline_challenger_cb``): in a
context region (a regime label, or ``all``) where the evidence service found a policy's
doubly-robust lower confidence bound below the baseline's (``p_flat``, the do-nothing
policy), a choice of that policy is replaced by the baseline, and the audit says so.

The logged propensity stays honest: the realised action is ``p_flat`` whenever Thompson
sampling picks ``p_flat`` *or* any blocked policy, so its propensity is the Monte-Carlo
probability of that union under the posterior (the same Gaussian score model the bandit
samples from), which is what off-policy estimators need.
"""

from __future__ import annotations

import numpy as np

from stevie.quant.bandit import LinearTS

BASELINE = "p_flat"


def action_dist(ts: LinearTS, x: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """P(arm = argmax of the sampled scores | x), shape (K,), by ``draws`` joint draws."""
    means = np.array([ts.posteriors[a].mean @ x for a in ts.arms])
    sds = np.array([np.sqrt(max(float(x @ ts.posteriors[a].cov(ts.v) @ x), 0.0)) for a in ts.arms])
    z = means[None, :] + sds[None, :] * rng.standard_normal((draws, len(ts.arms)))
    return np.bincount(np.argmax(z, axis=1), minlength=len(ts.arms)) / draws


def fallback(
    ts: LinearTS, x: np.ndarray, chosen: str, blocked: frozenset[str], rng: np.random.Generator
) -> float | None:
    """The baseline's propensity when ``chosen`` is blocked here (None: keep the choice)."""
    if chosen not in blocked or chosen == BASELINE or BASELINE not in ts.arms:
        return None
    d = action_dist(ts, x, ts.mc, rng)
    p = sum(float(d[i]) for i, a in enumerate(ts.arms) if a == BASELINE or a in blocked)
    return max(p, 1.0 / ts.mc)
