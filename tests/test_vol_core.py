"""vol service core: bar handling, online GARCH between refits, options desk, allocation."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.contracts.rpc import ChainPoint
from stevie.quant import vol
from stevie.quant.errors import NotFitted, QuantInputError
from stevie.services.vol.core import OptionsDesk, SymbolVol, allocate, to_quotes
from tests.helpers.klines import closes


@pytest.fixture(scope="module")
def btc():
    c = closes("BTCUSDT")[-30_000:]
    return c, [i * 60_000 for i in range(c.size)]


def test_forecast_before_fit_is_not_fitted():
    with pytest.raises(NotFitted):
        SymbolVol("X", 1440, 5000, 60).forecast(60)


def test_bars_are_appended_once_and_garch_state_moves_online(btc):
    c, t = btc
    b = SymbolVol("BTCUSDT", 240, 5000, refit_every_bars=10_000)
    assert b.add_bars(t[:-5], list(c[:-5])) == c.size - 5
    fitted = b.garch
    s0 = b.state
    assert b.add_bars(t[-10:-5], list(c[-10:-5])) == 0  # duplicates ignored
    assert b.add_bars(t[-5:], list(c[-5:])) == 5
    assert b.garch is fitted  # no refit yet: state updated by the recursion only
    expect = s0
    for i in range(5):
        expect = vol.garch_update(fitted, expect, float(np.log(c[-5 + i] / c[-6 + i])))
    assert b.state.sigma2_next == pytest.approx(expect.sigma2_next, rel=1e-12)
    f = b.forecast(60)
    assert f.bars == c.size and f.sigmaGARCH > 0 and f.sigmaHAR > 0


def test_chain_points_forms_and_errors():
    q = to_quotes([ChainPoint(type="call", k=0.9, tenor="7d", iv=0.6)])
    assert q[0].k == 0.9
    full = to_quotes(
        [ChainPoint(type="put", strike=9000, expiryMs=10 * 86_400_000, tsMs=0, underlying=9500, markIv=80.0)]
    )
    assert full[0].iv == pytest.approx(0.8) and full[0].tenor_years == pytest.approx(10 / 365)
    for bad in (
        [],
        [ChainPoint(type="call", k=0.9)],
        [ChainPoint(type="call", k=0.9, tenor="7d", iv=0.6), ChainPoint(type="put", strike=1.0)],
        [ChainPoint(type="put", strike=9000, expiryMs=0, tsMs=5, underlying=9500, markIv=80.0)],
    ):
        with pytest.raises(QuantInputError):
            to_quotes(bad)


def test_desk_builds_rr25_history_for_skew_z():
    desk = OptionsDesk()
    for i in range(7):
        chain = [
            ChainPoint(type="call", k=0.9, tenor="7d", iv=0.6 + 0.01 * i),
            ChainPoint(type="put", k=1.1, tenor="7d", iv=0.7),
        ]
        smile = desk.store("BTC", chain)
    assert smile.history == 7 and smile.skew_z is not None and smile.skew_z < 0  # rr25 keeps falling
    with pytest.raises(KeyError):
        desk.smile("ETH")


def test_allocate_uses_common_bars(btc):
    c, t = btc
    a = SymbolVol("A", 240, 5000, 10_000)
    b = SymbolVol("B", 240, 5000, 10_000)
    a.add_bars(t, list(c))
    b.add_bars(t[100:], list(c[100:] * 1.01))
    res = allocate({"A": a, "B": b}, ["A", "B"], 0.05, None, 0.95)
    assert res.bars == c.size - 100
    with pytest.raises(KeyError):
        allocate({"A": a}, ["A", "Z"], 0.05, None, 0.95)
    with pytest.raises(QuantInputError):
        allocate({"A": a}, ["A", "A"], 0.05, None, 0.95)


def test_a_garch_fit_that_does_not_converge_never_crashes_and_keeps_the_last_fit(btc):
    """vol used to die (and be restarted) when GARCH did not converge on a refit."""
    from stevie.services.vol.core import fit_models

    c, t = btc
    windows: list[int] = []

    def failing(closes, mpp, window):
        windows.append(window)
        raise RuntimeError("GARCH optimisation did not converge")

    b = SymbolVol("BTCUSDT", 240, 4000, refit_every_bars=1000, fitter=failing)
    b.add_bars(t[:-2000], list(c[:-2000]))  # first fit: the window is halved twice, then unfitted
    assert windows == [4000, 2000, 1000] and b.garch is None and b.failed_fits == 1
    with pytest.raises(NotFitted):
        b.forecast(60)
    b.fitter = fit_models
    b.add_bars(t[-2000:-1000], list(c[-2000:-1000]))  # the next refit succeeds
    fitted = b.garch
    assert fitted is not None
    b.fitter = failing
    b.add_bars(t[-1000:], list(c[-1000:]))  # a failing refit keeps the previous fit
    assert b.garch is fitted and b.failed_fits == 2 and b.forecast(60).sigmaGARCH > 0
