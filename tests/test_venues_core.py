"""Venue registry and smart-order-routing score (pure core) and the venue report roll-up."""

from __future__ import annotations

import dataclasses
import math

import msgspec
import numpy as np
import polars as pl
import pytest

from stevie.contracts import BookState, BookStatus, BookTopK, MicroFeatures, StreamStatus
from stevie.contracts.rpc import ProviderBudget
from stevie.quant.errors import QuantInputError
from stevie.services.venues.core import (
    CostParams,
    Ewma,
    NoLiveVenue,
    Registry,
    TimeEwma,
    depth_within,
    mid_spread,
    order_cost,
    total,
)
from stevie.services.venues.report import FillRow, StateRow, downtime, parse_window, rollup
from stevie.services.venues.settings import VenueSpec, VenuesSettings

S = 1_000_000_000
SPOT = VenueSpec("spot", "spot", "http://x", "ws://x", 10.0, 10.0)
PERP = VenueSpec("perp", "perp", "http://y", "ws://y", 10.0, 2.0)


def book(venue: str, bid: float, ask: float, size: float = 1.0, levels: int = 5, tick: float = 1.0) -> BookTopK:
    return BookTopK(
        venue=venue,
        symbol="BTCUSDT",
        seq=1,
        state=BookState.LIVE,
        bids=[(bid - i * tick, size) for i in range(levels)],
        asks=[(ask + i * tick, size) for i in range(levels)],
        ts_event_ns=1,
        ts_init_ns=1,
    )


def registry(*specs: VenueSpec) -> Registry:
    return Registry(list(specs or (SPOT, PERP)), ["BTCUSDT"], 5 * S, 10.0, CostParams(20.0, 50.0, 5.0))


def status(venue: str, state: BookState) -> BookStatus:
    return BookStatus(
        venue=venue, symbol="BTCUSDT", state=state, reason="gap", seq=1, resyncs=1, ts_event_ns=1, ts_init_ns=1
    )


def test_order_cost_by_hand():
    bids = [(99.0, 1.0), (98.0, 1.0)]
    asks = [(101.0, 1.0), (102.0, 2.0)]
    # buy 2: 1 @ 101 + 1 @ 102 → avg 101.5, slippage vs touch 0.5/101·1e4; spread 2/100·1e4 = 200 bps
    c = order_cost(bids, asks, 2.0, 1, 10.0, 4.0, 250.0, 0.9, CostParams(20.0, 50.0, 5.0))
    assert c.impactBps == pytest.approx(0.5 / 101 * 1e4)
    assert c.halfSpreadBps == pytest.approx(100.0)
    assert c.latencyBps == pytest.approx(4.0 / math.sqrt(5.0) * math.sqrt(0.25))
    assert c.failureBps == pytest.approx(0.1 * 20.0)
    assert total(c) == pytest.approx(10 + 0.5 / 101 * 1e4 + 100 + 4 / math.sqrt(5) * 0.5 + 2)
    assert c.filledFraction == 1.0
    # sell 4 against 2 displayed: half filled at avg 98.5, the rest at the last level + 50 bps
    s = order_cost(bids, asks, 4.0, -1, 0.0, 0.0, 0.0, 1.0, CostParams(20.0, 50.0, 5.0))
    assert s.filledFraction == pytest.approx(0.5)
    assert s.impactBps == pytest.approx(0.5 * (0.5 / 99 * 1e4) + 0.5 * (1 / 99 * 1e4 + 50))
    for bad in (dict(size=0.0), dict(side=0), dict(reliability=1.5), dict(latency=-1.0)):
        with pytest.raises(QuantInputError):
            order_cost(
                bids,
                asks,
                bad.get("size", 1.0),
                int(bad.get("side", 1)),
                1.0,
                1.0,
                bad.get("latency", 1.0),
                bad.get("reliability", 1.0),
                CostParams(),
            )


def test_mid_spread_and_depth_within_by_hand():
    bids, asks = [(99.99, 1.0), (99.95, 2.0), (99.0, 5.0)], [(100.01, 1.0), (100.2, 3.0)]
    mid, spread = mid_spread(bids, asks)
    assert mid == pytest.approx(100.0) and spread == pytest.approx(2.0)
    # 10 bps band = [99.9, 100.1]: 99.99·1 + 99.95·2 + 100.01·1
    assert depth_within(bids, asks, 10.0) == pytest.approx(99.99 + 2 * 99.95 + 100.01)
    with pytest.raises(QuantInputError):
        mid_spread([(101.0, 1.0)], [(100.0, 1.0)])


