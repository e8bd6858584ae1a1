"""Microstructure features on hand-computed synthetic depth and tape."""

from __future__ import annotations

import math

import pytest

from stevie.quant import micro
from stevie.quant.errors import QuantInputError

S = 1_000_000_000


def test_obi_and_spread_by_hand():
    bids = [(100.0, 3.0), (99.0, 1.0)]
    asks = [(101.0, 1.0), (102.0, 1.0)]
    assert micro.obi(bids, asks, k=2) == pytest.approx((4 - 2) / 6)
    assert micro.obi(bids, asks, k=1) == pytest.approx((3 - 1) / 4)
    assert micro.spread_bps(100.0, 101.0) == pytest.approx(1 / 100.5 * 1e4)
    with pytest.raises(QuantInputError):
        micro.spread_bps(101.0, 100.0)


def test_trade_imbalance_window():
    ti = micro.TradeImbalance(window_ns=5 * S)
    ti.update(3.0, True, 0)
    ti.update(1.0, False, 1 * S)
    assert ti.value(1 * S) == pytest.approx(0.5)
    assert ti.value(6 * S) == pytest.approx(-1.0)  # the buy left the window
    assert ti.value(20 * S) == 0.0


def test_micro_vol_is_realised_over_window():
    mv = micro.MicroVol(window_ns=2 * S)
    for t, m in [(0, 100.0), (1, 101.0), (2, 100.0), (4, 100.5)]:
        mv.update(m, t * S)
    r2 = math.log(100 / 101) ** 2 + math.log(100.5 / 100) ** 2  # returns at t=2 and t=4 are in [2, 4]
    assert mv.value(4 * S) == pytest.approx(math.sqrt(r2) * 1e4)


def test_cancel_rate_excludes_traded_size():
    cr = micro.CancelRate(window_ns=1 * S)
    cr.on_book([(100.0, 5.0), (99.0, 2.0)], [(101.0, 4.0), (102.0, 1.0)], 0)
    cr.on_trade(101.0, 1.0)  # 1 of the 3 removed at 101 is explained by a trade
    cr.on_book([(100.0, 4.0), (99.0, 2.0)], [(101.0, 1.0), (102.0, 1.0)], S // 2)
    # removed: bid 100: 1 (no trade), ask 101: 3 − 1 traded = 2 → 3 per 1 s window
    assert cr.value(S // 2) == pytest.approx(3.0)


def test_state_resets_and_rejects_time_going_back():
    st = micro.MicrostructureState(k=1, window_ns=5 * S)
    f = st.on_book([(100.0, 1.0)], [(100.1, 3.0)], 1 * S)
    assert f is not None and f.obi == pytest.approx(-0.5) and f.micro_vol_bps == 0.0
    st.on_trade(100.1, 2.0, True, 2 * S)
    with pytest.raises(QuantInputError):
        st.on_trade(100.1, 2.0, True, 1 * S)
    st.reset()
    assert st.on_book([], [(1.0, 1.0)], 3 * S) is None
