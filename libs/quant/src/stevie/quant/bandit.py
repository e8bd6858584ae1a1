"""Bayesian linear Thompson sampling over policies (contextual bandit).

Model per arm a: reward = xᵀθ_a + ε, ε ~ N(0, σ²). Prior θ_a ~ N(0, σ²/λ · I); posterior
after (X, y): B = λI + XᵀX, μ = B⁻¹Xᵀy, θ_a | data ~ N(μ, v²·B⁻¹) with the exploration scale
v (Agrawal & Goyal 2013, "Thompson Sampling for Contextual Bandits with Linear Payoffs",
ICML; Russo et al. 2018, "A Tutorial on Thompson Sampling", §6).

``choose`` samples one θ per arm and takes the argmax of xᵀθ. The propensity of the chosen
arm — P(arm = argmax | x) under the posterior, what off-policy estimators (IPS, doubly robust)
need — is the one-dimensional integral ``win_probability`` (exact up to ~1e-12, no sampling).
The uncertainty width w = v·sqrt(xᵀB⁻¹x) of the chosen arm drives position sizing.
An update refreshes B⁻¹ by the Sherman–Morrison rank-one formula (Sherman & Morrison 1950),
recomputed exactly every ``REFRESH_EVERY`` updates of an arm.
Randomness comes only from the ``numpy.random.Generator`` passed in (reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stevie.quant.errors import QuantInputError, finite_1d
from stevie.quant.propensity import win_probability

REFRESH_EVERY = 1024
"""Updates of an arm between exact inversions of B (Sherman–Morrison in between)."""
MIN_PROPENSITY = 1e-12
"""Floor of a logged propensity: the quadrature's absolute accuracy (an exact 0 cannot be chosen)."""


@dataclass
class ArmPosterior:
    """Sufficient statistics of one arm: B = λI + Σ x xᵀ, f = Σ r x, n updates.

    μ = B⁻¹f and B⁻¹ are computed once per (B, f) and cached; an update assigns new arrays,
    which invalidates the cache (B and f are never modified in place)."""

    B: np.ndarray
    f: np.ndarray
    n: int = 0
    _cache: tuple[int, int, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def prior(cls, dim: int, lam: float) -> ArmPosterior:
        return cls(lam * np.eye(dim), np.zeros(dim))

    def _solved(self) -> tuple[np.ndarray, np.ndarray]:
        c = self._current()
        return c[2], c[3]

    def _current(self) -> tuple[int, int, np.ndarray, np.ndarray]:
        """The cache (id B, id f, μ, B⁻¹), recomputed exactly when B or f was reassigned."""
        c = self._cache
        if c is None or c[0] != id(self.B) or c[1] != id(self.f):
            c = (id(self.B), id(self.f), np.asarray(np.linalg.solve(self.B, self.f)), np.linalg.inv(self.B))
            self._cache = c
        return c

    def add(self, x: np.ndarray, reward: float) -> None:
        """B += x xᵀ, f += r x, n += 1 (new arrays). B⁻¹ follows by Sherman–Morrison,
        (B + xxᵀ)⁻¹ = B⁻¹ − (B⁻¹x)(B⁻¹x)ᵀ / (1 + xᵀB⁻¹x), and μ = B⁻¹f; every
        ``REFRESH_EVERY``-th update (and after B or f was reassigned) they are recomputed exactly."""
        c = self._cache
        valid = c is not None and c[0] == id(self.B) and c[1] == id(self.f)
        self.B = self.B + x[:, None] * x[None, :]
        self.f = self.f + reward * x
        self.n += 1
        if valid and c is not None and self.n % REFRESH_EVERY:
            u = c[3] @ x
            inv = c[3] - (u[:, None] * u[None, :]) / (1.0 + float(x @ u))
            self._cache = (id(self.B), id(self.f), inv @ self.f, inv)

    @property
    def mean(self) -> np.ndarray:
        return self._solved()[0].copy()

    def cov(self, v: float) -> np.ndarray:
        return np.asarray(v * v * self._solved()[1])


@dataclass(frozen=True)
class Choice:
    """A decision: chosen arm, its sampled score, exploration bonus (sampled − mean score),
    propensity (``win_probability``), uncertainty width, and every arm's sampled score."""

    arm: str
    score: float
    exploration_bonus: float
    propensity: float
    width: float
    sampled: dict[str, float]


@dataclass
class LinearTS:
    """Thompson sampling over named arms with a shared context dimension.

    dim: context length; lam: prior precision λ; v: exploration scale; mc: Monte-Carlo
    draws for callers that estimate a whole action distribution by sampling (the router's
    baseline-challenger guard); ``choose``'s propensity is computed, not sampled."""

    arms: list[str]
    dim: int
    lam: float = 1.0
    v: float = 0.5
    mc: int = 2000
    posteriors: dict[str, ArmPosterior] = field(default_factory=dict)
    _stack: tuple[list[object], np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise QuantInputError("arms must be a non-empty list of distinct names")
        if self.dim < 1 or self.lam <= 0 or self.v <= 0 or self.mc < 10:
            raise QuantInputError("need dim >= 1, lam > 0, v > 0, mc >= 10")
        for a in self.arms:
            self.posteriors.setdefault(a, ArmPosterior.prior(self.dim, self.lam))

    def _x(self, context: object) -> np.ndarray:
        x = finite_1d("context", context, self.dim)
        if x.size != self.dim:
            raise QuantInputError(f"context must have {self.dim} values, got {x.size}")
        return x

    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """(μ of every arm (K, dim), B⁻¹ of every arm (K, dim, dim)), refreshed per arm when its
        cache changed (``posteriors`` may be replaced wholesale, e.g. by a checkpoint load)."""
        k, d = len(self.arms), self.dim
        st = self._stack
        if st is None:
            st = self._stack = ([None] * k, np.zeros((k, d)), np.zeros((k, d, d)))
        keys, mu, inv = st
        for j, a in enumerate(self.arms):
            c = self.posteriors[a]._current()
            if c is not keys[j]:
                mu[j], inv[j], keys[j] = c[2], c[3], c
        return mu, inv

    def choose(self, context: object, rng: np.random.Generator) -> Choice:
        """Sample θ per arm (one standard normal per arm, projected on x: xᵀθ_a ~
        N(xᵀμ_a, v² xᵀB_a⁻¹x)), pick the argmax; its propensity is ``win_probability`` of
        those Gaussians (floored at ``MIN_PROPENSITY``). Raises QuantInputError for a context
        of the wrong length or with a non-finite value."""
        x = self._x(context)
        mu, inv = self._stacked()
        means = mu @ x
        sds = self.v * np.sqrt(np.maximum((inv @ x) @ x, 0.0))
        sampled = means + sds * rng.standard_normal(len(self.arms))
        i = int(np.argmax(sampled))
        propensity = win_probability(means, np.maximum(sds, 1e-150), i, check=False)  # finite by construction
        s = sampled.tolist()
        return Choice(
            self.arms[i],
            s[i],
            s[i] - float(means[i]),
            max(propensity, MIN_PROPENSITY),
            float(sds[i]),
            dict(zip(self.arms, s, strict=True)),
        )

    def update(self, arm: str, reward: float, context: object) -> ArmPosterior:
        """Bayesian update of ``arm`` with (context, reward). Raises KeyError for an unknown arm."""
        if not np.isfinite(reward):
            raise QuantInputError("reward must be finite")
        x = self._x(context)
        p = self.posteriors[arm]
        p.add(x, float(reward))
        return p
