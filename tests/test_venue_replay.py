"""venue-replay core: a snapshot taken at any point of the replay, plus the diffs sent
after it, rebuilds exactly the book of the independent capture rebuild."""

from __future__ import annotations

import pytest

from stevie.contracts import BookState, DepthSnapshot
from stevie.services.book_maintainer.bars import BarBuilder
from stevie.services.book_maintainer.core import BookSync
from stevie.services.venue_replay.captures import capture_dirs, load_capture
from stevie.services.venue_replay.core import ReplayBook, first_live_index, klines_from_trades, tick_size, timeline
from tests.helpers.capture import SAMPLES, rebuild_until, to_diff

WINDOW = "2024-08-08"


@pytest.fixture(scope="module")
def captures():
    return {key: (load_capture(*key, d), d) for key, d in capture_dirs(SAMPLES, WINDOW).items()}


def test_window_has_spot_and_usdm(captures):
    assert set(captures) == {
        ("binance", "BTCUSDT"),
        ("binance", "ETHUSDT"),
        ("binance-usdm", "BTCUSDT"),
        ("binance-usdm", "ETHUSDT"),
    }


@pytest.mark.parametrize("key", [("binance", "BTCUSDT"), ("binance-usdm", "ETHUSDT")])
@pytest.mark.parametrize("cut", [0, 7, 1500])
def test_snapshot_mid_replay_continues_exactly(captures, key, cut):
    cap, folder = captures[key]
    i0 = first_live_index(cap)
    book = ReplayBook(cap)
    for d in cap.diffs[i0 : i0 + cut]:
        book.apply(d)
    body = book.snapshot(1000)
    snap = DepthSnapshot(
        venue=key[0],
        symbol=key[1],
        last_update_id=body["lastUpdateId"],
        bids=[(float(p), float(q)) for p, q in body["bids"]],
        asks=[(float(p), float(q)) for p, q in body["asks"]],
        ts_event_ns=0,
        ts_init_ns=0,
    )
    sync = BookSync(*key, key[0] == "binance-usdm", top_k=20)
    # a client that subscribed a few messages before asking for the snapshot
    for d in cap.diffs[max(i0, i0 + cut - 3) : i0 + cut]:
        sync.on_diff(to_diff(key[0], d))
    sync.on_snapshot(snap)
    for d in cap.diffs[i0 + cut : i0 + cut + 200]:
        sync.on_diff(to_diff(key[0], d))
    assert sync.state is BookState.LIVE and sync.counters.gaps == 0
    ref = rebuild_until(folder, sync.book.last_update_id)
    assert sync.book.top_k(20) == ref.top(20)


def test_timeline_is_ordered_and_starts_at_live_diffs(captures):
    events = timeline([c for c, _ in captures.values()])
    ts = [e.ts_ns for e in events]
    assert ts == sorted(ts)
    kinds = {(e.venue, e.symbol, e.kind) for e in events}
    assert ("binance-usdm", "ETHUSDT", "trade") in kinds and ("binance", "BTCUSDT", "depth") in kinds


def test_tick_size_from_prices():
    assert tick_size(["61800.20", "61800.10", "61799.70"]) == "0.10"
    assert tick_size(["1.00000000", "1.01000000"]) == "0.01000000"


def test_bar_builder_equals_kline_aggregation(captures):
    """Two independent aggregations of the real trades (float BarBuilder vs Decimal klines)."""
    cap, _ = captures[("binance", "BTCUSDT")]
    from stevie.contracts import Trade

    builder = BarBuilder("binance", "BTCUSDT")
    bars = []
    for t in cap.trades:
        bars += builder.on_trade(
            Trade(
                venue="binance",
                symbol="BTCUSDT",
                trade_id=t["t"],
                price=float(t["p"]),
                size=float(t["q"]),
                aggressor="sell" if t["m"] else "buy",
                ts_event_ns=t["T"] * 1_000_000,
                ts_init_ns=0,
            )
        )
    klines = klines_from_trades(cap.trades, until_ms=cap.trades[-1]["T"] + 1)
    assert len(bars) >= 9
    for bar, k in zip(bars, klines, strict=False):
        assert bar.open_time_ns == k[0] * 1_000_000
        assert (bar.open, bar.high, bar.low, bar.close) == tuple(float(x) for x in k[1:5])
        assert bar.volume == pytest.approx(float(k[5]), rel=1e-12) and bar.trades == k[8]
