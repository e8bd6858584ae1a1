"""The Rust twin of the book-maintainer core (``NativeBookSync`` over
``stevie_fastpath.BookSync``) publishes exactly what the Python ``BookSync`` publishes: the
same ``BookTopK``/``BookStatus`` sequence (state, seq, levels, event and init times, reasons,
resync counts), the same counters and the same guard rejections —

- on every recorded capture in ``data/samples`` (the Rust sync over the raw depth lines, the
  Python core over the features service's decoding of them: equal message for message);
- on generated sequences with gaps, stale runs, crossed books, L2 guard trips (far prices,
  size spikes, NaN/inf/negative levels), buffer overflows, snapshots at any time, resyncs,
  flushes and staleness checks, event time going back, with the guard on and off
  (checked to fail, 2026-12-01, when the Rust coalescing published at ``> 100 ms`` instead of
  ``≥ 100 ms``: the generated-sequence test found it; change reverted).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stevie.backtest import l2
from stevie.contracts import BookTopK, DepthDiff, DepthSnapshot
from stevie.quant.kernels import load as load_kernels
from stevie.quant.quality import L2Limits
from stevie.services.book_maintainer.core import BookSync, NativeBookSync
from stevie.services.features.offline import load
from tests.helpers.capture import CAPTURES

NATIVE = load_kernels("native")


def _ref(c: Path) -> l2.CaptureRef:
    venue = "binance-usdm" if c.parts[-3] == "usdm" else "binance"
    start = l2.capture_start_ns(c)
    assert start is not None
    return l2.CaptureRef(venue, c.parts[-2].upper(), c, start)


@pytest.mark.parametrize("folder", CAPTURES, ids=[f"{c.parts[-3]}-{c.parts[-2]}-{c.name}" for c in CAPTURES])
def test_rust_sync_publishes_what_the_python_core_publishes_on_every_capture(folder: Path) -> None:
    ref = _ref(folder)
    s = l2.L2Settings(captures=[ref.label])
    cap = l2.load_capture(ref.venue, ref.symbol, folder)
    n, native = NativeBookSync(ref.venue, ref.symbol, cap.usdm).replay_capture(cap.snapshot, cap.depth_lines)
    python = [m for _, k, m in l2.book_stream_python(load(ref.venue, ref.symbol, folder), s, NATIVE) if k == 1]
    assert n == cap.n_diffs and len(native) == len(python) > 1000
    assert native == python  # every BookTopK / BookStatus, field for field
    assert sum(1 for m in native if isinstance(m, BookTopK)) > 1000


# -- generated sequences -----------------------------------------------------------------------

PX = [99.0 + 0.5 * i for i in range(6)]  # a small grid around 100: crossings happen
ODD = [float("nan"), float("inf"), -1.0, 1e6, 1e-4]  # guard trips: non-finite, far from the mid
SIZES = [0.0, 0.0, 1.0, 2.5, 1e9]  # deletions, ordinary sizes, a size spike
levels = st.lists(st.tuples(st.sampled_from(PX + ODD[:1] + ODD[3:]), st.sampled_from(SIZES + ODD[:3])), max_size=4)


@st.composite
def script(draw):
    """(usdm, guard on, buffer size, coalesce ns, operations)."""
    usdm = draw(st.booleans())
    ops, last, ts = [], 1000, 0
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["diff"] * 8 + ["snapshot", "resync", "flush", "stale"]))
        ts += draw(st.sampled_from([0, 10, 60, 150, -40]))  # sometimes event time goes back
        if kind == "diff":
            how = draw(st.sampled_from(["next", "next", "next", "gap", "stale", "straddle"]))
            first = {"next": last + 1, "gap": last + 3, "stale": last - 5, "straddle": last - 1}[how]
            final = first + draw(st.integers(0, 2))
            prev = draw(st.sampled_from([last, last - 1, None]))
            ops.append(("diff", first, final, prev, draw(levels), draw(levels), ts))
            last = max(last, final)
        elif kind == "snapshot":
            bids = draw(st.lists(st.tuples(st.sampled_from(PX[:3]), st.sampled_from([0.0, 1.0, 3.0])), max_size=3))
            asks = draw(st.lists(st.tuples(st.sampled_from(PX[3:]), st.sampled_from([0.0, 1.0, 3.0])), max_size=3))
            ops.append(("snapshot", bids, asks, last - draw(st.integers(0, 3)), ts))
        elif kind == "resync":
            ops.append(("resync", draw(st.sampled_from(["disconnect", "overflow"])), ts))
        elif kind == "stale":
            ops.append(("stale", draw(st.integers(0, 3000)), 2000, ts))
        else:
            ops.append(("flush",))
    return usdm, draw(st.booleans()), draw(st.sampled_from([2, 5000])), draw(st.sampled_from([0, 100])), ops


def _run(sync: BookSync | NativeBookSync, op: tuple) -> list:
    kind = op[0]
    if kind == "diff":
        _, first, final, prev, bids, asks, ts = op
        d = DepthDiff(
            venue="v",
            symbol="S",
            first_update_id=first,
            final_update_id=final,
            prev_final_update_id=prev,
            bids=bids,
            asks=asks,
            ts_event_ns=ts,
            ts_init_ns=ts,
        )
        return sync.on_diff(d)
    if kind == "snapshot":
        _, bids, asks, last, ts = op
        snap = DepthSnapshot(
            venue="v", symbol="S", last_update_id=last, bids=bids, asks=asks, ts_event_ns=ts, ts_init_ns=ts
        )
        return sync.on_snapshot(snap)
    if kind == "resync":
        return sync.resync(op[1], op[2])
    if kind == "stale":
        return sync.check_stale(op[1], op[2], op[3])
    return sync.flush()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script())
def test_rust_sync_equals_the_python_core_on_generated_sequences(sc) -> None:
    usdm, guard, buffer_size, coalesce_ns, ops = sc
    limits = L2Limits() if guard else None
    clocks = [itertools.count(10**18), itertools.count(10**18)]  # an injected init clock, same calls
    kw = dict(top_k=3, coalesce_ns=coalesce_ns, buffer_size=buffer_size, l2_limits=limits, guard_depth=2)
    py = BookSync("v", "S", usdm, book=NATIVE.OrderBook(usdm=usdm), init_clock=lambda: next(clocks[0]), **kw)
    rs = NativeBookSync("v", "S", usdm, init_clock=lambda: next(clocks[1]), **kw)
    for i, op in enumerate(ops):
        a, b = _run(py, op), _run(rs, op)
        assert repr(a) == repr(b), f"step {i} {op}"  # repr: NaN levels compare equal
        assert (py.state, py.wants_snapshot, py.counters) == (rs.state, rs.wants_snapshot, rs.counters), f"step {i}"
        assert repr(py.take_rejected()) == repr(rs.take_rejected()), f"step {i}"
        assert py.last_event_ns == rs.last_event_ns


def test_every_branch_on_a_written_sequence() -> None:
    """A hand-written sequence through both: buffered diffs, snapshot, LIVE, coalescing, a
    flush, a gap, each guard reason, a crossed book, a stale run, STALE and back to LIVE — the
    outputs are equal and every reason occurs."""
    nan = float("nan")
    snap = ("snapshot", [(100.0, 1.0)], [(100.5, 1.0)], 10, 5)
    ops: list[tuple] = [("diff", 9, 11, None, [(99.5, 1.0)], [], 1), snap]
    ops += [("diff", 12, 12, None, [(99.0, 2.0)], [], 200), ("diff", 13, 13, None, [], [(101.0, 1.0)], 250)]
    ops += [("flush",), ("diff", 20, 20, None, [], [], 300), ("diff", 9, 11, None, [], [], 310), snap]
    for k, bad in enumerate([[(1e6, 1.0)], [(100.0, 1e9)], [(nan, 1.0)], [(101.0, 1.0)]]):  # guard, crossed
        ops += [("diff", 12, 12, None, bad, [], 400 + k), ("diff", 9, 11, None, [], [], 401 + k), snap]
    ops += [("diff", 5, 5, None, [], [], 500)] * 102  # a stale run
    ops += [("diff", 9, 11, None, [], [], 600), snap, ("stale", 3000, 2000, 700)]
    ops += [("diff", 12, 12, None, [(99.0, 1.0)], [], 800), ("resync", "disconnect", 900), ("resync", "again", 901)]
    py = BookSync("v", "S", False, book=NATIVE.OrderBook(usdm=False))
    rs = NativeBookSync("v", "S", False)
    reasons = []
    for op in ops:
        a, b = _run(py, op), _run(rs, op)
        assert repr(a) == repr(b), op
        reasons += [getattr(m, "reason", "book") for m in a]
    assert py.counters == rs.counters and py.counters.l2_rejected == 3 and py.counters.crossed == 1
    # diffs 12 and 13 come within 100 ms of the LIVE book: published once, by the flush
    want = ["live", "book", "book", "gap", "live", "book", "far_from_mid", "live", "book", "size_spike"]
    want += ["live", "book", "non_finite", "live", "book", "crossed", "live", "book", "stale_run", "live", "book"]
    want += ["no_updates", "live", "book", "disconnect"]
    assert reasons == want
    assert [r.reason for r in py.take_rejected()] == [r.reason for r in rs.take_rejected()]
