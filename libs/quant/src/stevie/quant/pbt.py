"""Population-based training (PBT) of policy hyper-parameters over walk-forward windows
(Jaderberg et al. 2017, "Population Based Training of Neural Networks", arXiv:1711.09846).

A population of P members, each a hyper-parameter set θ. Generation g scores every member
on the next block of K walk-forward windows (windows g·K … g·K + K − 1, never seen by
earlier generations, so a score is always out of sample for the parameters it judges).
Then, as in the paper's truncation selection:

- **exploit**: each member in the bottom quantile q (by score) copies the parameters of a
  member drawn uniformly from the top quantile;
- **explore**: the copied parameters are perturbed — with probability ``resample_p`` a
  parameter is resampled from its prior range, otherwise multiplied by 0.8 or 1.2 (equally
  likely) and clipped to its range (integers rounded).

Members outside the bottom quantile keep their parameters. Every (member, generation) is a
*version* with a parent (the same member's previous version, or the exploited member's
version it copied), which is the lineage. Every scored version is a trial for the deflated
Sharpe ratio. The score callback is the only contact with the outside world (a backtest);
randomness comes only from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stevie.quant.errors import QuantInputError


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: range [low, high], ``log`` = sampled log-uniformly, ``integer``."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise QuantInputError(f"{self.name}: need finite low < high")
        if self.log and self.low <= 0:
            raise QuantInputError(f"{self.name}: a log-uniform range needs low > 0")

    def clip(self, v: float) -> float:
        v = min(max(v, self.low), self.high)
        return float(round(v)) if self.integer else float(v)

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.clip(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Version:
    """One scored (member, generation): ``id`` = ``m{member:02d}g{generation}``; ``parent``
    the version it came from (None in generation 0); ``windows`` the walk-forward windows
    scored (half-open [start, stop)); ``exploited`` when it copied another member."""

    id: str
    member: int
    generation: int
    parent: str | None
    params: dict[str, float]
    score: float
    windows: tuple[int, int]
    exploited: bool = False


Score = Callable[[dict[str, float], int, int], float]


@dataclass
class PBTConfig:
    population: int = 8
    generations: int = 3
    windows_per_generation: int = 1
    quantile: float = 0.25
    resample_p: float = 0.25
    perturb: tuple[float, float] = (0.8, 1.2)
    seed: int = 0
    space: Sequence[Param] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 1 or self.windows_per_generation < 1:
            raise QuantInputError("need population >= 2, generations >= 1, windows_per_generation >= 1")
        if not 0 < self.quantile <= 0.5 or not 0 <= self.resample_p <= 1:
            raise QuantInputError("need 0 < quantile <= 0.5 and 0 <= resample_p <= 1")
        if not self.space:
            raise QuantInputError("the parameter space is empty")


def explore(params: dict[str, float], space: Sequence[Param], cfg: PBTConfig, rng: np.random.Generator) -> dict:
    """Perturb ×0.8/×1.2 (clipped) or, with probability ``resample_p``, resample each parameter."""
    out = {}
    for p in space:
        if rng.uniform() < cfg.resample_p:
            out[p.name] = p.sample(rng)
        else:
            out[p.name] = p.clip(params[p.name] * cfg.perturb[int(rng.integers(0, 2))])
    return out


def run_pbt(
    cfg: PBTConfig,
    score: Score,
    on_version: Callable[[Version], None] | None = None,
) -> list[Version]:
    """Run PBT; ``score(params, window_start, window_stop)`` returns the member's score on
    the walk-forward windows [start, stop) (higher is better, finite; a non-finite score
    ranks last). Returns every version in order (generation, member); ``on_version`` sees
    each as soon as it is scored (progress, persistence)."""
    rng = np.random.default_rng(cfg.seed)
    params = [{p.name: p.sample(rng) for p in cfg.space} for _ in range(cfg.population)]
    parents: list[str | None] = [None] * cfg.population
    exploited = [False] * cfg.population
    lineage: list[Version] = []
    n_cut = max(1, math.floor(cfg.population * cfg.quantile))
    for g in range(cfg.generations):
        w0 = g * cfg.windows_per_generation
        w1 = w0 + cfg.windows_per_generation
        scored = []
        for m in range(cfg.population):
            s = float(score(dict(params[m]), w0, w1))
            v = Version(f"m{m:02d}g{g}", m, g, parents[m], dict(params[m]), s, (w0, w1), exploited[m])
            lineage.append(v)
            scored.append(v)
            if on_version is not None:
                on_version(v)
        # rank: non-finite scores last; ties broken by member index (deterministic)
        order = sorted(
            range(cfg.population),
            key=lambda m: (-(scored[m].score if math.isfinite(scored[m].score) else -math.inf), m),
        )
        top, bottom = order[:n_cut], order[-n_cut:]
        parents = [scored[m].id for m in range(cfg.population)]
        exploited = [False] * cfg.population
        for m in bottom:
            src = top[int(rng.integers(0, len(top)))]
            params[m] = explore(scored[src].params, cfg.space, cfg, rng)
            parents[m] = scored[src].id
            exploited[m] = True
    return lineage


def best(lineage: Sequence[Version]) -> Version:
    """The best-scoring version of the last generation."""
    if not lineage:
        raise QuantInputError("empty lineage")
    last = max(v.generation for v in lineage)
    finals = [v for v in lineage if v.generation == last and math.isfinite(v.score)]
    if not finals:
        raise QuantInputError("no finite score in the last generation")
    return max(finals, key=lambda v: (v.score, -v.member))
