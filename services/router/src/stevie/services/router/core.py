"""router core (pure): context → feature vector → Thompson sampling over the policies."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import msgspec
import numpy as np

from stevie.contracts.rpc import REGIMES, Choice, PosteriorSummary, RouterContext, RouterSnapshot
from stevie.quant.bandit import LinearTS
from stevie.quant.errors import QuantInputError
from stevie.quant.policies import POLICIES
from stevie.services.router import baseline

# (feature name, context field, scale): x = clip(value · scale, −5, 5), so each is of order 1.
_SCALED: list[tuple[str, str, float]] = [
    ("obi", "obi", 1.0),
    ("ti", "ti", 1.0),
    ("spread_bps/10", "spread_bps", 0.1),
    ("micro_vol_bps/10", "micro_vol", 0.1),
    ("cancel_rate/10", "cancel_rate", 0.1),
    ("micro_dev_bps", "micro_dev_bps", 1.0),
    ("sigmaGARCH_pct", "sigmaGARCH", 100.0),
    ("sigmaHAR_pct", "sigmaHAR", 100.0),
    ("rr25*10", "rr25", 10.0),
    ("fly25*10", "fly25", 10.0),
    ("iv_term_slope", "iv_term_slope", 1.0),
    ("skew_z/3", "skew_z", 1 / 3),
    ("funding_bps", "funding", 1e4),
    ("basis_bps/10", "basis", 1e3),
    ("sentiment", "sentiment", 1.0),
]
_SCALED_FIELDS = [(field, scale) for _, field, scale in _SCALED]
_ONE_HOT = [r for r in REGIMES if r != "unknown"]
EVENT_DIMS = 4
_EVENT = [f"event_pc{i + 1}*3" for i in range(EVENT_DIMS)] + ["event_decay", "event_recency_1d"]
FEATURES = ["bias"] + [name for name, _, _ in _SCALED] + [f"regime={r}" for r in _ONE_HOT] + _EVENT


def event_features(c: RouterContext) -> list[float]:
    """The event dims (order = the ``event_*`` FEATURES): the decay-weighted PCA projection
    (×3, the projections are of order 0.3), the decay weight, and the recency
    1 − min(minutes since, 1440)/1440 (0 when no event is known). All 0 without events."""
    pc = [3.0 * float(x) for x in (c.event_pc or [])[:EVENT_DIMS]]
    m = c.event_minutes_since
    recency = 0.0 if m is None else 1.0 - min(max(m, 0.0), 1440.0) / 1440.0
    return [*pc, *[0.0] * (EVENT_DIMS - len(pc)), c.value("event_decay"), recency]


def features(c: RouterContext) -> np.ndarray:
    """The feature vector (order = FEATURES): a bias, each context number scaled to roughly
    unit range and clipped to [−5, 5] (one wild input cannot dominate the posterior), and the
    regime one-hot (``unknown`` = all zeros), then the event dims (``event_features``)."""
    row = [1.0]
    for field, scale in _SCALED_FIELDS:
        v = getattr(c, field)
        row.append(0.0 if v is None else float(v) * scale)
    regime = c.regime
    row += [1.0 if regime == r else 0.0 for r in _ONE_HOT]
    row += event_features(c)
    x = np.array(row)
    np.minimum(x, 5.0, out=x)  # clip without np.clip's wrapper; NaN stays NaN (refused later)
    np.maximum(x, -5.0, out=x)
    return x


class Router:
    def __init__(
        self,
        seed: int,
        lam: float,
        v: float,
        mc: int,
        arms: Sequence[str] = tuple(POLICIES),
        max_abs_reward: float = 10_000.0,
    ) -> None:
        """``arms``: the policy ids to choose between (default every policy; ``stevie backtest``
        routes over ``BAR_POLICIES`` or ``L2_POLICIES``). Raises KeyError for an unknown id.
        ``max_abs_reward``: the largest |reward| ``update`` accepts (bps of the horizon return,
        the unit execution reports; one huge reward would otherwise own the posterior mean)."""
        unknown = [a for a in arms if a not in POLICIES]
        if unknown:
            raise KeyError(f"unknown policies {unknown}; known: {', '.join(POLICIES)}")
        self.ts = LinearTS(list(arms), len(FEATURES), lam, v, mc)
        self.max_abs_reward = max_abs_reward
        self.rng = np.random.default_rng(seed)
        self.last: Choice | None = None
        self.decisions = 0
        self._recent: deque[int] = deque()
        self.model_id = ""  # the registry model this posterior continues ('' = the prior)
        self.fallback: dict[str, frozenset[str]] = {}  # region → policies replaced by the baseline
        self.fallback_reasons: dict[str, str] = {}

    def choose(self, ctx: RouterContext, now_ns: int, decision: bool = True) -> Choice:
        """Sample a choice. ``decision``: a real trading decision (counted in ``decisions``
        and ``decisionsLastMin``); False for a what-if query (``POST /api/router/choose``)."""
        x = features(ctx)
        c = self.ts.choose(x, self.rng)
        choice = Choice(c.arm, c.score, c.exploration_bonus, c.propensity, c.width, c.sampled, x.tolist())
        blocked = self.fallback.get(ctx.regime, frozenset()) | self.fallback.get("all", frozenset())
        p_base = baseline.fallback(self.ts, x, c.arm, blocked, self.rng) if blocked else None
        if p_base is not None:  # baseline-challenger guard: trade the baseline, say why
            why = self.fallback_reasons.get(f"{ctx.regime}:{c.arm}") or self.fallback_reasons.get(f"all:{c.arm}", "")
            choice = msgspec.structs.replace(
                choice, policyId=baseline.BASELINE, propensity=p_base, fallback=f"{c.arm} → {baseline.BASELINE}: {why}"
            )
        if decision:
            self.last = choice
            self.decisions += 1
            self._recent.append(now_ns)
        return choice

    def update(self, policy_id: str, reward: float, ctx: RouterContext) -> PosteriorSummary:
        """Raises KeyError (naming the known policies) for an unknown policy, QuantInputError
        for a bad reward."""
        if policy_id not in self.ts.posteriors:
            raise KeyError(f"unknown policy {policy_id[:60]!r}; known: {', '.join(self.ts.arms)}")
        if not abs(reward) <= self.max_abs_reward:  # also NaN
            raise QuantInputError(
                f"reward must be a finite number of bps with |reward| <= {self.max_abs_reward:g}, got {reward:.6g}"
            )
        p = self.ts.update(policy_id, reward, features(ctx))
        return PosteriorSummary(policy_id, p.n, p.mean.tolist(), self.updates())

    def updates(self) -> dict[str, int]:
        return {a: p.n for a, p in self.ts.posteriors.items()}

    def snapshot(self, now_ns: int) -> RouterSnapshot:
        while self._recent and self._recent[0] <= now_ns - 60_000_000_000:
            self._recent.popleft()
        return RouterSnapshot(
            self.last, FEATURES, self.updates(), self.decisions, len(self._recent), self.model_id, self.ts.v
        )