def test_ewma_equals_polars_and_time_ewma_half_life():
    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    e = Ewma(0.2)
    ours = [e.update(x) for x in xs]
    ref = pl.Series(xs).ewm_mean(alpha=0.2, adjust=False).to_list()
    assert ours == pytest.approx(ref, rel=1e-12)
    t = TimeEwma(60.0)
    t.update(0.0, 0)  # first observation only sets the clock
    assert t.value == 1.0
    assert t.update(0.0, 60 * S) == pytest.approx(0.5)
    assert t.update(0.0, 120 * S) == pytest.approx(0.25)


def test_lower_spread_is_better():
    r = registry()
    r.on_book(book("spot", 99.0, 101.0), 0)  # 200 bps spread
    r.on_book(book("perp", 99.5, 100.5), 0)  # 100 bps spread
    sc = r.score("BTCUSDT", 0.5, "buy", 1)
    assert sc.venue == "perp"
    by = {a.venue: a for a in sc.alternatives}
    assert by["spot"].score - by["perp"].score == pytest.approx(50.0)  # half-spread difference
    assert sc.score == pytest.approx(10.0 + 50.0)
    assert any("runner-up spot" in x for x in sc.reasons)


def test_deeper_book_is_better():
    r = registry()
    r.on_book(book("spot", 99.0, 101.0, size=0.5), 0)
    r.on_book(book("perp", 99.0, 101.0, size=5.0), 0)
    sc = r.score("BTCUSDT", 2.0, "buy", 1)
    assert sc.venue == "perp"
    by = {a.venue: a for a in sc.alternatives}
    assert by["perp"].cost.impactBps == 0.0 and by["spot"].cost.impactBps > 0
    # and a sell walks the bids
    assert r.score("BTCUSDT", 2.0, "sell", 1).venue == "perp"


def test_reliability_drop_moves_the_choice():
    r = registry()
    r.on_book(book("spot", 99.9, 100.1), 0)  # 20 bps spread
    r.on_book(book("perp", 99.89, 100.11), 0)  # 22 bps spread: 1 bp more half-spread
    now = 0
    r.tick(now)
    assert r.score("BTCUSDT", 0.1, "buy", now).venue == "spot"
    # the spot venue keeps resyncing: every tick sees a fault
    for _ in range(10):
        now += S
        r.on_status(status("spot", BookState.SYNCING), now)
        r.on_book(book("spot", 99.9, 100.1), now)
        r.on_book(book("perp", 99.89, 100.11), now)
        r.tick(now)
    assert r.reliability("spot") < 0.95 < r.reliability("perp") + 1e-12
    sc = r.score("BTCUSDT", 0.1, "buy", now)
    assert sc.venue == "perp"
    spot = next(a for a in sc.alternatives if a.venue == "spot")
    assert spot.cost.failureBps == pytest.approx((1 - r.reliability("spot")) * 20.0)


def test_syncing_or_stale_venue_is_skipped():
    r = registry()
    r.on_book(book("spot", 99.9, 100.1), 0)
    r.on_book(book("perp", 99.0, 101.0), 0)  # much worse
    assert r.score("BTCUSDT", 0.1, "buy", 0).venue == "spot"
    r.on_status(status("spot", BookState.SYNCING), 1)
    sc = r.score("BTCUSDT", 0.1, "buy", 1)
    assert sc.venue == "perp"
    skipped = sc.alternatives[-1]
    assert skipped.venue == "spot" and not skipped.eligible and skipped.score is None
    assert any("skipped spot" in x and "SYNCING" in x for x in sc.reasons)
    # both venues: spot LIVE again but the perp book goes stale (no update for > 5 s)
    r.on_book(book("spot", 99.9, 100.1), 6 * S)
    assert r.score("BTCUSDT", 0.1, "buy", 6 * S).venue == "spot"
    r.on_status(status("spot", BookState.SYNCING), 6 * S)
    with pytest.raises(NoLiveVenue):
        r.score("BTCUSDT", 0.1, "buy", 6 * S)  # spot SYNCING, perp STALE
    assert {v.state for v in r.registry(6 * S)} == {"SYNCING", "STALE"}


def test_no_budget_left_is_skipped_and_inputs_checked():
    r = registry()
    r.on_book(book("spot", 99.9, 100.1), 0)
    r.on_book(book("perp", 99.0, 101.0), 0)
    r.on_budget([ProviderBudget("spot", 10, 6000, 6000, 0, 0.0, 0, 0, 0)])
    assert r.score("BTCUSDT", 0.1, "buy", 0).venue == "perp"
    with pytest.raises(KeyError):
        r.score("DOGEUSDT", 0.1, "buy", 0)
    for size, side in ((0.0, "buy"), (math.nan, "buy"), (-1.0, "buy"), (1.0, "hold")):
        with pytest.raises(QuantInputError):
            r.score("BTCUSDT", size, side, 0)


