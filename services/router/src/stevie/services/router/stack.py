"""Blue/green router stacks (pure): which registry model green serves, and the settings-driven
fault plan used to prove the automatic rollback (a slow or failing green).

Blue is the ``router`` service: it serves the current model of the registry and checkpoints
into it. Green is the ``green-router`` service (the same code, ``colour = green``): it serves
the *candidate* — the newest registered model (any kind but ``checkpoint``) that has a
posterior and has never been current — and, when there is no
candidate, the current model too (so both stacks answer and the SLO comparison stays fair).
Green never writes into the registry: what it learns during a canary stays in its process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stevie.contracts.evidence import ModelView

COLOURS = ("blue", "green")


def candidate(models: Sequence[ModelView], ever_current: set[str]) -> str | None:
    """The candidate model id for green in ``models`` (the registry listing), or None.

    A candidate: ``kind != 'checkpoint'``, a posterior (``updates`` non-empty), not current and
    never current before (``ever_current``: the ids the registry's history made current — a
    model that was promoted and then continued by blue's checkpoints is history, not a
    candidate). Newest ``createdAt`` wins (ties: the greatest id, so the answer does not depend
    on the listing order)."""
    pool = [m for m in models if m.kind != "checkpoint" and m.updates and not m.current and m.id not in ever_current]
    return max(pool, key=lambda m: (m.createdAt, m.id)).id if pool else None


class FaultPlan:
    """Settings-driven faults of a stack: every call is delayed by ``delay_ms`` and a share
    ``error_rate`` ∈ [0, 1] of the calls fails, spread evenly and deterministically (call k
    fails when ⌊k·r⌋ > ⌊(k−1)·r⌋, so r = 0.25 fails calls 4, 8, 12, …). Raises ValueError for a
    rate outside [0, 1] or a negative delay."""

    def __init__(self, delay_ms: float = 0.0, error_rate: float = 0.0) -> None:
        if not (0.0 <= error_rate <= 1.0 and delay_ms >= 0.0 and math.isfinite(delay_ms)):
            raise ValueError(f"fault delay_ms must be >= 0 and error_rate in [0, 1], got {delay_ms}, {error_rate}")
        self.delay_s, self.rate, self.calls = delay_ms / 1000.0, error_rate, 0

    @property
    def active(self) -> bool:
        return self.delay_s > 0 or self.rate > 0

    def next_fails(self) -> bool:
        """Count one call; True when it must fail."""
        self.calls += 1
        return math.floor(self.calls * self.rate) > math.floor((self.calls - 1) * self.rate)
