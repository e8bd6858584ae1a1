"""router core (pure): context → feature vector → Thompson sampling over the policies."""

from __future__ import annotations

from collections import deque

import numpy as np

from stevie.contracts.rpc import Choice, PosteriorSummary, RouterContext, RouterSnapshot
from stevie.quant.bandit import LinearTS
from stevie.quant.policies import POLICIES

FEATURES = [
    "bias",
    "obi",
    "ti",
    "spread_bps/10",
    "micro_vol_bps/10",
    "micro_dev_bps",
    "sigma_garch_bps/100",
    "sigma_har_bps/100",
    "rr25*10",
    "regime",
]


def features(c: RouterContext) -> np.ndarray:
    """The feature vector (order = FEATURES), each scaled to roughly unit range and clipped
    to [−5, 5] so one wild input cannot dominate the posterior."""
    x = np.array(
        [
            1.0,
            c.obi,
            c.ti,
            c.spread_bps / 10,
            c.micro_vol_bps / 10,
            c.micro_dev_bps,
            c.sigma_garch_bps / 100,
            c.sigma_har_bps / 100,
            c.rr25 * 10,
            c.regime,
        ]
    )
    return np.clip(x, -5.0, 5.0)


class Router:
    def __init__(self, seed: int, lam: float, v: float, mc: int) -> None:
        self.ts = LinearTS(list(POLICIES), len(FEATURES), lam, v, mc)
        self.rng = np.random.default_rng(seed)
        self.last: Choice | None = None
        self.decisions = 0
        self._recent: deque[int] = deque()

    def choose(self, ctx: RouterContext, now_ns: int) -> Choice:
        x = features(ctx)
        c = self.ts.choose(x, self.rng)
        self.last = Choice(c.arm, c.score, c.exploration_bonus, c.propensity, c.width, c.sampled, x.tolist())
        self.decisions += 1
        self._recent.append(now_ns)
        return self.last

    def update(self, policy_id: str, reward: float, ctx: RouterContext) -> PosteriorSummary:
        """Raises KeyError for an unknown policy, QuantInputError for a bad reward."""
        p = self.ts.update(policy_id, reward, features(ctx))
        return PosteriorSummary(policy_id, p.n, p.mean.tolist(), self.updates())

    def updates(self) -> dict[str, int]:
        return {a: p.n for a, p in self.ts.posteriors.items()}

    def snapshot(self, now_ns: int) -> RouterSnapshot:
        while self._recent and self._recent[0] <= now_ns - 60_000_000_000:
            self._recent.popleft()
        return RouterSnapshot(self.last, FEATURES, self.updates(), self.decisions, len(self._recent))