def test_registry_fields_latency_basis_and_streams():
    r = registry()
    r.on_book(book("spot", 99.9, 100.1), 0)
    r.on_book(book("perp", 100.0, 100.2), 0)
    for ms in (2.0, 4.0):
        r.on_latency("spot", "rest", ms)
    r.on_latency("spot", "ws", 1.0)
    r.on_micro(
        MicroFeatures(
            venue="spot",
            symbol="BTCUSDT",
            obi=0,
            ti=0,
            spread_bps=20,
            micro_vol_bps=3.0,
            cancel_rate=0,
            mid=100,
            ts_event_ns=1,
            ts_init_ns=1,
        )
    )
    rows = {v.venue: v for v in r.registry(0)}
    spot = rows["spot"]
    assert spot.restLatencyMs == pytest.approx(0.8 * 2 + 0.2 * 4)
    assert spot.wsLatencyMs == 1.0
    assert spot.latencyMs == pytest.approx(0.8 * (0.8 * 2 + 0.2 * 4) + 0.2 * 1.0)
    assert spot.spread_bps == pytest.approx(20.0) and spot.microVolBps == 3.0 and spot.state == "LIVE"
    assert spot.topDepth == pytest.approx(sum(99.9 - i for i in range(1)) + 100.1)  # only the touch within 10 bps
    assert rows["perp"].latencyMs is None and rows["perp"].feeBps == 10.0 and rows["perp"].makerFeeBps == 2.0
    sc = r.score("BTCUSDT", 0.1, "buy", 0)
    assert sc.basisBps["perp"] == pytest.approx((100.1 - 100.0) / 100.0 * 1e4)
    assert any("basis perp: +10.00 bps" in x for x in sc.reasons)
    # a stream disconnect is a fault: the next tick observes 0
    r.tick(0)
    r.on_streams([StreamStatus(venue="perp", connected=True, backlog_size=0, last_beat_ns=1)])
    r.on_streams([StreamStatus(venue="perp", connected=False, backlog_size=0, last_beat_ns=1)])
    r.tick(60 * S)
    assert r.reliability("perp") == pytest.approx(0.5)
    assert r.reliability("spot") == pytest.approx(0.5)  # its books went stale over the minute
    with pytest.raises(KeyError):
        r.registry(0, "DOGEUSDT")


def test_mirror_from_scoring_scores_exactly_like_the_publisher():
    """A subscriber's mirror (``from_scoring`` + the same books and features) gives the same
    VenueScore as the publishing registry, and follows its health (reliability, latency,
    budget) through ``apply_scoring``; a changed configuration does not ``match``."""
    r = registry()
    feats = MicroFeatures(
        venue="perp", symbol="BTCUSDT", obi=0, ti=0, spread_bps=22, micro_vol_bps=4.0, cancel_rate=0, mid=100,
        ts_event_ns=1, ts_init_ns=1,
    )  # fmt: skip
    r.on_latency("spot", "rest", 3.0)
    r.on_latency("perp", "ws", 40.0)
    now = 0
    for _ in range(5):  # the spot venue keeps resyncing: its reliability falls
        now += S
        r.on_status(status("spot", BookState.SYNCING), now)
        r.on_book(book("spot", 99.9, 100.1), now)
        r.on_book(book("perp", 99.89, 100.11), now)
        r.tick(now)
    r.on_micro(feats)
    sc = r.scoring(now, 1.0)
    m = Registry.from_scoring(sc)
    assert m.matches(sc) and r.matches(sc)
    m.on_book(book("spot", 99.9, 100.1), now)
    m.on_book(book("perp", 99.89, 100.11), now)
    m.on_micro(feats)
    for size, side in ((0.1, "buy"), (7.0, "sell")):
        assert m.score("BTCUSDT", size, side, now) == r.score("BTCUSDT", size, side, now)
    # health and books agree (the REST/WebSocket split and the resync count are not mirrored)
    hidden = {"restLatencyMs": None, "wsLatencyMs": None, "resyncs": 0}
    assert m.registry(now) == [msgspec.structs.replace(v, **hidden) for v in r.registry(now)]
    # the publisher's health moves (no budget left on perp): the mirror follows on apply
    r.on_budget([ProviderBudget("perp", 10, 6000, 6000, 0, 0.0, 0, 0, 0)])
    m.apply_scoring(r.scoring(now, 1.0))
    assert m.score("BTCUSDT", 0.1, "buy", now) == r.score("BTCUSDT", 0.1, "buy", now)
    assert m.score("BTCUSDT", 0.1, "buy", now).venue == "spot"
    cheaper_perp = Registry([SPOT, dataclasses.replace(PERP, taker_bps=4.0)], ["BTCUSDT"], 5 * S, 10.0)
    assert not m.matches(cheaper_perp.scoring(now, 1.0))
    assert not m.matches(msgspec.structs.replace(sc, staleMs=1.0))


