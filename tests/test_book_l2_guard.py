"""L2 level guard in the book maintainer's pure core, on the real captures.

The venue edge's ``depth_spike`` chaos (the real ``Chaos.spike_diff``) adds a 100,000× size at
the best bid and a bid at 0.001× the best bid to one diff of a LIVE book. The guard
(``stevie.quant.quality.l2_levels`` against the book's mid and visible top-20 size) must
refuse the diff, resync the book and never publish it as LIVE; after a fresh snapshot the
book is LIVE and equal to the independent ``Decimal`` rebuild again. Without the guard the
same diff leaves the bogus level at the best bid of a LIVE book (so the test would catch a
broken guard).
"""

from __future__ import annotations

import pytest

from stevie.contracts import BookState, BookStatus, BookTopK, DepthDiff, DepthSnapshot
from stevie.contracts.ops import ChaosRequest
from stevie.quant.quality import L2Limits
from stevie.services.book_maintainer.core import BookSync
from stevie.services.venue_replay.chaos import Chaos
from tests.helpers.capture import CAPTURES, DecimalBook, capture_id, is_usdm, load, to_diff, to_snapshot

# spot BTC 2024 and the USD-M BTC 2023 capture (the one with real levels at 11× / 0.02× the mid)
PATHS = [p for p in CAPTURES if "spot/btcusdt" in str(p) or "l2_2023" in str(p)]


def _snapshot_of(ref: DecimalBook, symbol: str) -> DepthSnapshot:
    """What the venue's REST depth answers: its own book (which never saw the bogus levels)."""
    depth = len(ref.bids) + len(ref.asks)
    bids, asks = ref.top(depth)
    return DepthSnapshot(
        venue="v", symbol=symbol, last_update_id=ref.last, bids=bids, asks=asks, ts_event_ns=0, ts_init_ns=0
    )


def _check_served(outs, ref: DecimalBook, k: int, full: bool = True) -> int:
    """Every book published is LIVE at the rebuild's seq; with ``full`` its levels equal the
    rebuild's (sorting the rebuild is the cost: done around the fault and every 50th diff)."""
    n = 0
    for out in outs:
        if isinstance(out, BookTopK):
            assert out.state is BookState.LIVE
            assert out.seq == ref.last
            if full:
                assert (out.bids, out.asks) == ref.top(k)
            n += 1
    return n


@pytest.mark.parametrize("path", PATHS, ids=capture_id)
def test_depth_spike_is_refused_resynced_and_recovered(path):
    raw = load(path)
    usdm, symbol = is_usdm(path), raw.diffs[0]["s"]
    ref = DecimalBook(raw.snapshot, usdm)
    sync = BookSync("v", symbol, usdm, top_k=20, coalesce_ns=0)
    outs = sync.on_snapshot(to_snapshot("v", symbol, raw.snapshot))
    chaos = Chaos({"v": [symbol]})
    spike_at, snap_after = len(raw.diffs) // 2, 5
    served, resync_reason = 0, None
    statuses: list[BookStatus] = []
    for n, d in enumerate(raw.diffs):
        if n == spike_at:
            assert sync.state is BookState.LIVE
            chaos.inject(ChaosRequest(type="depth_spike"), now_ns=0)
            bids = {str(p): str(q) for p, q in ref.bids.items()}
            d_sent = chaos.spike_diff("v", symbol, d, bids, now_ns=0)
            assert len(d_sent["b"]) == len(d["b"]) + 2
        else:
            d_sent = d
        ref.apply(d)  # the venue's own book applies the real diff
        outs = sync.on_diff(to_diff("v", d_sent))
        statuses += [o for o in outs if isinstance(o, BookStatus)]
        served += _check_served(outs, ref, 20, full=n % 50 == 0 or spike_at - 5 <= n <= spike_at + snap_after + 20)
        if n == spike_at:
            assert sync.state is BookState.SYNCING
            resync_reason = statuses[-1].reason
            rejected = sync.take_rejected()
            assert [r.reason for r in rejected] == [resync_reason]
            assert rejected[0].diff.final_update_id == d["u"] and rejected[0].visible_size > 0
        if n == spike_at + snap_after:
            assert sync.state is BookState.SYNCING and sync.wants_snapshot and sync.buffer
            outs = sync.on_snapshot(_snapshot_of(ref, symbol))
            served += _check_served(outs, ref, 20)
        if n == spike_at + snap_after + 1:  # the first diff that continues the snapshot
            assert sync.state is BookState.LIVE
    # the far bid (0.001× the best bid) is caught first; the huge size too when it is the only bad level
    assert resync_reason in ("far_from_mid", "size_spike")
    assert sync.counters.resyncs == 1 and sync.counters.l2_rejected == 1
    assert sync.counters.l2_checked >= len(raw.diffs) - 20
    assert sync.state is BookState.LIVE
    depth = len(ref.bids) + len(ref.asks)
    assert sync.book.top_k(depth) == ref.top(depth)
    assert served > 100


