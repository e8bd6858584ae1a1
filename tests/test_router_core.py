"""router core: feature scaling, choice/update/snapshot bookkeeping."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stevie.contracts.rpc import RouterContext
from stevie.services.router.core import FEATURES, Router, features

S = 1_000_000_000


def test_features_are_scaled_and_clipped():
    x = features(RouterContext(obi=0.5, spread_bps=20, sigmaGARCH=1e6, regime="bull"))
    at = {name: x[i] for i, name in enumerate(FEATURES)}
    assert x.shape == (len(FEATURES),) and at["bias"] == 1 and at["obi"] == 0.5 and at["spread_bps/10"] == 2.0
    assert at["sigmaGARCH_pct"] == 5.0  # clipped
    assert at["regime=bull"] == 1 and at["regime=bear"] == 0 and at["regime=high_vol"] == 0
    assert features(RouterContext(regime="unknown"))[-4:].tolist() == [0, 0, 0, 0]


def test_context_takes_route_outputs_as_pasted():
    """/api/microstructure and /api/vol/forecast answers paste into the context as they are."""
    micro = {
        "symbol": "BTCUSDT",
        "venue": "binance",
        "obi": 0.2,
        "ti": None,
        "spread_bps": 0.02,
        "micro_vol": 0.3,
        "cancel_rate": 1.5,
        "ts": 1723161600000,
    }
    vol = {"symbol": "BTCUSDT", "h": 60, "sigmaHAR": 0.004, "sigmaGARCH": 0.005, "bars": 20000, "lastBarTs": 1}
    ctx = msgspec.convert({**micro, **vol, "regime": "bull"}, RouterContext)
    at = dict(zip(FEATURES, features(ctx), strict=True))
    assert at["obi"] == 0.2 and at["ti"] == 0 and at["sigmaHAR_pct"] == pytest.approx(0.4)
    with pytest.raises(msgspec.ValidationError, match="accepted: unknown, bull"):
        msgspec.convert({"regime": "sideways"}, RouterContext)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"nope": 1}, RouterContext)


def test_choose_update_snapshot():
    r = Router(seed=1, lam=1.0, v=0.5, mc=200)
    c = r.choose(RouterContext(obi=0.3), now_ns=10 * S)
    assert c.policyId in r.updates() and 0 < c.propensity <= 1 and len(c.features) == len(FEATURES)
    s = r.update(c.policyId, 2.0, RouterContext(obi=0.3))
    assert s.n == 1 and s.updates[c.policyId] == 1
    snap = r.snapshot(now_ns=30 * S)
    assert snap.decisions == 1 and snap.decisionsLastMin == 1 and snap.lastChoice == c
    assert r.snapshot(now_ns=100 * S).decisionsLastMin == 0
    with pytest.raises(KeyError, match="known: p_flat"):
        r.update("nope", 1.0, RouterContext())


def test_same_seed_same_choices():
    a, b = Router(7, 1.0, 0.5, 100), Router(7, 1.0, 0.5, 100)
    ctx = RouterContext(obi=0.1, ti=-0.2)
    assert [a.choose(ctx, 0).policyId for _ in range(20)] == [b.choose(ctx, 0).policyId for _ in range(20)]
    assert np.isfinite(a.choose(ctx, 0).score)