def test_reference_scores_nan_when_not_eligible():
    r = registry()
    r.on_book(book("spot", 99.9, 100.1), 0)
    out = r.reference_scores(1_000.0, 0)
    assert out[("spot", "BTCUSDT")] > 0 and math.isnan(out[("perp", "BTCUSDT")])


def test_settings_parse_venues_and_reject_bad_entries():
    s = VenuesSettings()
    names = [(v.name, v.kind, v.taker_bps, v.maker_bps) for v in s.specs()]
    assert names == [("binance", "spot", 10.0, 10.0), ("binance-usdm", "perp", 5.0, 2.0)]
    assert s.specs()[1].ping_path == "/fapi/v1/ping"
    from stevie.runtime.settings import SettingsError

    assert s.specs()[0].rest_url == "http://127.0.0.1:5101" and s.specs()[1].ws_url == "ws://127.0.0.1:5102"
    for bad in (["binance|spot|1"], ["binance|future|1|1"], ["binance|spot|1|1", "binance|perp|1|1"], ["x|spot|1|1"]):
        with pytest.raises(SettingsError):
            VenuesSettings(venues=bad)
    with pytest.raises(SettingsError):
        VenuesSettings(rest_urls=["binance"])


# -- report -------------------------------------------------------------------------------


def test_parse_window():
    assert parse_window("7d") == 7 * 86400 and parse_window("24h") == 86400 and parse_window("90s") == 90
    assert parse_window(120) == 120 and parse_window("2w") == 14 * 86400 and parse_window("30m") == 1800
    for bad in ("", "7x", "-1d", "0", "400d", "d7"):
        with pytest.raises(QuantInputError):
            parse_window(bad)


def test_downtime_by_hand():
    rows = [
        StateRow("a", "X", "SYNCING", -5 * S),  # before the window: the window starts SYNCING
        StateRow("a", "X", "LIVE", 10 * S),
        StateRow("a", "X", "SYNCING", 40 * S),
        StateRow("a", "X", "LIVE", 50 * S),
        StateRow("a", "Y", "LIVE", 0),
        StateRow("a", "Y", "STALE", 45 * S),  # overlaps X's 40–50 outage: union 40–55
        StateRow("a", "Y", "LIVE", 55 * S),
        StateRow("b", "X", "LIVE", 20 * S),  # observed only from 20 s
    ]
    out = downtime(rows, 0, 100 * S)
    down, seen, leaves = out["a"]
    assert down == pytest.approx(10 + 15)  # [0, 10) + [40, 55)
    assert seen == pytest.approx(100) and leaves == 2
    assert out["b"] == (0.0, 80.0, 0)


def test_rollup_by_hand():
    fills = [
        FillRow("a", 1, 1.0, 101.0, 0.1, 100.0, 103.0),  # paid 100 bps, wins
        FillRow("a", -1, 2.0, 99.0, 0.2, 100.0, 98.0),  # sold 100 bps below the mid: paid 100, wins
        FillRow("a", 1, 1.0, 100.0, 0.1, 100.5, 99.0),  # bought below the mid: −49.75 bps, loses
        FillRow("a", 1, 1.0, 100.0, 0.1, 100.0, None),  # not marked yet
        FillRow("b", 1, 0.0, 100.0, 0.0, 100.0, 101.0),  # nothing filled: ignored
    ]
    rows = {r.venue: r for r in rollup(["a", "b"], fills, [StateRow("a", "X", "LIVE", 0)], 0, 10 * S)}
    a = rows["a"]
    slips = np.array([100.0, 100.0, (100.0 - 100.5) / 100.5 * 1e4, 0.0])
    assert a.fills == 4 and a.marked == 3 and a.winRate == pytest.approx(2 / 3)
    assert a.slippageBps == pytest.approx(slips.mean())
    assert a.slippageBpsP95 == pytest.approx(np.percentile(slips, 95))
    assert a.notionalQuote == pytest.approx(101 + 198 + 100 + 100) and a.feesQuote == pytest.approx(0.5)
    assert a.downtimeS == 0.0 and a.downtimeFraction == 0.0
    b = rows["b"]
    assert b.fills == 0 and b.winRate is None and b.slippageBps is None and b.downtimeFraction is None