def test_without_the_guard_the_bogus_size_is_served_as_live():
    path = PATHS[0]
    raw = load(path)
    usdm, symbol = is_usdm(path), raw.diffs[0]["s"]
    ref = DecimalBook(raw.snapshot, usdm)
    sync = BookSync("v", symbol, usdm, coalesce_ns=0, l2_limits=None)
    sync.on_snapshot(to_snapshot("v", symbol, raw.snapshot))
    for d in raw.diffs[:200]:
        ref.apply(d)
        sync.on_diff(to_diff("v", d))
    d = raw.diffs[200]
    chaos = Chaos({"v": [symbol]})
    chaos.inject(ChaosRequest(type="depth_spike"), now_ns=0)
    best = max(ref.bids)
    size_before = ref.bids[best]
    outs = sync.on_diff(
        to_diff("v", chaos.spike_diff("v", symbol, d, {str(p): str(q) for p, q in ref.bids.items()}, 0))
    )
    ref.apply(d)
    tops = [o for o in outs if isinstance(o, BookTopK)]
    assert sync.state is BookState.LIVE and tops
    # a wrong book served as LIVE: the best bid carries the 100,000× size the venue never had
    assert tops[-1].bids[0] == (float(best), float(size_before * 100_000))
    assert tops[-1].bids != ref.top(20)[0]


def _snap() -> DepthSnapshot:
    """A spot book: 20 bids 100.0, 99.5, … and 20 asks 100.5, 101.0, …, size 1 each, id 10."""
    bids = [(100.0 - i * 0.5, 1.0) for i in range(20)]
    asks = [(100.5 + i * 0.5, 1.0) for i in range(20)]
    return DepthSnapshot(venue="v", symbol="S", last_update_id=10, bids=bids, asks=asks, ts_event_ns=0, ts_init_ns=0)


def _book() -> BookSync:
    sync = BookSync("v", "S", False, coalesce_ns=0)
    sync.on_snapshot(_snap())
    return sync


def _diff(u: int, bids, asks=()) -> DepthDiff:
    return DepthDiff(
        venue="v",
        symbol="S",
        first_update_id=u,
        final_update_id=u,
        prev_final_update_id=None,
        bids=list(bids),
        asks=list(asks),
        ts_event_ns=u * 1_000_000,
        ts_init_ns=0,
    )


def test_size_spike_far_level_and_limits():
    sync = _book()
    assert sync.on_diff(_diff(11, [(100.0, 2.0)]))  # goes LIVE on the first continuing diff
    assert sync.state is BookState.LIVE
    # visible top-20 size of both sides = 40 - 1 + 2 = 41; a size above 200× that is a spike
    outs = sync.on_diff(_diff(12, [(99.5, 200 * 41 + 1)]))
    assert sync.state is BookState.SYNCING
    assert [o.reason for o in outs if isinstance(o, BookStatus)] == ["size_spike"]
    # just below the limit is applied; an ask 401× the mid is far_from_mid
    sync = _book()
    sync.on_diff(_diff(11, [(99.5, 200 * 40 - 1)]))
    assert sync.state is BookState.LIVE and sync.book.best_bid() == (100.0, 1.0)
    outs = sync.on_diff(_diff(12, [], [(100.25 * 401, 1.0)]))
    assert [o.reason for o in outs if isinstance(o, BookStatus)] == ["far_from_mid"]
    # looser limits let the same level through
    sync = BookSync("v", "S", False, coalesce_ns=0, l2_limits=L2Limits(max_price_ratio=1000.0))
    sync.on_snapshot(_snap())
    sync.on_diff(_diff(11, [], [(100.25 * 401, 1.0)]))
    assert sync.state is BookState.LIVE


def test_a_bad_first_diff_after_the_snapshot_never_goes_live():
    sync = BookSync("v", "S", False, coalesce_ns=0)
    sync.on_diff(_diff(11, [(0.01, 1.0)]))  # buffered before the snapshot
    sync.on_diff(_diff(12, [(100.0, 2.0)]))
    outs = sync.on_snapshot(_snap())
    assert sync.state is BookState.SYNCING and not any(isinstance(o, BookTopK) for o in outs)
    assert [o.reason for o in outs] == ["far_from_mid"]
    assert sync.wants_snapshot and [d.final_update_id for d in sync.buffer] == [12]  # kept for the next snapshot
    # a stale bogus diff (u ≤ the book's id) is never applied, so it is not judged
    sync = _book()
    sync.on_diff(_diff(11, [(100.0, 2.0)]))
    checked = sync.counters.l2_checked
    sync.on_diff(_diff(9, [(0.01, 1.0)]))
    assert sync.state is BookState.LIVE and sync.counters.l2_checked == checked
