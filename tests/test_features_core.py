"""features core: LIVE books only, reset on resync and on event time going back."""

from __future__ import annotations

import pytest

from stevie.contracts import BookState, BookStatus, BookTopK, Trade
from stevie.quant.kernels import load
from stevie.services.features.core import Features

S = 1_000_000_000
KERNELS = load("auto")


def book(ts, bids, asks, state=BookState.LIVE):
    return BookTopK(venue="v", symbol="X", seq=1, state=state, bids=bids, asks=asks, ts_event_ns=ts, ts_init_ns=0)


def trade(ts, size, side):
    return Trade(
        venue="v", symbol="X", trade_id=1, price=100.0, size=size, aggressor=side, ts_event_ns=ts, ts_init_ns=0
    )


def test_feature_vector_from_books_and_trades():
    f = Features(k=1, window_ns=5 * S, init_clock=lambda: 7, kernels=KERNELS)
    assert f.on_book(book(1 * S, [(100.0, 3.0)], [(100.1, 1.0)])) is not None
    f.on_trade(trade(2 * S, 1.0, "buy"))
    f.on_trade(trade(2 * S, 3.0, "sell"))
    out = f.on_book(book(3 * S, [(100.0, 1.0)], [(100.1, 1.0)]))
    assert out is not None and out.obi == 0 and out.ti == pytest.approx(-0.5) and out.ts_init_ns == 7
    assert f.on_book(book(4 * S, [(100.0, 1.0)], [(100.1, 1.0)], BookState.SYNCING)) is None


def test_resync_and_time_reversal_reset_state():
    f = Features(k=1, window_ns=5 * S, init_clock=lambda: 0, kernels=KERNELS)
    f.on_trade(trade(10 * S, 1.0, "buy"))
    f.on_status(
        BookStatus(
            venue="v",
            symbol="X",
            state=BookState.SYNCING,
            reason="gap",
            seq=1,
            resyncs=1,
            ts_event_ns=10 * S,
            ts_init_ns=0,
        )
    )
    out = f.on_book(book(11 * S, [(100.0, 1.0)], [(100.1, 1.0)]))
    assert out is not None and out.ti == 0.0  # the pre-resync trade is forgotten
    f.on_trade(trade(12 * S, 1.0, "buy"))
    f.on_trade(trade(5 * S, 1.0, "buy"))  # a new venue session: time went back
    assert f.rejected == 1
