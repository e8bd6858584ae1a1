"""Inputs that cannot poison the system (issue 13 item 7): bounded rewards, IVs and
moneyness, options symbols only from the configured universe, errors that never echo a huge
input back. Each check is the service handler or core the gateway forwards to (a
``QuantInputError`` / ``ValueError`` becomes 400, a ``KeyError`` 404)."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.bus import InMemoryBus
from stevie.contracts.rpc import (
    MAX_CLOSES,
    ChainPoint,
    ClosesRequest,
    OptionsChainRequest,
    RouterContext,
    SmileRequest,
    VolForecastRequest,
)
from stevie.quant.errors import QuantInputError
from stevie.runtime.clock import LiveClock
from stevie.runtime.logs import get_logger
from stevie.runtime.metrics import new_registry
from stevie.runtime.service import ServiceContext
from stevie.services.gateway.shell import error
from stevie.services.router.core import Router
from stevie.services.router.settings import RouterSettings
from stevie.services.vol.core import OptionsDesk, to_quotes
from stevie.services.vol.settings import VolSettings
from stevie.services.vol.shell import Vol, base_asset

CHAIN = [
    ChainPoint(type=t, iv=iv, k=k, tenor=tenor)
    for tenor in ("7d", "30d")
    for k, iv, t in (
        (0.9, 0.62, "put"),
        (0.95, 0.58, "put"),
        (1.0, 0.55, "call"),
        (1.05, 0.56, "call"),
        (1.1, 0.6, "call"),
    )
]


def test_a_huge_reward_is_refused_and_does_not_move_the_posterior():
    r = Router(0, 1.0, 0.5, 200)
    ctx = RouterContext()
    before = r.ts.posteriors["p_flat"].f.copy()
    for bad in (1e308, -1e308, float("nan"), float("inf"), 10_000.5):
        with pytest.raises(QuantInputError, match="reward must be a finite number of bps"):
            r.update("p_flat", bad, ctx)
    assert np.array_equal(r.ts.posteriors["p_flat"].f, before) and r.ts.posteriors["p_flat"].n == 0
    r.update("p_flat", 10_000.0, ctx)  # the bound itself is accepted
    r.update("p_flat", -25.0, ctx)
    assert r.ts.posteriors["p_flat"].n == 2
    assert Router(0, 1.0, 0.5, 200, max_abs_reward=50.0).max_abs_reward == 50.0
    with pytest.raises(QuantInputError):
        Router(0, 1.0, 0.5, 200, max_abs_reward=50.0).update("p_flat", 51.0, ctx)
    with pytest.raises(KeyError) as e:
        r.update("x" * 100_000, 1.0, ctx)
    assert len(str(e.value)) < 400
    assert RouterSettings().max_abs_reward_bps == 10_000.0


@pytest.mark.parametrize(
    ("point", "match"),
    [
        (ChainPoint(type="call", iv=6.0, k=1.0, tenor="7d"), r"iv must be a decimal in \(0, 5\]"),
        (ChainPoint(type="call", iv=0.0, k=1.0, tenor="7d"), "iv must be"),
        (ChainPoint(type="call", iv=-0.5, k=1.0, tenor="7d"), "iv must be"),
        (ChainPoint(type="call", iv=0.5, k=-1.0, tenor="7d"), "moneyness"),
        (ChainPoint(type="call", iv=0.5, k=0.0, tenor="7d"), "moneyness"),
        (ChainPoint(type="call", iv=0.5, k=1e6, tenor="7d"), "moneyness"),
    ],
)
def test_moneyness_points_out_of_bounds(point, match):
    with pytest.raises(QuantInputError, match=match):
        to_quotes([*CHAIN, point])


def _full(strike=60_000.0, underlying=61_000.0, mark_iv=55.0):
    return ChainPoint(
        type="call",
        strike=strike,
        expiryMs=1_700_000_000_000 + 7 * 86_400_000,
        tsMs=1_700_000_000_000,
        underlying=underlying,
        markIv=mark_iv,
    )


def test_full_chain_points_out_of_bounds():
    assert len(to_quotes([_full()])) == 1
    assert len(to_quotes([_full(mark_iv=500.0)])) == 1  # 500 % = the IV bound
    for bad, match in (
        (_full(mark_iv=501.0), "iv must be"),
        (_full(strike=-1.0), "strike and underlying must be finite and > 0"),
        (_full(underlying=0.0), "strike and underlying must be finite and > 0"),
        (_full(strike=61_000.0 * 25), "moneyness"),
        (_full(strike=61_000.0 / 25), "moneyness"),
    ):
        with pytest.raises(QuantInputError, match=match):
            to_quotes([bad])
    with pytest.raises(QuantInputError, match="at most 5000"):
        to_quotes(CHAIN * 501)


def _vol() -> Vol:
    s = VolSettings(subject_root="t", symbols=["BTCUSDT", "ETHUSDT"])
    ctx = ServiceContext("vol", s, InMemoryBus(), new_registry(), LiveClock(), get_logger(service="vol"), 0)
    return Vol(ctx, s, http=None)  # type: ignore[arg-type]  # no REST call in these handlers


def test_options_symbols_only_from_the_universe():
    v = _vol()
    assert v.options_universe == {"BTCUSDT", "ETHUSDT", "BTC", "ETH"}
    assert base_asset("BTCUSDT") == "BTC" and base_asset("USDT") == "USDT"
    assert v.store_chain(OptionsChainRequest("btcusdt", CHAIN)).points == len(CHAIN)
    assert v.store_chain(OptionsChainRequest("BTC", CHAIN)).points == len(CHAIN)
    for n in range(5000):  # the store accepted 5,000 junk symbols before
        with pytest.raises(KeyError, match="unknown options symbol"):
            v.store_chain(OptionsChainRequest(f"JUNK{n}", CHAIN))
    assert set(v.desk.chains) == {"BTCUSDT", "BTC"}
    with pytest.raises(KeyError) as e:
        v.store_chain(OptionsChainRequest("J" * 1_000_000, CHAIN))
    assert len(str(e.value)) < 400
    with pytest.raises(KeyError) as e:
        v.smile(SmileRequest("Z" * 1_000_000))
    assert len(str(e.value)) < 400
    with pytest.raises(KeyError) as e:
        v.forecast(VolForecastRequest("Q" * 1_000_000, 10))
    assert len(str(e.value)) < 400
    assert isinstance(v.desk, OptionsDesk)


def test_vol_closes_answers_the_newest_bars_aligned_and_bounds_n():
    v = _vol()
    book = v.books["BTCUSDT"]
    book.times_ms[:] = [60_000 * i for i in range(2_000)]
    book.closes[:] = [100.0 + i for i in range(2_000)]
    book.closes.append(1e6)  # add_bars (a worker thread) has appended the close, not yet its time
    got = v.closes(ClosesRequest("btcusdt", 3))
    assert got.symbol == "BTCUSDT" and got.openTimeMs == [60_000 * i for i in (1_997, 1_998, 1_999)]
    assert got.close == [2_097.0, 2_098.0, 2_099.0]
    assert len(v.closes(ClosesRequest("BTCUSDT", MAX_CLOSES)).close) == MAX_CLOSES
    for n in (0, -1, MAX_CLOSES + 1):
        with pytest.raises(QuantInputError, match="n must be"):
            v.closes(ClosesRequest("BTCUSDT", n))
    with pytest.raises(KeyError) as e:
        v.closes(ClosesRequest("Q" * 1_000_000, 10))
    assert len(str(e.value)) < 400


def test_gateway_errors_never_echo_megabytes():
    resp = error(404, "not_found", "unknown thing " + "x" * 2_000_000)
    assert resp.status == 404 and len(resp.body) < 700  # type: ignore[arg-type]
