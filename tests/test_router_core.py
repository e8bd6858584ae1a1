"""router core: feature scaling, choice/update/snapshot bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.contracts.rpc import RouterContext
from stevie.services.router.core import FEATURES, Router, features

S = 1_000_000_000


def test_features_are_scaled_and_clipped():
    x = features(RouterContext(obi=0.5, spread_bps=20, sigma_garch_bps=1e6))
    assert x.shape == (len(FEATURES),) and x[0] == 1 and x[1] == 0.5 and x[3] == 2.0 and x[6] == 5.0


def test_choose_update_snapshot():
    r = Router(seed=1, lam=1.0, v=0.5, mc=200)
    c = r.choose(RouterContext(obi=0.3), now_ns=10 * S)
    assert c.policyId in r.updates() and 0 < c.propensity <= 1 and len(c.features) == len(FEATURES)
    s = r.update(c.policyId, 2.0, RouterContext(obi=0.3))
    assert s.n == 1 and s.updates[c.policyId] == 1
    snap = r.snapshot(now_ns=30 * S)
    assert snap.decisions == 1 and snap.decisionsLastMin == 1 and snap.lastChoice == c
    assert r.snapshot(now_ns=100 * S).decisionsLastMin == 0
    with pytest.raises(KeyError):
        r.update("nope", 1.0, RouterContext())


def test_same_seed_same_choices():
    a, b = Router(7, 1.0, 0.5, 100), Router(7, 1.0, 0.5, 100)
    ctx = RouterContext(obi=0.1, ti=-0.2)
    assert [a.choose(ctx, 0).policyId for _ in range(20)] == [b.choose(ctx, 0).policyId for _ in range(20)]
    assert np.isfinite(a.choose(ctx, 0).score)
