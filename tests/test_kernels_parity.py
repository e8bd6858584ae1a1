"""Parity of the Rust fast path and its Python/numpy twin: one body over both backends.

Books: random snapshots, diffs (zero sizes, gaps, duplicates, reorderings) through the float
API and the bytes API end on identical books (every level) with identical verdicts.
Features: incremental and batch, both backends, agree to |Δ| ≤ 1e-9. Then the same on every
real capture in data/samples.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stevie.quant.kernels import load
from tests.helpers.capture import CAPTURES, capture_id, is_usdm
from tests.helpers.capture import load as load_capture

REF = load("reference")
NAT = load("native")
TOL = 1e-9

prices = st.integers(9_000, 11_000).map(lambda i: i / 100)
sizes = st.sampled_from([0.0, 0.001, 0.5, 1.0, 2.25, 10.0])
levels = st.lists(st.tuples(prices, sizes), max_size=6)


@st.composite
def book_script(draw):
    usdm = draw(st.booleans())
    snap_b = draw(st.lists(st.tuples(st.integers(9_000, 9_999).map(lambda i: i / 100), sizes), max_size=15))
    snap_a = draw(st.lists(st.tuples(st.integers(10_001, 11_000).map(lambda i: i / 100), sizes), max_size=15))
    last = draw(st.integers(10, 10_000))  # update ids are non-negative
    diffs = []
    u = last - draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["next", "next", "next", "gap", "dup", "old"]))
        if kind == "dup" and diffs:
            diffs.append(diffs[-1])
            continue
        first = u + 1 if kind != "gap" else u + draw(st.integers(2, 5))
        if kind == "old":
            first = max(1, u - 5)
        final = first + draw(st.integers(0, 4))
        diffs.append((first, final, u if usdm else None, draw(levels), draw(levels)))
        u = max(u, final)
    return usdm, snap_b, snap_a, last, diffs


def _json(first, final, prev, bids, asks):
    msg = {
        "e": "depthUpdate",
        "E": 1,
        "s": "X",
        "U": first,
        "u": final,
        "b": [[f"{p:.2f}", f"{q}"] for p, q in bids],
        "a": [[f"{p:.2f}", f"{q}"] for p, q in asks],
    }
    if prev is not None:
        msg["pu"] = prev
    return json.dumps(msg).encode()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book_script(), st.booleans())
def test_books_identical_on_both_backends(script, via_bytes):
    usdm, sb, sa, last, diffs = script
    books = [REF.OrderBook(usdm=usdm), NAT.OrderBook(usdm=usdm)]
    for b in books:
        b.apply_snapshot(sb, sa, last)
    for d in diffs:
        out = [b.apply_depth_json(_json(*d)) if via_bytes else b.apply_diff(*d) for b in books]
        assert out[0] == out[1]
        assert books[0].levels() == books[1].levels()
        assert books[0].last_update_id == books[1].last_update_id
        assert books[0].synced == books[1].synced and books[0].is_crossed() == books[1].is_crossed()
    assert books[0].best_bid() == books[1].best_bid() and books[0].best_ask() == books[1].best_ask()
    assert books[0].depth_within_bps(50) == pytest.approx(books[1].depth_within_bps(50), abs=TOL)
    for x, y in zip(books[0].top_k_arrays(5), books[1].top_k_arrays(5), strict=True):
        np.testing.assert_array_equal(x, y)


# Wide books: prices far beyond the native book's dense window of ticks, on grids of
# different ticks (the native book re-grids on a finer price) and jumps of the best level.
wide_prices = st.one_of(
    st.integers(1, 100_000).map(lambda i: i * 0.5),
    st.integers(100_000, 5_000_000).map(lambda i: i / 100),
    st.integers(1, 50).map(lambda i: 25_000.0 + i / 100),
)
wide_levels = st.lists(st.tuples(wide_prices, sizes), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(wide_prices, sizes), max_size=40), st.lists(st.tuples(wide_levels, wide_levels), max_size=30))
def test_wide_books_identical_on_both_backends(snapshot, diffs):
    books = [REF.OrderBook(), NAT.OrderBook()]
    for b in books:
        b.apply_snapshot(snapshot, [(round(p + 60_000.0, 2), q) for p, q in snapshot], 1)
    for u, (bids, asks) in enumerate(diffs, start=2):
        assert books[0].apply_diff(u, u, None, bids, asks) == books[1].apply_diff(u, u, None, bids, asks)
        assert books[0].levels() == books[1].levels()
        assert books[0].top_k(20) == books[1].top_k(20)


def test_malformed_bytes_are_rejected_alike():
    for kernels in (REF, NAT):
        b = kernels.OrderBook()
        b.apply_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 10)
        for bad in (
            b"not json",
            b'{"E":1}',
            b'{"E":1,"U":11,"u":11,"b":[["x","1"]],"a":[]}',
            b'{"E":1,"U":11,"u":11,"b":[["100.123456789","1"]],"a":[]}',
        ):
            with pytest.raises(ValueError):
                b.apply_depth_json(bad)
        assert b.levels() == ([(100.0, 1.0)], [(101.0, 1.0)])


# Spot-format lines ("61737.63000000", 8 decimals: the native SIMD and SWAR level parsers)
# mixed with other shapes, spaces, blank lines, malformed and trailing bytes, as one capture.
spot_number = st.builds(
    lambda whole, frac, style: f"{whole}.{frac:08d}" if style < 8 else (f"{whole}.5" if style == 8 else f"{whole}"),
    st.integers(0, 99_999_999),
    st.integers(0, 99_999_999),
    st.integers(0, 9),
)
spot_price = st.integers(1, 3_000_000).map(lambda i: f"{i / 100:.8f}")


@st.composite
def spot_line(draw, u):
    def side():
        pairs = draw(st.lists(st.tuples(spot_price, spot_number), max_size=12))
        sep = draw(st.sampled_from([",", ",", ",", ", "]))
        return sep.join(f'["{p}","{q}"]' for p, q in pairs)

    line = f'{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{u},"u":{u},"b":[{side()}],"a":[{side()}]}}'
    match draw(st.integers(0, 20)):
        case 0:
            return line[:-3]  # cut short
        case 1:
            return line + " x"  # trailing bytes
        case 2:
            return line.replace("0.", "0.x", 1)  # a corrupt number
        case 3:
            return "  "  # blank
    return line


@st.composite
def spot_capture(draw):
    return "\n".join(draw(spot_line(u)) for u in range(11, 11 + draw(st.integers(1, 25)))).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spot_capture())
def test_spot_format_replay_identical_on_both_backends_and_threads(data):
    out = []
    for kernels, threads in ((REF, 1), (NAT, 1), (NAT, 2)):
        b = kernels.OrderBook()
        b.apply_snapshot([(15_000.0, 1.0)], [(15_000.01, 1.0)], 10)
        out.append((b.replay_lines(data, 20, threads=threads), b.levels(), b.last_update_id))
    assert out[0] == out[1] == out[2]


def test_replay_threads_must_be_1_or_2():
    for kernels in (REF, NAT):
        with pytest.raises(ValueError, match="threads"):
            kernels.OrderBook().replay_lines(b"", 20, threads=3)


@st.composite
def tape(draw):
    n = draw(st.integers(1, 40))
    t = 0
    events = []
    mid = 100.0
    for _ in range(n):
        t += draw(st.integers(0, 2_000_000_000))
        if draw(st.booleans()):
            events.append(
                ("trade", t, draw(st.sampled_from([99.9, 100.0, 100.1, 100.2])), draw(sizes), draw(st.booleans()))
            )
        else:
            mid = round(mid + draw(st.integers(-3, 3)) * 0.05, 2)
            nb, na = draw(st.integers(0, 5)), draw(st.integers(0, 5))
            bids = [(round(mid - 0.05 - 0.1 * i, 2), draw(sizes) or 0.5) for i in range(nb)]
            asks = [(round(mid + 0.05 + 0.1 * i, 2), draw(sizes) or 0.5) for i in range(na)]
            events.append(("book", t, bids, asks))
    return events


FIELDS = ("obi", "ti", "spread_bps", "micro_vol_bps", "cancel_rate", "mid")


def _incremental(kernels, events, k=3, window=3_000_000_000):
    kern = kernels.MicroKernel(k, window)
    rows = []
    for e in events:
        if e[0] == "trade":
            kern.on_trade(e[2], e[3], e[4], e[1])
        else:
            f = kern.on_book(e[2], e[3], e[1])
            rows.append([np.nan] * 6 if f is None else [getattr(f, x) for x in FIELDS])
    return np.array(rows).reshape(-1, 6)


def _batch(kernels, events, k=3, window=3_000_000_000, width=5):
    books = [e for e in events if e[0] == "book"]
    trades = [e for e in events if e[0] == "trade"]
    n = len(books)
    arr = {x: np.full((n, width), np.nan) for x in ("bp", "bs", "ap", "az")}
    for i, (_, _, bids, asks) in enumerate(books):
        for j, (p, q) in enumerate(bids):
            arr["bp"][i, j], arr["bs"][i, j] = p, q
        for j, (p, q) in enumerate(asks):
            arr["ap"][i, j], arr["az"][i, j] = p, q
    return kernels.batch_features(
        k,
        window,
        np.array([b[1] for b in books], dtype=np.int64),
        arr["bp"],
        arr["bs"],
        arr["ap"],
        arr["az"],
        np.array([t[1] for t in trades], dtype=np.int64),
        np.array([t[2] for t in trades], dtype=float),
        np.array([t[3] for t in trades], dtype=float),
        np.array([t[4] for t in trades], dtype=bool),
    )


def _ordered(events):
    """Within one timestamp, trades come before books (the batch convention)."""
    return sorted(events, key=lambda e: (e[1], e[0] == "book"))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tape())
def test_features_agree_incremental_and_batch_on_both_backends(events):
    events = _ordered(events)
    results = [_incremental(REF, events), _incremental(NAT, events), _batch(REF, events), _batch(NAT, events)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=TOL, equal_nan=True)


@pytest.mark.parametrize("path", CAPTURES, ids=capture_id)
def test_real_capture_bytes_replay_identical(path):
    raw = load_capture(path)
    snap = raw.snapshot
    bids = [(float(p), float(q)) for p, q in snap["bids"]]
    asks = [(float(p), float(q)) for p, q in snap["asks"]]
    with gzip.open(path / "depth_updates.jsonl.gz", "rb") as f:
        data = f.read()
    out = []
    for kernels, threads in ((REF, 1), (NAT, 1), (NAT, 2)):
        b = kernels.OrderBook(usdm=is_usdm(path))
        b.apply_snapshot(bids, asks, snap["lastUpdateId"])
        out.append((b.replay_lines(data, 20, threads=threads), b.levels(), b.last_update_id))
    assert out[0] == out[1] == out[2]
    ok, stale, gap, errors = out[0][0]
    assert gap == 0 and errors == 0 and ok + stale == len(raw.diffs)


@pytest.mark.parametrize("path", CAPTURES[:3], ids=capture_id)
def test_real_capture_features_agree(path):
    """Top-5 books after every diff plus the trades of the capture, through all four paths."""
    import csv

    raw = load_capture(path)
    usdm = is_usdm(path)
    book = REF.OrderBook(usdm=usdm)
    book.apply_snapshot(
        [(float(p), float(q)) for p, q in raw.snapshot["bids"]],
        [(float(p), float(q)) for p, q in raw.snapshot["asks"]],
        raw.snapshot["lastUpdateId"],
    )
    events = []
    for d in raw.diffs[:3000]:
        bids = [(float(p), float(q)) for p, q in d["b"]]
        asks = [(float(p), float(q)) for p, q in d["a"]]
        if book.apply_diff(d["U"], d["u"], d.get("pu"), bids, asks) == "ok":
            b, a = book.top_k(5)
            events.append(("book", d["E"] * 1_000_000, b, a))
    last = events[-1][1]
    with gzip.open(path / "trades.csv.gz", "rt") as f:
        for r in csv.DictReader(f):
            ts = int(r["trade_time_ms"]) * 1_000_000
            if ts <= last:
                events.append(("trade", ts, float(r["price"]), float(r["qty"]), r["is_buyer_maker"] == "0"))
    events = _ordered(events)
    results = [_incremental(k_, events, 5, 5_000_000_000) for k_ in (REF, NAT)]
    results += [_batch(k_, events, 5, 5_000_000_000) for k_ in (REF, NAT)]
    assert len(results[0]) > 1000
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=TOL, equal_nan=True)
