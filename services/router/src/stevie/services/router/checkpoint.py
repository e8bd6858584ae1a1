"""Router posterior ⇄ model registry payload (pure), and the checkpoint schedule.

The router's learnt state is every policy's (B, f, n) plus λ and the exploration scale v
(``stevie.quant.bandit``). ``export`` copies it into a ``RouterPosterior``; ``load`` puts one
back — refusing a posterior whose feature layout differs (its B would be meaningless for the
current features). Policies absent from the posterior keep their prior; policies the router
no longer has are ignored.
"""

from __future__ import annotations

import numpy as np

from stevie.contracts.evidence import ArmState, RouterPosterior
from stevie.quant.bandit import ArmPosterior
from stevie.quant.errors import QuantInputError
from stevie.services.router.core import FEATURES, Router


def export(router: Router) -> RouterPosterior:
    ts = router.ts
    arms = {a: ArmState(p.B.tolist(), p.f.tolist(), int(p.n)) for a, p in ts.posteriors.items()}
    return RouterPosterior(list(FEATURES), float(ts.lam), float(ts.v), arms)


def load(router: Router, post: RouterPosterior) -> None:
    """Replace the router's posterior by ``post`` (and its exploration scale v). Raises
    QuantInputError when the feature layout differs or a matrix has the wrong shape."""
    if list(post.features) != list(FEATURES):
        raise QuantInputError("the model's feature layout differs from the router's: not loaded")
    d = len(FEATURES)
    new: dict[str, ArmPosterior] = {}
    for a in router.ts.arms:
        st = post.arms.get(a)
        if st is None:
            new[a] = ArmPosterior.prior(d, router.ts.lam)
            continue
        b, f = np.asarray(st.B, dtype=float), np.asarray(st.f, dtype=float)
        if b.shape != (d, d) or f.shape != (d,) or not (np.all(np.isfinite(b)) and np.all(np.isfinite(f))):
            raise QuantInputError(f"policy {a}: B must be {d}×{d} and f of length {d}, finite")
        new[a] = ArmPosterior(b, f, int(st.n))
    router.ts.posteriors = new
    if post.v > 0:
        router.ts.v = float(post.v)


class Schedule:
    """Checkpoint every ``every`` posterior updates (and on demand: SIGTERM, model change)."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise QuantInputError("checkpoint_every must be >= 1")
        self.every = every
        self.since = 0

    def on_update(self) -> bool:
        """Count one update; True when a checkpoint is due."""
        self.since += 1
        if self.since >= self.every:
            self.since = 0
            return True
        return False
