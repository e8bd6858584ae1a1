"""The Binance book procedure on every real capture: 0 gaps, never crossed, and the top of
book equals the recorded bookTicker wherever the two streams show the same state."""

from __future__ import annotations

import bisect

import pytest

from stevie.contracts import BookState
from stevie.services.book_maintainer.core import BookSync
from tests.helpers.capture import CAPTURES, DecimalBook, arrival_order, capture_id, is_usdm, load, to_diff, to_snapshot


@pytest.mark.parametrize("path", CAPTURES, ids=capture_id)
def test_book_sync_on_capture(path):
    raw = load(path)
    usdm = is_usdm(path)
    symbol = raw.diffs[0]["s"]
    sync = BookSync("v", symbol, usdm, top_k=1)
    tops: list[tuple[int, tuple, tuple]] = []  # (u, best bid, best ask) after every applied diff
    live_diffs = 0
    for kind, item in arrival_order(raw):
        if kind == "snapshot":
            sync.on_snapshot(to_snapshot("v", symbol, item))
            continue
        sync.on_diff(to_diff("v", item))
        if sync.state is BookState.LIVE and sync.book.last_update_id == item["u"]:
            live_diffs += 1
            assert not sync.book.is_crossed()
            tops.append((item["u"], sync.book.best_bid(), sync.book.best_ask()))
    assert sync.counters.gaps == 0 and sync.counters.resyncs == 0 and sync.counters.crossed == 0
    assert sync.state is BookState.LIVE
    assert live_diffs >= len(raw.diffs) - 10  # all but the pre-snapshot stale ones

    # bookTicker states that the diff stream also shows: u_i <= update_id < U_{i+1}
    us = [u for u, _, _ in tops]
    next_first = {d["u"]: None for d in raw.diffs}
    prev = None
    for d in raw.diffs:
        if prev is not None:
            next_first[prev] = d["U"]
        prev = d["u"]
    compared = 0
    for t in raw.tickers:
        uid = int(t["update_id"])
        i = bisect.bisect_right(us, uid) - 1
        if i < 0:
            continue
        u, bb, ba = tops[i]
        nxt = next_first.get(u)
        if nxt is None or not (u <= uid < nxt):
            continue
        assert bb == (float(t["bid_px"]), float(t["bid_qty"])), (uid, bb, t)
        assert ba == (float(t["ask_px"]), float(t["ask_qty"])), (uid, ba, t)
        compared += 1
    assert compared > 500, f"only {compared} comparable bookTicker states"


@pytest.mark.parametrize("path", CAPTURES[:2], ids=capture_id)
def test_python_book_equals_decimal_rebuild_everywhere(path):
    """Every level of the sortedcontainers book equals the independent Decimal rebuild."""
    raw = load(path)
    usdm = is_usdm(path)
    ref = DecimalBook(raw.snapshot, usdm)
    sync = BookSync("v", raw.diffs[0]["s"], usdm)
    sync.on_snapshot(to_snapshot("v", "X", raw.snapshot))
    for n, d in enumerate(raw.diffs):
        ref.apply(d)
        sync.on_diff(to_diff("v", d))
        if n % 250 == 0 and ref.started:
            assert sync.book.last_update_id == ref.last
            depth = len(ref.bids) + len(ref.asks)
            assert sync.book.top_k(depth) == ref.top(depth)
