"""Bayesian linear Thompson sampling over policies (contextual bandit).

Model per arm a: reward = xᵀθ_a + ε, ε ~ N(0, σ²). Prior θ_a ~ N(0, σ²/λ · I); posterior
after (X, y): B = λI + XᵀX, μ = B⁻¹Xᵀy, θ_a | data ~ N(μ, v²·B⁻¹) with the exploration scale
v (Agrawal & Goyal 2013, "Thompson Sampling for Contextual Bandits with Linear Payoffs",
ICML; Russo et al. 2018, "A Tutorial on Thompson Sampling", §6).

``choose`` samples one θ per arm and takes the argmax of xᵀθ. The propensity of the chosen
arm — P(arm = argmax | x) under the posterior — has no closed form for > 2 arms and is
estimated by Monte Carlo; it is what off-policy estimators (IPS, doubly robust) need.
The uncertainty width w = v·sqrt(xᵀB⁻¹x) of the chosen arm drives position sizing.
Randomness comes only from the ``numpy.random.Generator`` passed in (reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stevie.quant.errors import QuantInputError, finite_1d


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
        c = self._cache
        if c is None or c[0] != id(self.B) or c[1] != id(self.f):
            c = (id(self.B), id(self.f), np.asarray(np.linalg.solve(self.B, self.f)), np.linalg.inv(self.B))
            self._cache = c
        return c[2], c[3]

    @property
    def mean(self) -> np.ndarray:
        return self._solved()[0].copy()

    def cov(self, v: float) -> np.ndarray:
        return np.asarray(v * v * self._solved()[1])


@dataclass(frozen=True)
class Choice:
    """A decision: chosen arm, its sampled score, exploration bonus (sampled − mean score),
    Monte-Carlo propensity, uncertainty width, and every arm's sampled score."""

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
    draws for the propensity."""

    arms: list[str]
    dim: int
    lam: float = 1.0
    v: float = 0.5
    mc: int = 2000
    posteriors: dict[str, ArmPosterior] = field(default_factory=dict)

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

    def choose(self, context: object, rng: np.random.Generator) -> Choice:
        """Sample θ per arm, pick argmax xᵀθ; propensity by ``mc`` further joint draws."""
        x = self._x(context)
        solved = [self.posteriors[a]._solved() for a in self.arms]
        means = np.array([m @ x for m, _ in solved])
        sds = self.v * np.sqrt(np.maximum([x @ inv @ x for _, inv in solved], 0.0))
        # xᵀθ_a is Gaussian N(xᵀμ_a, v² xᵀB_a⁻¹x): sampling the score is sampling θ projected on x
        sampled = means + sds * rng.standard_normal(len(self.arms))
        i = int(np.argmax(sampled))
        draws = means[None, :] + sds[None, :] * rng.standard_normal((self.mc, len(self.arms)))
        propensity = float(np.mean(np.argmax(draws, axis=1) == i))
        return Choice(
            self.arms[i],
            float(sampled[i]),
            float(sampled[i] - means[i]),
            max(propensity, 1.0 / self.mc),
            float(sds[i]),
            dict(zip(self.arms, map(float, sampled), strict=True)),
        )

    def update(self, arm: str, reward: float, context: object) -> ArmPosterior:
        """Bayesian update of ``arm`` with (context, reward). Raises KeyError for an unknown arm."""
        if not np.isfinite(reward):
            raise QuantInputError("reward must be finite")
        x = self._x(context)
        p = self.posteriors[arm]
        p.B = p.B + np.outer(x, x)
        p.f = p.f + reward * x
        p.n += 1
        return p
