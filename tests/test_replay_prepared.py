"""The replay venue's compact, cached timeline (``captures.PreparedWindow``) serves exactly
what the plain Python view serves: the same events in the same order with the same wire
payloads, the same closed 1-minute bars from trades at any replay time, the same re-anchored
kline history rows — and the on-disk cache round-trips and is keyed by the source files."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil

import numpy as np
import pytest

from stevie.services.venue_replay.captures import (
    KlineHistory,
    cache_path,
    capture_dirs,
    load_capture,
    load_kline_history,
    load_prepared,
    prepare_window,
    read_prepared,
    write_prepared,
)
from stevie.services.venue_replay.core import first_mid, klines_from_trades, reanchor, timeline, wire_payload
from tests.helpers.capture import SAMPLES

WINDOW = "2023-04-04"  # one USD-M capture: the smallest window


@pytest.fixture(scope="module")
def plain():
    caps = [load_capture(v, s, d) for (v, s), d in capture_dirs(SAMPLES, WINDOW).items()]
    return caps, timeline(caps)


@pytest.fixture(scope="module")
def prepared():
    return prepare_window(SAMPLES, WINDOW, history=False)


def test_events_equal_the_plain_timeline(plain, prepared):
    _, events = plain
    seq = prepared.events()
    assert len(seq) == len(events) > 1000
    for i, (a, b) in enumerate(zip(events, seq, strict=True)):
        assert (a.ts_ns, a.venue, a.symbol, a.kind) == (b.ts_ns, b.venue, b.symbol, b.kind), i
        assert wire_payload(a) == b.payload == json.loads(prepared.payload_bytes(i)), i
    assert seq[-1].ts_ns == events[-1].ts_ns and seq[5:7][1].payload == wire_payload(events[6])
    # out of order across chunks (the cached chunk is swapped), and the bounds
    for i in (len(events) - 1, 0, prepared.chunk_events, prepared.chunk_events - 1, len(events) // 2):
        assert json.loads(prepared.payload_bytes(i)) == wire_payload(events[i]), i
    with pytest.raises(IndexError):
        prepared.payload_bytes(len(events))
    # compressed: well under the payloads' JSON size
    assert len(prepared.chunks) > 1 and prepared.payload_nbytes < 0.4 * int(prepared.offsets[-1])


def test_trade_bars_equal_klines_from_trades_at_any_time(plain, prepared):
    caps, events = plain
    cap = caps[0]
    t0, t1 = events[0].ts_ns // 1_000_000, events[-1].ts_ns // 1_000_000
    for until in [t0, t0 + 59_999, t0 + 60_000, (t0 + t1) // 2, t1, t1 + 120_000]:
        assert prepared.live_klines(cap.venue, cap.symbol, until) == klines_from_trades(cap.trades, until), until
    assert prepared.captures()[0].snapshot == cap.snapshot


def test_kline_history_rows_and_reanchoring(tmp_path):
    one = tmp_path / "binance" / "usdm" / "klines_1m"
    one.mkdir(parents=True)
    shutil.copy(SAMPLES / "binance" / "usdm" / "klines_1m" / "LTCUSDT.csv.gz", one)
    rows = load_kline_history(tmp_path)["LTCUSDT"]
    hist = KlineHistory.from_rows(rows)
    assert len(hist) == len(rows)
    assert hist[0] == rows[0] and hist[-1] == rows[-1] and hist[100:103] == rows[100:103]
    origin = 1_723_161_256_299
    moved = hist.reanchored(origin)
    ref = reanchor(rows, origin)
    assert moved[0] == ref[0] and moved[-1] == ref[-1] and int(str(moved[-1][6])) < origin
    with pytest.raises(IndexError):
        hist[len(rows)]
    # compressed chunks: every row back, across chunk borders and out of order; a pickle round trip
    assert len(hist.chunks) > 2 and hist.nbytes < 0.5 * sum(len(",".join(map(str, r[1:6]))) + 8 for r in rows)
    back = pickle.loads(pickle.dumps(hist))
    for i in (len(rows) - 1, 0, hist.chunk_rows - 1, hist.chunk_rows, 2 * hist.chunk_rows + 7):
        assert hist[i] == rows[i] and back[i] == rows[i] and moved[i][1:6] == rows[i][1:6], i
    with pytest.raises(ValueError):
        KlineHistory.from_rows([[0, "1,5", "2", "3", "4", "5"]])


def test_history_anchored_at_the_captures_first_mid_keeps_every_return(tmp_path):
    """The replay's kline history is from another period (LTC here; BTC at 105,000 before a
    capture at 61,800): scaled so its last close is the capture's first mid, it joins the
    capture without a jump, while every one-minute return (and the volume) stays as recorded."""
    one = tmp_path / "binance" / "usdm" / "klines_1m"
    one.mkdir(parents=True)
    shutil.copy(SAMPLES / "binance" / "usdm" / "klines_1m" / "LTCUSDT.csv.gz", one)
    rows = load_kline_history(tmp_path)["LTCUSDT"][-3_000:]
    hist = KlineHistory.from_rows(rows)
    origin, mid = 1_723_161_256_299, 61_807.8
    moved = hist.reanchored(origin, mid)
    assert float(str(moved[-1][4])) == pytest.approx(mid, rel=1e-9) and int(str(moved[-1][6])) < origin
    got = np.array([[float(str(x)) for x in r[1:6]] for r in moved[:]])
    want = np.array([[float(str(x)) for x in r[1:6]] for r in rows])
    np.testing.assert_allclose(np.diff(np.log(got[:, 3])), np.diff(np.log(want[:, 3])), atol=1e-9)
    np.testing.assert_allclose(got[:, :4] / want[:, :4], mid / want[-1, 3], rtol=1e-9)  # o, h, l, c alike
    assert [r[5] for r in moved[:]] == [r[5] for r in rows]  # volume verbatim
    assert pickle.loads(pickle.dumps(moved))[-1] == moved[-1]
    assert hist.reanchored(origin)[-1][1:6] == rows[-1][1:6]  # no price: verbatim
    with pytest.raises(ValueError):
        hist.reanchored(origin, float("nan"))
    assert first_mid({"bids": [["61807.7", "1"]], "asks": [["61807.9", "2"]]}) == pytest.approx(61_807.8)
    assert first_mid({"bids": [], "asks": [["1", "1"]]}) is None and first_mid({}) is None


def test_cache_round_trip_and_key(prepared, tmp_path):
    path = cache_path(SAMPLES, WINDOW, tmp_path)
    write_prepared(prepared, path)
    back = read_prepared(path)
    assert back is not None and back.chunks == prepared.chunks and (back.ts_ns == prepared.ts_ns).all()
    assert asyncio.run(load_prepared(SAMPLES, WINDOW, tmp_path)).chunks == prepared.chunks  # from the cache
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    assert read_prepared(tmp_path / "bad.pkl") is None
    # a touched source file changes the key (so a changed capture is prepared again)
    data = tmp_path / "data"
    shutil.copytree(
        SAMPLES / "binance" / "usdm" / "btcusdt" / "l2_2023-04-04T2358Z",
        data / "binance" / "usdm" / "btcusdt" / "l2_2023-04-04T2358Z",
    )
    (data / "binance" / "usdm" / "klines_1m").mkdir(parents=True)
    k1 = cache_path(data, WINDOW, tmp_path)
    snap = next((data / "binance" / "usdm" / "btcusdt").glob("l2_*")) / "depth_snapshot.json"
    os.utime(snap, ns=(1, 1))
    assert cache_path(data, WINDOW, tmp_path) != k1
